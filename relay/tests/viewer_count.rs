//! Proves the live viewer count over real QUIC on loopback: through origin ← edge one viewer
//! reads 1 on the origin's `viewers` track (the edge relay pulling the broadcast is not a
//! viewer), a viewer at the origin itself adds one; and 50 viewers split over two edges
//! (origin ← edge A, origin ← edge B) read 50 at the origin and on an edge within 2 s of the
//! last joining, and 0 within 2 s of them leaving, with the origin taking in reports from the
//! two edges only (its work is per child relay, not per viewer).
//!
//! Freshness is printed (`cargo test -p banyan-relay --test viewer_count -- --nocapture`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::{Duration, Instant};

use banyan_moq::coding::SessionErrorCode;
use banyan_moq::session::{Session, Subscription, TrackEvent, TransportKind};
use banyan_relay::interact::payload::{decode_total, Up};
use banyan_relay::interact::Refusal;
use common::live::{Live, LivePublisher};
use common::{interact, like_datagram, poll_until, relay, subscribe_msg, within, TestRelay};
use tokio::sync::watch;

const BROADCAST: &str = "count/show";

/// How soon after viewers join or leave the count must show it (issue 21).
const FRESH: Duration = Duration::from_secs(2);

/// An origin relay with a publisher of the test broadcast on it (keep both).
async fn origin_with_publisher(id: &str) -> (TestRelay, LivePublisher) {
    let origin = relay_under(id, None).await;
    let session = origin.connect(&origin.client(), TransportKind::Quic).await;
    let publisher = LivePublisher::start(session, BROADCAST, Live::endless(), false).await;
    (origin, publisher)
}

/// A relay under `parent` (none: an origin).
async fn relay_under(id: &str, parent: Option<&TestRelay>) -> TestRelay {
    match parent {
        None => relay(&["--relay-id", id]).await,
        Some(parent) => {
            let upstream = format!("moqt://localhost:{}", parent.addr.port());
            relay(&["--relay-id", id, "--upstream", &upstream, "--upstream-insecure"]).await
        }
    }
}

/// Subscribe to `relay`'s `viewers` track of the test broadcast and follow it: the latest
/// count, with when it arrived (`None` before the first).
async fn follow_count(relay: &TestRelay) -> (Session, watch::Receiver<Option<(u64, Instant)>>) {
    let session = relay.connect(&relay.client(), TransportKind::Quic).await;
    let mut subscription: Subscription = within(
        "SUBSCRIBE_OK for viewers",
        20,
        session.subscribe(subscribe_msg(BROADCAST, "viewers")),
    )
    .await
    .unwrap();
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        while let Ok(Some(event)) = subscription.next().await {
            if let TrackEvent::Subgroup(mut reader) = event {
                while let Ok(Some(object)) = reader.next().await {
                    let count = decode_total(object.payload).expect("a viewers object is one varint");
                    tx.send_replace(Some((count, Instant::now())));
                }
            }
        }
    });
    (session, rx)
}

/// Wait (at most `secs`) until the followed count is `want`; when it got there.
async fn count_reaches(
    count: &mut watch::Receiver<Option<(u64, Instant)>>,
    want: u64,
    what: &str,
    secs: u64,
) -> Instant {
    let seen = within(what, secs, count.wait_for(|c| c.is_some_and(|(n, _)| n == want)))
        .await
        .unwrap();
    seen.unwrap().1
}

/// A viewer of `relay`: a session subscribed to the broadcast's video (SUBSCRIBE_OK received).
async fn viewer(relay: &TestRelay) -> (Session, Subscription) {
    let session = relay.connect(&relay.client(), TransportKind::Quic).await;
    let video = within(
        "SUBSCRIBE_OK for video",
        30,
        session.subscribe(subscribe_msg(BROADCAST, "video")),
    )
    .await
    .unwrap();
    (session, video)
}

