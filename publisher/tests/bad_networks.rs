//! Live stays live on bad networks (issue 16): the two worst links of the impairment matrix —
//! 100 ms each way with 10 % loss, and 100 ± 10 ms with 3 % loss and 2 % of datagrams
//! reordered by 30 ms — between `banyan-watch` and the relay, a 2 Mbit/s synthetic broadcast
//! (30 fps, one group per second) that such a path cannot carry. The viewer must stay near
//! live by skipping groups (the relay resets what it cannot deliver within its latency
//! budget, one GOP by default), never reconnect, and keep receiving.
//!
//! Asserts, per link: one session and no resubscription; at least a fifth of the frames
//! played; the viewer's `groups_skipped` equals the relay's count (± 2, the groups in flight
//! at either end of the run); p99 behind live (`behind_live_ms`: play-out time minus capture
//! time) ≤ 3 s (the generous CI bound: the target is 2 GOP = 2 s;
//! without the latency budget this link ran 4–7 s behind after 20 s and kept growing). Prints
//! the measured percentiles, the viewer's skipped groups and the relay's count.
//!
//! Method: an in-process relay, `banyan-publish --synthetic` straight into it, and the viewer
//! through `banyan_tests::impair` (seeded) for 12 s per link; links one after another.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use banyan_moq::track::SkipReason;
use banyan_tests::impair::{Impairment, Proxy, ProxyConfig};
use common::{command, stop_watcher, until, watcher_at, within, TestRelay, PUBLISH};
use serde_json::Value;

/// How long the viewer watches each link.
const WATCH_FOR: Duration = Duration::from_secs(12);
/// The CI bound on p99 behind live (issue 16: "a generous version").
const BEHIND_LIVE_P99_MS: f64 = 3000.0;
const FPS: u64 = 30;

struct Link {
    name: &'static str,
    impairment: Impairment,
}

fn links() -> [Link; 2] {
    [
        Link {
            name: "100 ms, 10 % loss",
            impairment: Impairment {
                delay: Duration::from_millis(100),
                loss: 0.10,
                ..Impairment::default()
            },
        },
        Link {
            name: "100 ± 10 ms, 3 % loss, 2 % reordered by 30 ms",
            impairment: Impairment {
                delay: Duration::from_millis(100),
                jitter: Duration::from_millis(10),
                loss: 0.03,
                reorder: 0.02,
                reorder_delay: Duration::from_millis(30),
                ..Impairment::default()
            },
        },
    ]
}

/// Watch `broadcast` through `proxy` for [`WATCH_FOR`]; the JSON summary.
async fn watch(relay: &TestRelay, proxy: &Proxy, broadcast: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.json");
    let url = format!("moqt://localhost:{}", proxy.local_addr().port());
    let (child, log) = watcher_at(&url, relay, broadcast, &summary, None, &[]);
    until(
        Duration::from_secs(15),
        "the viewer plays a first group",
        &log,
        || log.groups() > 0,
    )
    .await;
    tokio::time::sleep(WATCH_FOR).await;
    stop_watcher(child, &log, &summary).await
}

/// One line of the results table, on the process's stderr directly: the test harness captures
/// `println!`, and CI's log should show the measured figures of a passing run too.
fn report(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Datagrams the proxy dropped, both directions.
fn dropped(proxy: &Proxy) -> u64 {
    let stats = proxy.stats();
    [stats.client_to_server, stats.server_to_client]
        .iter()
        .map(|d| d.dropped_loss + d.dropped_rate + d.dropped_other)
        .sum()
}

fn f64_at(v: &Value, path: &[&str]) -> f64 {
    path.iter()
        .fold(v, |v, k| &v[*k])
        .as_f64()
        .unwrap_or_else(|| panic!("{path:?} missing in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_on_a_path_slower_than_the_stream_stays_near_live() {
    report("| link | frames played | behind live p50 / p99 / max ms | groups skipped (viewer) | groups skipped (relay) | stalls > 500 ms | datagrams dropped |");
    report("|---|---|---|---|---|---|---|");
    for (i, link) in links().into_iter().enumerate() {
        let relay = TestRelay::start(false).await;
        let broadcast = format!("live/bad-{i}");
        let publish_args = [
            &relay.url(),
            "--broadcast",
            &broadcast,
            "--synthetic",
            "--bitrate",
            "2M",
            "--tls-hash",
            &relay.hash,
        ];
        let mut publisher = command(PUBLISH, &publish_args).spawn().unwrap();
        let proxy = Proxy::start(ProxyConfig {
            client_to_server: link.impairment.clone(),
            server_to_client: link.impairment.clone(),
            seed: 16 + i as u64,
            ..ProxyConfig::new(relay.addr)
        })
        .await
        .unwrap();
        let summary = within(
            Duration::from_secs(60),
            "the viewer's run",
            watch(&relay, &proxy, &broadcast),
        )
        .await;
        let relay_late = relay.metrics.groups_skipped_for(SkipReason::Late);
        let relay_lag = relay.metrics.groups_skipped_for(SkipReason::Lag);
        publisher.start_kill().unwrap();
        let _ = publisher.wait().await;
        relay.shutdown().await;

        let objects = f64_at(&summary, &["objects"]);
        let p50 = f64_at(&summary, &["behind_live_ms", "p50"]);
        let p99 = f64_at(&summary, &["behind_live_ms", "p99"]);
        let max = f64_at(&summary, &["behind_live_ms", "max"]);
        let skipped = f64_at(&summary, &["groups_skipped"]);
        let relay_skipped = (relay_late + relay_lag) as f64;
        report(&format!(
            "| {} | {objects} | {p50:.0} / {p99:.0} / {max:.0} | {skipped} | {relay_late} late, {relay_lag} lag | {} | {} |",
            link.name,
            summary["stalls"],
            dropped(&proxy)
        ));
        assert_eq!(
            summary["sessions"], 1,
            "{}: the viewer reconnected: {summary}",
            link.name
        );
        assert_eq!(
            summary["resubscribes"], 0,
            "{}: the viewer resubscribed: {summary}",
            link.name
        );
        let floor = (FPS * WATCH_FOR.as_secs()) as f64 / 5.0;
        assert!(
            objects >= floor,
            "{}: only {objects} frames played in {WATCH_FOR:?} (at least {floor} expected): {summary}",
            link.name
        );
        // The viewer sees what the relay skipped: a reset group arrives in part (or not at
        // all). Groups skipped while the viewer stops are counted by neither side; one at
        // each end of the run may differ.
        assert!(
            (skipped - relay_skipped).abs() <= 2.0,
            "{}: the viewer counted {skipped} skipped groups, the relay {relay_skipped}: {summary}",
            link.name
        );
        assert!(
            p99 <= BEHIND_LIVE_P99_MS,
            "{}: p99 {p99:.0} ms behind live (bound {BEHIND_LIVE_P99_MS} ms): {summary}",
            link.name
        );
    }
}
