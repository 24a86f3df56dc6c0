//! Proves the relay's core behaviours end to end over real QUIC and WebTransport on loopback:
//! fan-out delivers every object byte-identical and in order to every subscriber on both
//! transports, simultaneous subscribers coalesce into one upstream SUBSCRIBE, a late joiner
//! starts at the first object of the current group, subscribing before the namespace is
//! published waits and then succeeds, and unknown tracks are refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use banyan_moq::coding::RequestErrorCode;
use banyan_moq::session::{Error, Session, Subscription, TrackEvent, TransportKind};
use common::{payload, publish, relay, subscribe_msg, within, Pattern};

/// Read a subscription to its end: every (group, object ids in stream order), checking bytes.
async fn drain(mut subscription: Subscription) -> Vec<(u64, Vec<u64>)> {
    let mut groups = Vec::new();
    let mut readers = Vec::new();
    while let Some(event) = subscription.next().await.unwrap() {
        if let TrackEvent::Subgroup(mut subgroup) = event {
            readers.push(tokio::spawn(async move {
                let group = subgroup.group_id();
                let mut ids = Vec::new();
                while let Some(object) = subgroup.next().await.unwrap() {
                    assert_eq!(
                        object.payload,
                        payload(group, object.object_id),
                        "bytes of {group}/{}",
                        object.object_id
                    );
                    ids.push(object.object_id);
                }
                (group, ids)
            }));
        }
    }
    for reader in readers {
        groups.push(reader.await.unwrap());
    }
    groups.sort();
    groups
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_delivers_every_object_on_both_transports() {
    let relay = relay(&[]).await;
    let client = relay.client();
    let publisher = relay.connect(&client, TransportKind::Quic).await;
    let pattern = Pattern {
        groups: 5,
        objects: 10,
        interval: Duration::from_millis(5),
    };

    // Subscribers first (they wait for the namespace), then the publisher starts.
    let mut subscribers = Vec::new();
    for i in 0..40 {
        let kind = if i % 2 == 0 {
            TransportKind::Quic
        } else {
            TransportKind::WebTransport
        };
        let session: Session = relay.connect(&client, kind).await;
        subscribers.push(tokio::spawn(async move {
            let subscription = session
                .subscribe(subscribe_msg("live/show", "video"))
                .await
                .unwrap();
            let groups = drain(subscription).await;
            (session, groups)
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_publication, serving) = publish(publisher, "live/show", pattern).await;

    let expected: Vec<(u64, Vec<u64>)> = (0..pattern.groups)
        .map(|g| (g, (0..pattern.objects).collect()))
        .collect();
    for subscriber in subscribers {
        let (_session, groups) = within("subscriber drains", 30, subscriber).await.unwrap();
        assert_eq!(groups, expected, "every object of every group, in order");
    }
    assert_eq!(
        relay.metrics.upstream_subscribe_total.get(),
        1,
        "one upstream SUBSCRIBE"
    );
    drop(serving);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_subscribers_coalesce_into_one_upstream_subscribe() {
    let relay = relay(&[]).await;
    let client = relay.client();
    let publisher = relay.connect(&client, TransportKind::Quic).await;
    let pattern = Pattern {
        groups: 1000,
        objects: 10,
        interval: Duration::from_millis(10),
    };
    let (_publication, serving) = publish(publisher, "live/crowd", pattern).await;

    let mut sessions = Vec::new();
    for _ in 0..50 {
        sessions.push(relay.connect(&client, TransportKind::Quic).await);
    }
    // Every SUBSCRIBE goes out within a few milliseconds of the others.
    let subscriptions = futures::future::join_all(
        sessions
            .iter()
            .map(|s| s.subscribe(subscribe_msg("live/crowd", "video"))),
    )
    .await;
    for subscription in &subscriptions {
        assert!(subscription.is_ok(), "{subscription:?}");
    }
    assert_eq!(relay.metrics.upstream_subscribe_total.get(), 1);
    drop(subscriptions);
    serving.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_starts_at_the_current_group() {
    let relay = relay(&[]).await;
    let client = relay.client();
    let publisher = relay.connect(&client, TransportKind::Quic).await;
    // Groups of 20 objects, 20 ms apart: a group lasts 400 ms.
    let pattern = Pattern {
        groups: 1000,
        objects: 20,
        interval: Duration::from_millis(20),
    };
    let (_publication, serving) = publish(publisher, "live/late", pattern).await;

    let early = relay.connect(&client, TransportKind::Quic).await;
    let mut first = early
        .subscribe(subscribe_msg("live/late", "video"))
        .await
        .unwrap();
    // Wait until the publisher is well into a group beyond the first.
    let mut current_group = 0;
    while current_group < 1 {
        if let Some(TrackEvent::Subgroup(s)) = first.next().await.unwrap() {
            current_group = s.group_id();
        }
    }
    tokio::time::sleep(Duration::from_millis(150)).await;

    let late = relay.connect(&client, TransportKind::WebTransport).await;
    let started = std::time::Instant::now();
    let mut subscription = late.subscribe(subscribe_msg("live/late", "video")).await.unwrap();
    let Some(TrackEvent::Subgroup(mut subgroup)) =
        within("first subgroup", 5, subscription.next()).await.unwrap()
    else {
        panic!("expected a subgroup first")
    };
    let object = within("first object", 5, subgroup.next()).await.unwrap().unwrap();
    let waited = started.elapsed();
    assert_eq!(
        object.object_id, 0,
        "starts at the first object of its group (the keyframe)"
    );
    assert!(subgroup.group_id() >= current_group, "not an older group");
    // It did not wait for the next group to begin (a group lasts 400 ms; the current one
    // started at least 150 ms before we joined).
    assert!(waited < Duration::from_millis(250), "joined in {waited:?}");
    println!(
        "late joiner: first object of group {} after {waited:?}",
        subgroup.group_id()
    );
    serving.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_namespace_is_refused_after_the_bounded_wait() {
    let relay = relay(&["--namespace-wait", "300ms"]).await;
    let client = relay.client();
    let session = relay.connect(&client, TransportKind::Quic).await;
    let started = std::time::Instant::now();
    let error = session
        .subscribe(subscribe_msg("nobody/here", "video"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Refused {
                code: RequestErrorCode::DoesNotExist,
                ..
            }
        ),
        "got {error:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
}
