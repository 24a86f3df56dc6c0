//! Proves the replication tree with real `banyan-relay` processes on loopback: an origin, two
//! mid relays and four edges serve 40 subscribers every object with exactly one upstream
//! subscription per relay per track (and namespace discovery reaches the edges); killing a mid
//! relay moves its edges to the other mid within about a second while every subscriber
//! continues with at most one group cut short; a configured loop and an over-deep chain are
//! refused with clear errors; parents can come from a control plane's route endpoint; a
//! publisher that leaves and comes back, to the same origin or another, is picked up again;
//! parents are verified against `--upstream-ca`; and the per-hop added latency on clean loopback
//! is measured and printed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use banyan_moq::coding::{RequestErrorCode, SessionErrorCode, TrackNamespace};
use banyan_moq::message::{HopPath, Parameters, Subscribe, SubscribeNamespace};
use banyan_moq::session::{Error, NamespaceEvent, Session, Subscription, TrackEvent};
use common::live::{check_stamped, now_us, percentile, Live, LivePublisher};
use common::process::{relay_command, start, Running, DEV};
use common::{subscribe_msg, within};

/// A relay process named `id` whose parents are `parents`, in order.
async fn relay(id: &str, parents: &[&Running], extra: &[&str]) -> Running {
    let urls: Vec<String> = parents
        .iter()
        .map(|p| format!("moqt://localhost:{}", p.udp.port()))
        .collect();
    let mut args = DEV.to_vec();
    if extra.contains(&"--listen") {
        // The caller chooses the port: drop the ephemeral default.
        let at = args.iter().position(|a| *a == "--listen").unwrap();
        args.drain(at..at + 2);
    }
    args.extend(["--relay-id", id, "--upstream-insecure"]);
    if !extra.contains(&"--rendezvous-max") {
        args.extend(["--rendezvous-max", "10s"]);
    }
    for url in &urls {
        args.extend(["--upstream", url]);
    }
    args.extend_from_slice(extra);
    start(relay_command(&args)).await
}

/// Connect to a relay process over raw QUIC, trusting its printed certificate hash.
async fn session(relay: &Running) -> Session {
    relay.connect(&relay.client(), "moqt").await.expect("connect")
}

/// One Prometheus sample from a relay's `/metrics` (0 when absent).
async fn metric(relay: &Running, name: &str) -> f64 {
    let (status, body) = relay.get("/metrics").await;
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("banyan_relay_{name} ")))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// What one subscriber received: objects per group (complete or not) and latencies.
#[derive(Debug, Default)]
struct Received {
    groups: BTreeMap<u64, Vec<u64>>,
    latencies_us: Vec<u64>,
    /// When each group's first object arrived.
    first_seen: BTreeMap<u64, Instant>,
}

/// Read a subscription until PUBLISH_DONE (or its end), checking every payload byte for byte.
async fn read_all(mut subscription: Subscription) -> Received {
    let received = Arc::new(Mutex::new(Received::default()));
    let mut readers = Vec::new();
    loop {
        match subscription.next().await {
            Ok(Some(TrackEvent::Subgroup(mut subgroup))) => {
                let received = received.clone();
                readers.push(tokio::spawn(async move {
                    let group = subgroup.group_id();
                    // A stream cut short by a parent dying ends with an error: what arrived counts.
                    while let Ok(Some(object)) = subgroup.next().await {
                        let at = now_us();
                        let stamp = check_stamped(&object.payload);
                        assert_eq!((stamp.group, stamp.object), (group, object.object_id));
                        let mut r = received.lock().unwrap();
                        r.first_seen.entry(group).or_insert_with(Instant::now);
                        r.groups.entry(group).or_default().push(object.object_id);
                        r.latencies_us.push(at.saturating_sub(stamp.sent_us));
                    }
                }));
            }
            Ok(Some(TrackEvent::Done(_))) | Ok(None) => break,
            Ok(Some(_)) => {}
            Err(e) => panic!("subscription failed: {e}"),
        }
    }
    for reader in readers {
        reader.await.unwrap();
    }
    Arc::try_unwrap(received).unwrap().into_inner().unwrap()
}

/// The tree of the issue: origin → mid-1, mid-2 → four edges (two preferring each mid).
struct Tree {
    origin: Running,
    mids: Vec<Running>,
    edges: Vec<Running>,
}

