//! Proves the shared track model end to end over `banyan_tests::mem` on tokio's paused clock:
//! a `Fanout` sends a producer's groups to a subscriber in order and ends with the track, a
//! subscriber that reads nothing has its oldest groups skipped once more than `max_lag`
//! behind (the writer never waits for it), and a range ends at its End Group.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use banyan_moq::coding::{PublishDoneCode, TrackName, TrackNamespace};
use banyan_moq::data::ObjectProperties;
use banyan_moq::message::{Parameters, Subscribe, SubscribeOk};
use banyan_moq::session::{Request, Session, SessionConfig, Subscription, TrackEvent, TrackWriter};
use banyan_moq::track::{Fanout, Limits, Object, Start, Step, TrackProducer};
use banyan_tests::mem::{self, Config};
use bytes::Bytes;

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

/// Write `group` with `objects` objects of `size` bytes.
fn write_group(track: &TrackProducer, group: u64, objects: u64, size: usize) {
    let subgroup = track.open_subgroup(group, 0, None, false).unwrap();
    for id in 0..objects {
        subgroup.write(Object::new(
            id,
            ObjectProperties::default(),
            Bytes::from(vec![group as u8; size]),
        ));
    }
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
    assert_eq!(
        fanout.step().await,
        Step::Started {
            group: 10,
            skipped: vec![]
        }
    );
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
        assert!(
            steps.contains(&Step::Started {
                group,
                skipped: vec![]
            }),
            "{steps:?}"
        );
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
    // Two objects fill a stream's window: an unread group stays in flight.
    let config = Config {
        stream_window: 1500,
        ..Config::default()
    };
    let (writer, _unread, _client, _server) = subscribed(&config).await;
    let track = TrackProducer::new(Limits::groups(8));
    let mut fanout = Fanout::new(track.consume(), writer.sender(), Start::CurrentGroup, 1);
    let mut skipped = Vec::new();
    for group in 0..5 {
        // The producer writes whole groups whatever the subscriber does.
        write_group(&track, group, 4, 1000);
        let step = tokio::time::timeout(std::time::Duration::from_secs(5), fanout.step()).await;
        match step.expect("a step") {
            Step::Started {
                group: started,
                skipped: now,
            } => {
                assert_eq!(started, group);
                skipped.extend(now);
            }
            other => panic!("expected group {group} to start, got {other:?}"),
        }
    }
    assert_eq!(skipped, vec![0, 1, 2], "all but the newest max_lag + 1 groups");
    // The skipped groups' streams are reset at once; the newest two wait for the subscriber.
    let mut finished = Vec::new();
    for _ in 0..3 {
        let step = tokio::time::timeout(std::time::Duration::from_secs(5), fanout.step()).await;
        match step.expect("a step") {
            Step::Finished { group } => finished.push(group),
            other => panic!("expected a skipped group to finish, got {other:?}"),
        }
    }
    finished.sort_unstable();
    assert_eq!(finished, vec![0, 1, 2]);
    assert_eq!(fanout.in_flight(), 2);
    tokio::time::timeout(std::time::Duration::from_secs(5), fanout.abandon())
        .await
        .expect("abandoned");
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
