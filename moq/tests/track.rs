//! Proves the shared track model end to end over `banyan_tests::mem` on tokio's paused clock:
//! a `Fanout` sends a producer's groups to a subscriber in order and ends with the track, a
//! subscriber that reads nothing has its oldest groups skipped once more than `max_lag`
//! behind (the writer never waits for it), a group still unacknowledged one GOP plus the
//! round trip after the next group began is skipped as late while delivered groups never
//! are, and a range ends at its End Group.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use banyan_moq::coding::{PublishDoneCode, TrackName, TrackNamespace};
use banyan_moq::message::{Parameters, Subscribe, SubscribeOk};
use banyan_moq::session::{Request, Session, SessionConfig, Subscription, TrackEvent, TrackWriter};
use banyan_moq::track::{Fanout, LatencyBudget, Limits, SkipReason, Start, Step, TrackProducer};
use banyan_tests::mem::{self, Config, Link};
use common::fanout::{assert_skipped_late, next_step, write_group};
use std::time::Duration;

/// A subscribed pair: the publisher's writer and the subscriber's subscription.
async fn subscribed(config: &Config) -> (TrackWriter, Subscription, Session, Session) {
    let url = "moqt://mem.test/live".parse().unwrap();
    let pair = mem::session_pair(config, &url, SessionConfig::default())
        .await
        .unwrap();
    let (client, server) = (pair.client.0.clone(), pair.server.0.clone());
    tokio::spawn(pair.client.1.run());
    tokio::spawn(pair.server.1.run());
    let subscribe = Subscribe {
        request_id: 0,
        track_namespace: TrackNamespace::from_path("live").unwrap(),
        track_name: TrackName::from("video"),
        parameters: Parameters::default(),
    };
    let accepting = {
        let server = server.clone();
        tokio::spawn(async move {
            let Some(Request::Subscribe(request)) = server.accept().await else {
                panic!("expected SUBSCRIBE")
            };
            request.accept(SubscribeOk::default()).await.unwrap()
        })
    };
    let subscription = client.subscribe(subscribe).await.unwrap();
    (accepting.await.unwrap(), subscription, client, server)
}