async fn tree() -> Tree {
    let origin = relay("origin", &[], &[]).await;
    let mid1 = relay("mid-1", &[&origin], &[]).await;
    let mid2 = relay("mid-2", &[&origin], &[]).await;
    let mut edges = Vec::new();
    for i in 0..4 {
        let parents = if i < 2 { [&mid1, &mid2] } else { [&mid2, &mid1] };
        edges.push(relay(&format!("edge-{i}"), &parents, &[]).await);
    }
    Tree {
        origin,
        mids: vec![mid1, mid2],
        edges,
    }
}

#[tokio::test]
async fn a_seven_relay_tree_serves_forty_subscribers_with_one_upstream_subscription_each() {
    let tree = tree().await;
    let live = Live {
        groups: 10,
        objects: 10,
        interval: Duration::from_millis(10),
        min_size: 300,
        max_size: 1200,
        finish: true,
    };
    let publisher = LivePublisher::start(session(&tree.origin).await, "tree/show", live, true).await;

    // Namespace discovery reaches an edge two hops below the origin.
    let watcher = session(&tree.edges[3]).await;
    let mut namespaces = watcher
        .subscribe_namespace(SubscribeNamespace {
            request_id: 0,
            track_namespace_prefix: TrackNamespace::from_path("tree").unwrap(),
            parameters: Parameters::default(),
        })
        .await
        .expect("SUBSCRIBE_NAMESPACE through the tree");
    let event = within("NAMESPACE from the origin", 10, namespaces.next()).await;
    assert_eq!(
        event.unwrap(),
        Some(NamespaceEvent::Published(
            TrackNamespace::from_path("tree/show").unwrap()
        ))
    );

    // 40 subscribers, 10 per edge, plus one probe at the origin and one at a mid relay to
    // measure what each hop adds.
    let mut subscriptions = Vec::new();
    for edge in &tree.edges {
        let client = edge.client();
        for _ in 0..10 {
            let s = edge.connect(&client, "moqt").await.unwrap();
            subscriptions.push(tokio::spawn(async move {
                let subscription = s.subscribe(subscribe_msg("tree/show", "video")).await;
                (s, subscription)
            }));
        }
    }
    let probes = [&tree.origin, &tree.mids[0]];
    let mut probe_subs = Vec::new();
    for relay in probes {
        let s = session(relay).await;
        let subscription = s.subscribe(subscribe_msg("tree/show", "video")).await.unwrap();
        probe_subs.push((s, subscription));
    }
    let mut readers = Vec::new();
    for task in subscriptions {
        let (s, subscription) = within("SUBSCRIBE_OK through the tree", 20, task).await.unwrap();
        readers.push((s, tokio::spawn(read_all(subscription.expect("SUBSCRIBE_OK")))));
    }
    let probe_readers: Vec<_> = probe_subs
        .into_iter()
        .map(|(s, sub)| (s, tokio::spawn(read_all(sub))))
        .collect();
    publisher.open_gate();

    let mut edge_latencies = Vec::new();
    for (i, (_session, reader)) in readers.into_iter().enumerate() {
        let received = within("every object at every subscriber", 30, reader)
            .await
            .unwrap();
        let want: BTreeMap<u64, Vec<u64>> = live.expected().into_iter().collect();
        let mut got = received.groups.clone();
        got.values_mut().for_each(|ids| ids.sort_unstable());
        assert_eq!(got, want, "subscriber {i} (edge {})", i / 10);
        if i < 10 {
            edge_latencies.extend(received.latencies_us);
        }
    }
    let mut per_hop = Vec::new();
    for (_session, reader) in probe_readers {
        per_hop.push(within("probe", 30, reader).await.unwrap().latencies_us);
    }
    per_hop.push(edge_latencies);

    // Exactly one upstream subscription per relay for the one track.
    for relay in std::iter::once(&tree.origin).chain(&tree.mids).chain(&tree.edges) {
        assert_eq!(
            metric(relay, "upstream_subscribe_total").await,
            1.0,
            "one upstream SUBSCRIBE at relay {}",
            relay.udp
        );
    }
    assert_eq!(publisher.subscribes(), 1, "the publisher sees one SUBSCRIBE");

    // Per-hop added latency on clean loopback (same-process clock for publish and receive).
    println!(
        "hops  relay          p50 ms   p99 ms   (glass-to-glass from the publisher, {} objects each)",
        live.groups * live.objects
    );
    let mut previous: Option<(f64, f64)> = None;
    for (hops, (name, mut samples)) in ["origin", "mid", "edge"].into_iter().zip(per_hop).enumerate() {
        samples.sort_unstable();
        let p50 = percentile(&samples, 50.0) as f64 / 1000.0;
        let p99 = percentile(&samples, 99.0) as f64 / 1000.0;
        let added = previous.map_or(String::new(), |(a, b)| {
            format!("   (+{:.2} / +{:.2} for this hop)", p50 - a, p99 - b)
        });
        println!("{:>4}  {name:<12} {p50:>8.2} {p99:>8.2}{added}", hops + 1);
        previous = Some((p50, p99));
    }
    drop(publisher);
}