fn leave(viewers: Vec<(Session, Subscription)>) {
    for (session, video) in viewers {
        drop(video);
        session.close(SessionErrorCode::NoError, "viewer leaves");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_viewer_through_an_edge_reads_1_not_2() {
    let (origin, _publisher) = origin_with_publisher("vc-origin").await;
    let edge = relay_under("vc-edge", Some(&origin)).await;
    let (_watch, mut count) = follow_count(&origin).await;
    count_reaches(&mut count, 0, "the origin's first count, 0", 10).await;

    let joined = Instant::now();
    let browser = viewer(&edge).await;
    let at = count_reaches(&mut count, 1, "the edge's viewer counted at the origin", 10).await;
    eprintln!(
        "viewer count: 1 viewer through origin ← edge reads 1 at the origin {:?} after SUBSCRIBE",
        at.saturating_duration_since(joined)
    );
    // The edge reports again every second: were the edge relay counted as a viewer of the
    // origin, the count would move to 2 in that time.
    let settle = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < settle {
        let changed = tokio::time::timeout_at(tokio::time::Instant::from_std(settle), count.changed()).await;
        assert_eq!(
            count.borrow().map(|(n, _)| n),
            Some(1),
            "the count moved away from the one viewer"
        );
        if changed.is_err() {
            break;
        }
    }

    // A viewer at the origin itself is one more; leaving, it is one less.
    let direct = viewer(&origin).await;
    count_reaches(&mut count, 2, "a viewer at the origin added", 10).await;
    leave(vec![direct]);
    count_reaches(&mut count, 1, "the origin's viewer gone", 10).await;
    leave(vec![browser]);
    count_reaches(&mut count, 0, "the edge's viewer gone", 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_viewers_over_two_edges_are_counted_within_2s_of_joining_and_leaving() {
    let (origin, _publisher) = origin_with_publisher("vc2-origin").await;
    let edge_a = relay_under("vc2-a", Some(&origin)).await;
    let edge_b = relay_under("vc2-b", Some(&origin)).await;
    let (_at_origin, mut origin_count) = follow_count(&origin).await;
    // The count also flows down like video: a page on edge B reads it there.
    let (_at_edge, mut edge_count) = follow_count(&edge_b).await;
    count_reaches(&mut origin_count, 0, "the origin's first count, 0", 10).await;

    let n = 50u64;
    let joins = (0..n).map(|i| viewer(if i % 2 == 0 { &edge_a } else { &edge_b }));
    let viewers = futures::future::join_all(joins).await;
    let joined = Instant::now();
    let at_origin = count_reaches(&mut origin_count, n, "50 viewers counted at the origin", 10).await;
    let at_edge = count_reaches(&mut edge_count, n, "50 viewers counted on edge B", 10).await;
    let (join_origin, join_edge) = (
        at_origin.saturating_duration_since(joined),
        at_edge.saturating_duration_since(joined),
    );

    let leaving = Instant::now();
    leave(viewers);
    let left_origin = count_reaches(&mut origin_count, 0, "the viewers gone at the origin", 10)
        .await
        .saturating_duration_since(leaving);
    let left_edge = count_reaches(&mut edge_count, 0, "the viewers gone on edge B", 10)
        .await
        .saturating_duration_since(leaving);
    eprintln!(
        "viewer count: {n} viewers over two edges; after the last joined the origin read {n} in {join_origin:?} \
         (edge B {join_edge:?}); after they left it read 0 in {left_origin:?} (edge B {left_edge:?})"
    );
    for (what, took) in [
        ("join, origin", join_origin),
        ("join, edge B", join_edge),
        ("leave, origin", left_origin),
        ("leave, edge B", left_edge),
    ] {
        assert!(took <= FRESH, "{what}: the count took {took:?}, over {FRESH:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_cannot_report_a_count_and_malformed_reports_are_refused() {
    let (origin, _publisher) = origin_with_publisher("vc3-origin").await;
    let edge = relay_under("vc3-edge", Some(&origin)).await;
    let (_watch, mut count) = follow_count(&origin).await;
    let browser = viewer(&edge).await;
    count_reaches(&mut count, 1, "the edge's viewer counted", 10).await;

    // A viewer (no Hop ID) claims 1,000 viewers, then sends a truncated report: both are
    // refused as malformed at the edge and counted, and the count stays 1.
    let forger = edge.connect(&edge.client(), TransportKind::Quic).await;
    let writer = interact(&forger, BROADCAST).await;
    let mut datagram = like_datagram(0, 1, 1);
    datagram.payload = Up::Viewers { count: 1000 }.encode();
    writer.send_datagram(datagram.clone()).unwrap();
    datagram.group_id = 1;
    datagram.payload = Up::Viewers { count: 1000 }.encode().slice(..1);
    writer.send_datagram(datagram).unwrap();
    within(
        "both reports refused as malformed",
        10,
        poll_until(|| edge.metrics.interact_refused(Refusal::Malformed) >= 2),
    )
    .await;
    // Two of the edge's one-second refreshes later the count is still the one viewer.
    let settle = tokio::time::Instant::now() + Duration::from_millis(2500);
    while tokio::time::timeout_at(settle, count.changed()).await.is_ok() {
        assert_eq!(
            count.borrow().map(|(n, _)| n),
            Some(1),
            "a viewer's report was counted"
        );
    }
    assert_eq!(edge.metrics.interact_refused(Refusal::Malformed), 2);
    drop((browser, writer, forger));
}
