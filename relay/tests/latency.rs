//! The latency suite: glass-to-glass (publisher write → subscriber receive) through 1, 2 and 3
//! relays, every link — publisher to origin, relay to relay, edge to subscriber — going through
//! the UDP impairment proxy with 20 ms one-way delay, at 0 %, 1 % and 3 % loss in both
//! directions. Asserts p99 < 250 ms (the budget viewers are promised; the floor is (hops + 1)
//! × 20 ms of propagation) for every case but the stress corner, three relays with 3 % loss on
//! all four links, which gets [`CORNER_BOUND_MS`] (see there) and that the proxies really dropped packets, and
//! prints a table of p50/p90/p99 per case.
//!
//! Method: [`BROADCASTS`] 30 fps publishers (1 s groups, 1–4 KB objects, stamped with the send
//! time in µs on this process's clock) run side by side for 4 s per case, each with its own
//! publisher and viewer session through the same proxied links, so the relay links carry them all
//! as they would carry several tracks. Each case gets fresh in-process relays and proxies
//! (seeded), and cases run one after another so they never share the CPU.
//!
//! Why several broadcasts: a loss delays the objects behind it on its stream until the resend
//! arrives, so late objects come in clusters of 2–5. With one broadcast's 120 objects, the p99 is
//! the second-latest object, i.e. the worst cluster of the run, and one unlucky double recovery
//! (≈ 80 + 2 × 85 ms at three relays and 3 % loss) decides it: that case failed about one run in
//! eight at 250 ms while its real p99 was near 210 ms. Pooling 600 objects puts the p99 at the
//! sixth-latest, which takes several clusters to move, so the assertion is about the
//! distribution and not about one episode. It costs no test time. More than five broadcasts
//! starts to measure this process instead: at ten, the loss-free three-relay p99 rose from
//! ≈ 97 to 120–140 ms, two worker threads carrying every relay, proxy and peer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::fmt::Write as _;
use std::time::Duration;

use banyan_moq::session::{Subscription, TrackEvent};
use banyan_tests::impair::{Impairment, Proxy};
use common::live::{check_stamped, now_us, percentile, Live, LivePublisher};
use common::{connect_via, impaired, relay, subscribe_msg, within, TestRelay};

const LINK_DELAY: Duration = Duration::from_millis(20);
const BUDGET_MS: f64 = 250.0;
/// The bound for three relays at 3 % loss on every link. About one round trip in five loses a
/// packet somewhere on those four links, and 6–7 % of objects wait for two or more recoveries
/// (the `>= 95` column), so the p99 sits inside that class: 213, 215, 228, 230 and 236 ms in five
/// runs of 600 pooled objects (2026-12-07). 250 ms would fail about one run in ten on noise
/// alone; 300 ms is a margin of a fifth over the worst run and still fails if a recovery costs
/// a round trip more than it does today. The 200 ms target for this corner is unmet, with the
/// profile, in docs/performance.md ("Loss latency through three relays").
const CORNER_BOUND_MS: f64 = 300.0;
/// Broadcasts pooled per case (see the module doc for why).
const BROADCASTS: usize = 5;

/// A proxy in front of `relay` with `loss` and [`LINK_DELAY`] each way.
async fn link(relay: &TestRelay, loss: f64, seed: u64) -> Proxy {
    let impairment = Impairment {
        delay: LINK_DELAY,
        loss,
        ..Impairment::default()
    };
    impaired(relay, impairment, seed).await
}

/// Latencies (µs) of every object received until PUBLISH_DONE.
async fn latencies(mut subscription: Subscription) -> Vec<u64> {
    let mut readers = Vec::new();
    while let Some(event) = subscription.next().await.unwrap() {
        match event {
            TrackEvent::Subgroup(mut subgroup) => readers.push(tokio::spawn(async move {
                let mut samples = Vec::new();
                while let Some(object) = subgroup.next().await.unwrap() {
                    let at = now_us();
                    samples.push(at.saturating_sub(check_stamped(&object.payload).sent_us));
                }
                samples
            })),
            TrackEvent::Done(_) => break,
            _ => {}
        }
    }
    let mut all = Vec::new();
    for reader in readers {
        all.extend(reader.await.unwrap());
    }
    all
}

struct Case {
    hops: usize,
    loss: f64,
    objects: usize,
    expected: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    dropped: u64,
    /// Objects by how late they were beyond the propagation floor, in [`LATE_BUCKETS`].
    late: [usize; LATE_BUCKETS.len()],
}

/// Buckets of delay beyond the propagation floor (ms, upper bounds), named by what costs that
/// much on a 40 ms round trip: nothing lost; a loss found by a later packet's ACK (RFC 9002's
/// time threshold, 9/8 RTT, then the resend's one-way 20 ms: ≈ 45 ms); a lost last packet found
/// only by the probe timeout (smoothed RTT + 4 × its variance + max ACK delay, then the resend:
/// ≈ 60–90 ms); two recoveries on the path.
const LATE_BUCKETS: [(u64, &str); 5] = [
    (10, "< 10"),
    (40, "10-40"),
    (60, "40-60"),
    (95, "60-95"),
    (u64::MAX, ">= 95"),
];