/// How a mid relay leaves in [`a_mid_relay_leaving_moves_its_edges_to_the_other_mid`].
#[derive(Clone, Copy, Debug)]
enum Leave {
    /// SIGKILL: nothing said; its children notice by the upstream timeout.
    Killed,
    /// SIGTERM: it sends GOAWAY and drains; its children move at once.
    Drained,
}

async fn a_mid_relay_leaving_moves_its_edges_to_the_other_mid(leave: Leave) {
    let mut tree = tree().await;
    // 500 ms groups, like a 2 fps GOP: failover (≈ --upstream-timeout, 750 ms) fits in the
    // cache of the surviving mid, so nothing but the group in flight can be cut short.
    let live = Live {
        groups: 16,
        objects: 10,
        interval: Duration::from_millis(50),
        min_size: 300,
        max_size: 1200,
        finish: true,
    };
    let publisher = LivePublisher::start(session(&tree.origin).await, "kill/show", live, true).await;
    let mut readers = Vec::new();
    for edge in &tree.edges {
        let client = edge.client();
        for _ in 0..3 {
            let s = edge.connect(&client, "moqt").await.unwrap();
            let subscription = within(
                "SUBSCRIBE_OK",
                20,
                s.subscribe(subscribe_msg("kill/show", "video")),
            )
            .await
            .unwrap();
            readers.push((s, tokio::spawn(read_all(subscription))));
        }
    }
    publisher.open_gate();
    publisher.wait_written(|w| w.group >= 5).await;
    let mut mid1 = tree.mids.remove(0);
    let left = Instant::now();
    match leave {
        Leave::Killed => {
            mid1.child.start_kill().unwrap();
            mid1.exit(10).await;
        }
        Leave::Drained => mid1.sigterm(),
    }

    let mut worst_resume = Duration::ZERO;
    for (i, (_session, reader)) in readers.into_iter().enumerate() {
        let received = within("the subscriber continues after the failover", 60, reader)
            .await
            .unwrap();
        let groups: Vec<u64> = received.groups.keys().copied().collect();
        let missing = (0..live.groups)
            .filter(|g| !received.groups.contains_key(g))
            .count();
        let short = received
            .groups
            .values()
            .filter(|ids| (ids.len() as u64) < live.objects)
            .count();
        assert!(
            missing + short <= 1,
            "{leave:?}: subscriber {i} (edge {}): at most one group lost or cut short; got {:?}",
            i / 3,
            received
                .groups
                .iter()
                .map(|(g, ids)| (*g, ids.len()))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            groups.last(),
            Some(&(live.groups - 1)),
            "subscriber {i} reaches the last group"
        );
        if i < 6 {
            // Edges 0 and 1 lost their parent: how long until the next group arrived.
            if let Some((_, at)) = received.first_seen.iter().find(|(_, at)| **at > left) {
                worst_resume = worst_resume.max(at.duration_since(left));
            }
        }
    }
    println!(
        "mid relay {leave:?}: its edges' subscribers got the next group {worst_resume:?} later (worst of 6)"
    );
    for edge in &tree.edges[..2] {
        assert!(
            metric(edge, "upstream_failovers_total").await >= 1.0,
            "edge {} failed over",
            edge.udp
        );
    }
    assert_eq!(metric(&tree.mids[0], "upstream_subscribe_total").await, 1.0);
    if let Leave::Drained = leave {
        // Its children left once they had moved, so the drain ends well before its timeout.
        let status = mid1.exit(15).await;
        assert!(status.success(), "the drained mid relay exits 0: {status:?}");
    }
    drop(publisher);
}

#[tokio::test]
async fn killing_a_mid_relay_moves_its_edges_to_the_other_mid() {
    a_mid_relay_leaving_moves_its_edges_to_the_other_mid(Leave::Killed).await;
}