/// Every (group, object ids) the subscriber receives, and the PUBLISH_DONE status.
async fn read_all(mut subscription: Subscription) -> (Vec<(u64, Vec<u64>)>, Option<PublishDoneCode>) {
    let (mut groups, mut done) = (Vec::new(), None);
    loop {
        match subscription.next().await {
            Ok(Some(TrackEvent::Subgroup(mut reader))) => {
                let group = reader.header().group_id;
                let mut ids = Vec::new();
                while let Ok(Some(object)) = reader.next().await {
                    ids.push(object.object_id);
                }
                groups.push((group, ids));
            }
            // PUBLISH_DONE can overtake the streams it counts: read on until the end.
            Ok(Some(TrackEvent::Done(d))) => done = Some(d.status_code),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return (groups, done),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_fanout_sends_every_group_in_order_and_ends_with_the_track() {
    let (writer, subscription, _client, _server) = subscribed(&Config::default()).await;
    let track = TrackProducer::new(Limits::groups(8));
    write_group(&track, 10, 3, 100);
    let reading = tokio::spawn(read_all(subscription));
    let mut fanout = Fanout::new(track.consume(), writer.sender(), Start::CurrentGroup, 4);
    assert_eq!(fanout.step().await, Step::Started { group: 10 });
    write_group(&track, 11, 2, 100);
    write_group(&track, 12, 1, 100);
    track.end();
    let mut steps = Vec::new();
    loop {
        match fanout.step().await {
            Step::Ended => break,
            step => steps.push(step),
        }
    }
    for group in [11, 12] {
        assert!(steps.contains(&Step::Started { group }), "{steps:?}");
    }
    for group in [10, 11, 12] {
        assert!(steps.contains(&Step::Finished { group }), "{steps:?}");
    }
    assert_eq!(fanout.step().await, Step::Ended, "ended stays ended");
    fanout.drain(std::time::Duration::from_secs(1)).await;
    writer.finish(PublishDoneCode::TrackEnded, "done").await.unwrap();
    let (groups, done) = reading.await.unwrap();
    assert_eq!(groups, vec![(10, vec![0, 1, 2]), (11, vec![0, 1]), (12, vec![0])]);
    assert_eq!(done, Some(PublishDoneCode::TrackEnded));
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_that_reads_nothing_is_skipped_forward_and_never_blocks_the_writer() {
    // Two objects fill a stream's window: an unread group stays in flight, being written.
    let config = Config {
        stream_window: 1500,
        ..Config::default()
    };
    let (writer, _unread, _client, _server) = subscribed(&config).await;
    let track = TrackProducer::new(Limits::groups(8));
    let mut fanout = Fanout::new(track.consume(), writer.sender(), Start::CurrentGroup, 1);
    let (mut skipped, mut finished) = (Vec::new(), Vec::new());
    for group in 0..5 {
        // The producer writes whole groups whatever the subscriber does.
        write_group(&track, group, 4, 1000);
        loop {
            match next_step(&mut fanout).await {
                Step::Started { group: started } if started == group => break,
                Step::Skipped { group, reason } => {
                    assert_eq!(reason, SkipReason::Lag);
                    skipped.push(group);
                }
                Step::Finished { group } => finished.push(group),
                other => panic!("expected group {group} to start, got {other:?}"),
            }
        }
    }
    // The last start skipped one more; the skipped groups' streams are reset at once, the
    // newest two wait for the subscriber.
    while finished.len() < 3 {
        match next_step(&mut fanout).await {
            Step::Skipped {
                group,
                reason: SkipReason::Lag,
            } => skipped.push(group),
            Step::Finished { group } => finished.push(group),
            other => panic!("expected a skipped group to finish, got {other:?}"),
        }
    }
    assert_eq!(skipped, vec![0, 1, 2], "all but the newest max_lag + 1 groups");
    finished.sort_unstable();
    assert_eq!(finished, vec![0, 1, 2]);
    assert_eq!(fanout.in_flight(), 2);
    tokio::time::timeout(Duration::from_secs(5), fanout.abandon())
        .await
        .expect("abandoned");
}

#[tokio::test(start_paused = true)]
async fn a_group_not_delivered_a_gop_after_the_next_began_is_skipped_as_late() {
    // 20 ms each way: the budget is one GOP plus the 40 ms round trip.
    let link = Link {
        latency: Duration::from_millis(20),
        ..Link::default()
    };
    let config = Config {
        to_server: link,
        to_client: link,
        ..Config::default()
    };
    // The subscriber never reads: everything is written (the window is large) and nothing
    // is ever acknowledged, as on a path far slower than the track.
    let (writer, _unread, _client, _server) = subscribed(&config).await;
    let track = TrackProducer::new(Limits::groups(8));
    let mut fanout =
        Fanout::new(track.consume(), writer.sender(), Start::CurrentGroup, 8).budget(LatencyBudget::Auto);
    write_group(&track, 0, 3, 1000);
    assert_eq!(next_step(&mut fanout).await, Step::Started { group: 0 });
    tokio::time::sleep(Duration::from_secs(1)).await;
    write_group(&track, 1, 3, 1000);
    assert_eq!(next_step(&mut fanout).await, Step::Started { group: 1 });
    assert_eq!(
        fanout.gop(),
        Some(Duration::from_secs(1)),
        "groups one second apart"
    );
    let overtaken = tokio::time::Instant::now();
    assert_skipped_late(&mut fanout, 0, overtaken, "budget 1 s + 40 ms RTT").await;
    assert_eq!(next_step(&mut fanout).await, Step::Finished { group: 0 });
    // The newest group is never late: nothing newer has begun.
    assert!(
        tokio::time::timeout(Duration::from_secs(10), fanout.step())
            .await
            .is_err(),
        "group 1 stays in flight"
    );
    assert_eq!(fanout.in_flight(), 1);
    fanout.abandon().await;
}

#[tokio::test(start_paused = true)]
async fn delivered_groups_are_never_late() {
    let (writer, subscription, _client, _server) = subscribed(&Config::default()).await;
    let reading = tokio::spawn(read_all(subscription));
    let track = TrackProducer::new(Limits::groups(8));
    let budget = LatencyBudget::Fixed(Duration::from_millis(100));
    let mut fanout = Fanout::new(
        track.consume(),
        writer.sender(),
        Start::At { group: 0, object: 0 },
        8,
    )
    .budget(budget);
    let producing = tokio::spawn(async move {
        for group in 0..5 {
            write_group(&track, group, 3, 1000);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        track.end();
    });
    let mut steps = Vec::new();
    loop {
        match next_step(&mut fanout).await {
            Step::Ended => break,
            step => steps.push(step),
        }
    }
    producing.await.unwrap();
    assert!(
        !steps.iter().any(|s| matches!(s, Step::Skipped { .. })),
        "{steps:?}"
    );
    writer.finish(PublishDoneCode::TrackEnded, "done").await.unwrap();
    let (groups, _) = reading.await.unwrap();
    assert_eq!(groups.len(), 5, "{groups:?}");
}

#[tokio::test(start_paused = true)]
async fn a_range_ends_at_its_end_group() {
    let (writer, subscription, _client, _server) = subscribed(&Config::default()).await;
    let track = TrackProducer::new(Limits::groups(8));
    for group in 0..4 {
        write_group(&track, group, 2, 10);
    }
    let reading = tokio::spawn(read_all(subscription));
    let start = Start::At { group: 1, object: 1 };
    let mut fanout = Fanout::new(track.consume(), writer.sender(), start, 8).until(Some(2));
    loop {
        match fanout.step().await {
            Step::ReachedEnd => break,
            Step::Ended => panic!("the track did not end"),
            _ => {}
        }
    }
    fanout.drain(std::time::Duration::from_secs(1)).await;
    writer
        .finish(PublishDoneCode::SubscriptionEnded, "range")
        .await
        .unwrap();
    let (groups, _) = reading.await.unwrap();
    assert_eq!(
        groups,
        vec![(1, vec![1]), (2, vec![0, 1])],
        "from (1, 1) through group 2"
    );
}