async fn run_case(hops: usize, loss: f64, live: Live) -> Case {
    let seed = (hops as u64) * 100 + (loss * 1000.0) as u64;
    // relays[0] is the origin; relays[i] gets its parent through a proxy.
    let mut relays = vec![relay(&["--relay-id", "lat-0"]).await];
    let mut proxies = Vec::new();
    for i in 1..hops {
        let parent = link(&relays[i - 1], loss, seed + i as u64).await;
        let upstream = format!("moqt://localhost:{}", parent.local_addr().port());
        let id = format!("lat-{i}");
        relays.push(relay(&["--relay-id", &id, "--upstream", &upstream, "--upstream-insecure"]).await);
        proxies.push(parent);
    }
    let publisher_link = link(&relays[0], loss, seed + 50).await;
    let viewer_link = link(&relays[hops - 1], loss, seed + 60).await;

    let mut publishers = Vec::new();
    let mut readers = Vec::new();
    for b in 0..BROADCASTS {
        let namespace = format!("latency/show-{b}");
        let publisher_session = connect_via(&relays[0], &publisher_link).await;
        publishers.push(LivePublisher::start(publisher_session, &namespace, live, true).await);
        let viewer = connect_via(&relays[hops - 1], &viewer_link).await;
        let subscription = within(
            "SUBSCRIBE_OK through the impaired tree",
            30,
            viewer.subscribe(subscribe_msg(&namespace, "video")),
        )
        .await
        .expect("SUBSCRIBE_OK");
        readers.push(tokio::spawn(latencies(subscription)));
    }
    for publisher in &publishers {
        publisher.open_gate();
    }
    let mut samples = Vec::new();
    for reader in readers {
        samples.extend(within("the whole broadcast", 60, reader).await.unwrap());
    }
    samples.sort_unstable();

    let dropped: u64 = proxies
        .iter()
        .chain([&publisher_link, &viewer_link])
        .map(|p| {
            let s = p.stats();
            s.client_to_server.dropped_loss + s.server_to_client.dropped_loss
        })
        .sum();
    let ms = |p: f64| percentile(&samples, p) as f64 / 1000.0;
    let floor_us = (hops as u64 + 1) * LINK_DELAY.as_micros() as u64;
    let mut late = [0; LATE_BUCKETS.len()];
    for sample in &samples {
        let over_ms = sample.saturating_sub(floor_us) / 1000;
        if let Some(bucket) = LATE_BUCKETS.iter().position(|(upper, _)| over_ms < *upper) {
            late[bucket] += 1;
        }
    }
    Case {
        hops,
        loss,
        objects: samples.len(),
        expected: BROADCASTS * (live.groups * live.objects) as usize,
        p50: ms(50.0),
        p90: ms(90.0),
        p99: ms(99.0),
        max: ms(100.0),
        dropped,
        late,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glass_to_glass_p99_stays_in_budget_through_three_relays_under_loss() {
    let live = Live {
        groups: 4,
        objects: 30,
        interval: Duration::from_micros(33_333),
        min_size: 1000,
        max_size: 4000,
        finish: true,
    };
    let mut cases = Vec::new();
    for hops in 1..=3 {
        for loss in [0.0, 0.01, 0.03] {
            cases.push(run_case(hops, loss, live).await);
        }
    }

    let mut table = String::new();
    let _ = writeln!(
        table,
        "\nglass-to-glass latency, {} ms one-way per link, {BROADCASTS} broadcasts × {} objects at 30 fps per case",
        LINK_DELAY.as_millis(),
        live.groups * live.objects
    );
    let _ = writeln!(
        table,
        "relays  links  loss   floor ms   p50 ms   p90 ms   p99 ms   max ms  delivered  packets dropped"
    );
    for c in &cases {
        let _ = writeln!(
            table,
            "{:>6}  {:>5}  {:>3.0}%  {:>9}  {:>7.1}  {:>7.1}  {:>7.1}  {:>7.1}  {:>4}/{:<4}  {:>15}",
            c.hops,
            c.hops + 1,
            c.loss * 100.0,
            (c.hops as u128 + 1) * LINK_DELAY.as_millis(),
            c.p50,
            c.p90,
            c.p99,
            c.max,
            c.objects,
            c.expected,
            c.dropped
        );
    }
    let _ = write!(
        table,
        "\nobjects by delay beyond the floor, ms (see LATE_BUCKETS for what each costs)\nrelays  loss"
    );
    for (_, name) in LATE_BUCKETS {
        let _ = write!(table, "  {name:>7}");
    }
    for c in cases.iter().filter(|c| c.loss > 0.0) {
        let _ = write!(table, "\n{:>6}  {:>3.0}%", c.hops, c.loss * 100.0);
        for n in c.late {
            let _ = write!(table, "  {n:>7}");
        }
    }
    table.push('\n');
    // On the process's stderr directly: the harness captures `println!`, and CI's log should
    // show the percentiles of a passing run too.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), table.as_bytes());
    for c in &cases {
        let case = format!("{} relay(s), {:.0}% loss", c.hops, c.loss * 100.0);
        assert_eq!(
            c.objects, c.expected,
            "{case}: every object arrives (streams are reliable)"
        );
        let bound = if c.hops == 3 && c.loss >= 0.03 {
            CORNER_BOUND_MS
        } else {
            BUDGET_MS
        };
        assert!(
            c.p99 < bound,
            "{case}: p99 {:.1} ms is over the {bound} ms bound",
            c.p99
        );
        let floor = (c.hops as f64 + 1.0) * LINK_DELAY.as_secs_f64() * 1000.0;
        assert!(
            c.p50 >= floor,
            "{case}: p50 {:.1} ms is below the propagation floor {floor} ms: the proxies are not in the path",
            c.p50
        );
        if c.loss > 0.0 {
            assert!(c.dropped > 0, "{case}: the proxies dropped nothing");
        } else {
            assert_eq!(c.dropped, 0, "{case}");
        }
    }
}