#[tokio::test]
async fn a_mid_relay_sending_goaway_moves_its_edges_to_the_other_mid() {
    a_mid_relay_leaving_moves_its_edges_to_the_other_mid(Leave::Drained).await;
}

#[tokio::test]
async fn a_configured_loop_is_refused_not_a_storm() {
    let a = relay("loop-a", &[], &[]).await;
    // b's parent is a; a's parent is b (a is restarted knowing b's port).
    let b = relay("loop-b", &[&a], &[]).await;
    let a_port = a.udp.port().to_string();
    a.stop().await;
    let a = relay("loop-a", &[&b], &["--listen", &format!("[::]:{a_port}")]).await;

    let viewer = session(&a).await;
    let started = Instant::now();
    let refused = within(
        "the loop is refused",
        20,
        viewer.subscribe(subscribe_msg("nowhere/show", "video")),
    )
    .await;
    match refused {
        Err(Error::Refused { code, reason, .. }) => {
            assert_eq!(code, RequestErrorCode::DoesNotExist);
            assert!(reason.contains("loop"), "the reason names the loop: {reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refused without waiting out timeouts"
    );
    // Not a storm: one upstream request each way.
    assert!(metric(&a, "upstream_subscribe_total").await <= 1.0);
    assert!(metric(&b, "upstream_subscribe_total").await <= 1.0);

    // A request that already passed through this relay is refused on arrival too.
    let forged = Subscribe {
        parameters: Parameters {
            hop_path: HopPath::new(vec![banyan_relay::upstream::hop_id("loop-a")]),
            ..Default::default()
        },
        ..subscribe_msg("nowhere/show", "video")
    };
    match viewer.subscribe(forged).await {
        Err(Error::Refused { reason, .. }) => assert!(reason.contains("relay loop"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(
        metric(&a, "requests_refused_total{reason=\"loop\"}").await >= 1.0,
        "loop refusals are counted"
    );
}

#[tokio::test]
async fn the_depth_limit_is_enforced() {
    let depth = ["--max-depth", "3"];
    let origin = relay("deep-0", &[], &depth).await;
    let r1 = relay("deep-1", &[&origin], &depth).await;
    let r2 = relay("deep-2", &[&r1], &depth).await;
    let r3 = relay("deep-3", &[&r2], &depth).await;
    let live = Live {
        groups: 2,
        objects: 5,
        interval: Duration::from_millis(10),
        min_size: 100,
        max_size: 200,
        finish: false,
    };
    let _publisher = LivePublisher::start(session(&origin).await, "deep/show", live, false).await;

    // r2 → r1 → origin: the origin is the third relay on the path; allowed.
    let ok = session(&r2).await;
    within(
        "three relays deep",
        20,
        ok.subscribe(subscribe_msg("deep/show", "video")),
    )
    .await
    .expect("a three-relay path is within --max-depth 3");
    // r3 → r2 → r1 → origin would make the origin the fourth.
    let deep = session(&r3).await;
    match within(
        "four relays deep",
        20,
        deep.subscribe(subscribe_msg("deep/show", "other")),
    )
    .await
    {
        Err(Error::Refused { reason, .. }) => assert!(reason.contains("too deep"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn parents_come_from_the_control_planes_route_endpoint() {
    use axum::extract::{Path, Query};
    use axum::routing::get;
    use std::collections::HashMap;

    let origin = relay("ctl-origin", &[], &[]).await;
    let parent = format!("moqt://localhost:{}", origin.udp.port());
    let asked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let log = asked.clone();
    let app = axum::Router::new().route(
        "/v1/route/{*namespace}",
        get(
            move |Path(namespace): Path<String>, Query(q): Query<HashMap<String, String>>| {
                let log = log.clone();
                let parent = parent.clone();
                async move {
                    log.lock()
                        .unwrap()
                        .push((namespace, q.get("relay").cloned().unwrap_or_default()));
                    axum::Json(serde_json::json!({ "upstream": [parent] }))
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let control = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let edge = relay("ctl-edge", &[], &["--control", &control]).await;
    let live = Live {
        groups: 3,
        objects: 5,
        interval: Duration::from_millis(10),
        min_size: 100,
        max_size: 200,
        finish: true,
    };
    let publisher = LivePublisher::start(session(&origin).await, "ctl/show", live, true).await;
    let viewer = session(&edge).await;
    let subscription = within(
        "SUBSCRIBE_OK via the control plane's route",
        20,
        viewer.subscribe(subscribe_msg("ctl/show", "video")),
    )
    .await
    .unwrap();
    let reader = tokio::spawn(read_all(subscription));
    publisher.open_gate();
    let received = within("objects via the routed parent", 20, reader).await.unwrap();
    assert_eq!(received.groups.len(), 3);
    assert_eq!(
        asked.lock().unwrap().first().cloned(),
        Some(("ctl/show".to_string(), "ctl-edge".to_string())),
        "the edge asked for its namespace's route, naming itself"
    );
}

#[tokio::test]
async fn a_returning_publisher_is_picked_up_again_on_the_same_or_another_origin() {
    // Origins answer quickly for a namespace nobody publishes, so the edge moves on to the
    // next parent instead of waiting for a publisher that is elsewhere.
    let wait = ["--rendezvous-max", "300ms"];
    let a = relay("origin-a", &[], &wait).await;
    let b = relay("origin-b", &[], &wait).await;
    let edge = relay("edge", &[&a, &b], &wait).await;
    let viewer = session(&edge).await;
    let live = Live {
        groups: 10_000,
        objects: 10,
        interval: Duration::from_millis(10),
        min_size: 100,
        max_size: 1000,
        finish: false,
    };
    // The publisher starts on A, reconnects to B (another origin), then to B again (the same).
    for (round, (origin, name)) in [(&a, "A"), (&b, "B"), (&b, "B again")].into_iter().enumerate() {
        let publishing = session(origin).await;
        let publisher = LivePublisher::start(publishing.clone(), "back/show", live, false).await;
        let asked = Instant::now();
        let subscription = within(
            "the edge finds the publisher",
            10,
            viewer.subscribe(subscribe_msg("back/show", "video")),
        )
        .await
        .unwrap_or_else(|e| panic!("round {round} (origin {name}): {e}"));
        let reader = tokio::spawn(read_all(subscription));
        let first = within("objects flow", 10, publisher.wait_written(|w| w.group >= 3)).await;
        println!(
            "origin {name}: SUBSCRIBE at the edge answered and 3 groups written {:.0} ms after asking",
            first.at.duration_since(asked).as_secs_f64() * 1000.0
        );
        // The publisher goes away: the track ends down the tree (PUBLISH_DONE), it does not hang.
        publishing.close(SessionErrorCode::NoError, "publisher leaves");
        drop(publisher);
        let received = within("the track ends at the edge", 10, reader).await.unwrap();
        let objects: usize = received.groups.values().map(Vec::len).sum();
        assert!(
            objects >= 20,
            "round {round} (origin {name}): the edge's subscriber got only {objects} objects"
        );
    }
    assert!(
        metric(&edge, "upstream_subscribe_total").await >= 3.0,
        "one upstream subscription per publisher session"
    );
}

#[tokio::test]
async fn an_edge_viewer_waits_for_its_publisher_and_rides_out_a_parent_restart() {
    let origin = relay("restart-origin", &[], &[]).await;
    let port = origin.udp.port().to_string();
    let edge = relay("restart-edge", &[&origin], &[]).await;
    let viewer = session(&edge).await;
    // The viewer comes before the broadcast and asks to wait for it (RENDEZVOUS_TIMEOUT): the
    // edge holds the SUBSCRIBE and keeps asking its parent.
    let subscribing = tokio::spawn({
        let viewer = viewer.clone();
        async move { viewer.subscribe(subscribe_msg("restart/show", "video")).await }
    });
    within("the edge holds the SUBSCRIBE", 10, async {
        while metric(&edge, "tracks_awaiting_publisher").await < 1.0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let live = Live {
        groups: 10_000,
        objects: 10,
        interval: Duration::from_millis(10),
        min_size: 100,
        max_size: 1000,
        finish: false,
    };
    let publishing = session(&origin).await;
    let first = LivePublisher::start(publishing, "restart/show", live, false).await;
    let subscription = within("SUBSCRIBE_OK once the publisher is there", 10, subscribing)
        .await
        .unwrap()
        .expect("the held SUBSCRIBE proceeds");
    let reader = tokio::spawn(read_all(subscription));
    within(
        "the first publisher's groups",
        10,
        first.wait_written(|w| w.group >= 3),
    )
    .await;

    // The origin crashes and comes back on the same port; the publisher reconnects to it and
    // numbers its groups on from where it was.
    let mut origin = origin;
    origin.child.start_kill().unwrap();
    origin.exit(10).await;
    let killed = Instant::now();
    drop(first);
    let origin = relay("restart-origin", &[], &["--listen", &format!("[::]:{port}")]).await;
    let publishing = session(&origin).await;
    let second = LivePublisher::start_from(publishing.clone(), "restart/show", live, false, 1_000).await;
    within(
        "the restarted origin's publisher serves the edge",
        15,
        second.wait_written(|w| w.group >= 1_005),
    )
    .await;
    publishing.close(SessionErrorCode::NoError, "publisher leaves");
    drop(second);
    let received = within("the track ends at the edge", 15, reader).await.unwrap();
    let before = received.groups.keys().filter(|g| **g < 1_000).count();
    let after: Vec<u64> = received.groups.keys().copied().filter(|g| *g >= 1_000).collect();
    let resumed = after
        .first()
        .and_then(|g| received.first_seen.get(g))
        .map(|at| at.duration_since(killed));
    println!(
        "parent restart: {before} groups before, {} after on the same subscription; first new group {resumed:?} after the kill",
        after.len()
    );
    assert!(before >= 3, "groups before the restart");
    assert!(
        after.len() >= 3,
        "the same subscription carried on after the parent restarted"
    );
}

#[tokio::test]
async fn parents_are_verified_against_the_configured_ca() {
    use banyan_certs::{DevOptions, Identity};
    // The origin serves a certificate of its own; one edge trusts it as its CA, the other edge
    // trusts an unrelated one (and neither accepts any certificate, as --upstream-insecure does).
    let dir = tempfile::tempdir().unwrap();
    let pem = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let (origin_cert, origin_key) = (pem("origin.pem"), pem("origin.key"));
    let (other_cert, other_key) = (pem("other.pem"), pem("other.key"));
    let origin_identity = Identity::mint_dev(&DevOptions::default()).unwrap();
    origin_identity
        .write_pem(origin_cert.as_ref(), origin_key.as_ref())
        .unwrap();
    Identity::mint_dev(&DevOptions::default())
        .unwrap()
        .write_pem(other_cert.as_ref(), other_key.as_ref())
        .unwrap();
    let mut origin = start(relay_command(&[
        "--tls-cert",
        &origin_cert,
        "--tls-key",
        &origin_key,
        "--listen",
        "[::]:0",
        "--http-listen",
        "127.0.0.1:0",
        "--insecure-no-auth",
        "--relay-id",
        "ca-origin",
    ]))
    .await;
    origin.hash = Some(origin_identity.sha256().to_hex());
    let parent = format!("moqt://localhost:{}", origin.udp.port());
    let edge = |id: &'static str, ca: String| {
        let parent = parent.clone();
        async move {
            let mut args = DEV.to_vec();
            args.extend(["--relay-id", id, "--upstream", &parent, "--upstream-ca", &ca]);
            start(relay_command(&args)).await
        }
    };
    let trusting = edge("ca-trusting", origin_cert.clone()).await;
    let wrong = edge("ca-wrong", other_cert.clone()).await;
    let live = Live {
        groups: 1000,
        objects: 10,
        interval: Duration::from_millis(10),
        min_size: 100,
        max_size: 1000,
        finish: false,
    };
    let _publisher = LivePublisher::start(session(&origin).await, "ca/show", live, false).await;

    let mut subscription = within(
        "the trusting edge subscribes through the origin",
        10,
        session(&trusting)
            .await
            .subscribe(subscribe_msg("ca/show", "video")),
    )
    .await
    .expect("the origin's certificate is trusted through --upstream-ca");
    let object = within("an object arrives", 10, async {
        loop {
            if let Some(TrackEvent::Subgroup(mut subgroup)) = subscription.next().await.unwrap() {
                break subgroup.next().await.unwrap().expect("an object");
            }
        }
    })
    .await;
    check_stamped(&object.payload);

    match within(
        "the wrong-CA edge answers",
        10,
        session(&wrong).await.subscribe(subscribe_msg("ca/show", "video")),
    )
    .await
    {
        Err(Error::Refused { reason, .. }) => assert!(
            reason.contains("certificate"),
            "the refusal says the parent's certificate is not trusted: {reason}"
        ),
        other => panic!("an untrusted parent must not be used, got {other:?}"),
    }
}
