//! Proves the relay's core behaviours end to end over real QUIC and WebTransport on loopback:
//! fan-out delivers every object byte-identical and in order to every subscriber on both
//! transports, simultaneous subscribers coalesce into one upstream SUBSCRIBE, a late joiner
//! starts at the first object of the current group, subscribing before the namespace is
//! published waits and then succeeds; draft-18 rendezvous (no
//! RENDEZVOUS_TIMEOUT: DOES_NOT_EXIST at once; with it: held up to the relay's cap, TIMEOUT,
//! or proceeding with a PUBLISH_NAMESPACE or a PUBLISH that arrives in time), SUBSCRIBE_TRACKS
//! answered with a PUBLISH per pushed track, and a joining FETCH sent right behind its
//! SUBSCRIBE.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::{Duration, Instant};

use banyan_moq::coding::{PublishDoneCode, RequestErrorCode, TrackName, TrackNamespace};
use banyan_moq::message::{
    Fetch, FetchType, JoiningFetch, Message, Parameters, Publish, RequestOk, Subscribe, SubscribeTracks,
};
use banyan_moq::session::{Error, PublishRequest, Request, Session, Subscription, TrackEvent, TransportKind};
use common::{payload, poll_until, publish, publish_gated, relay, subscribe_msg, within, Pattern};

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

    // Subscribers first (they wait for the namespace), then the publisher starts; its first
    // object waits until every subscriber has its SUBSCRIBE_OK, so each sees every group.
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
    within(
        "a subscriber waits for the namespace",
        10,
        poll_until(|| relay.metrics.tracks_awaiting_publisher.get() == 1),
    )
    .await;
    let (gate, gate_rx) = tokio::sync::watch::channel(false);
    let (_publication, serving) = publish_gated(publisher, "live/show", pattern, Some(gate_rx)).await;
    within(
        "every subscriber is forwarded to",
        10,
        poll_until(|| relay.metrics.subscriptions.get() == 40),
    )
    .await;
    gate.send_replace(true);

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
    // The scenario, not an ordering wait: join 150 ms into the current group, so that
    // waiting for the next group would show in `waited` below.
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

/// A SUBSCRIBE for `namespace`/`track` with RENDEZVOUS_TIMEOUT `rendezvous` (ms), or none.
fn subscribe_waiting(namespace: &str, track: &str, rendezvous: Option<u64>) -> Subscribe {
    let mut subscribe = subscribe_msg(namespace, track);
    subscribe.parameters.rendezvous_timeout = rendezvous;
    subscribe
}

fn refusal(error: Error) -> RequestErrorCode {
    match error {
        Error::Refused { code, .. } => code,
        other => panic!("expected REQUEST_ERROR, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_without_rendezvous_is_refused_at_once() {
    // The cap is long: an answer well before it proves the relay did not hold the request.
    let relay = relay(&["--rendezvous-max", "10s"]).await;
    let client = relay.client();
    for kind in [TransportKind::Quic, TransportKind::WebTransport] {
        let session = relay.connect(&client, kind).await;
        let started = Instant::now();
        let error = within(
            "the refusal",
            5,
            session.subscribe(subscribe_waiting("nobody/here", "video", None)),
        )
        .await
        .unwrap_err();
        let took = started.elapsed();
        assert_eq!(refusal(error), RequestErrorCode::DoesNotExist, "{kind:?}");
        println!("{kind:?}: DOES_NOT_EXIST after {took:?} (no RENDEZVOUS_TIMEOUT)");
        // An explicit 0 means the same.
        let error = within(
            "the refusal",
            5,
            session.subscribe(subscribe_waiting("nobody/here", "video", Some(0))),
        )
        .await
        .unwrap_err();
        assert_eq!(refusal(error), RequestErrorCode::DoesNotExist, "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendezvous_timeout_is_honoured_up_to_the_relay_cap() {
    let relay = relay(&["--rendezvous-max", "1s"]).await;
    let client = relay.client();
    let session = relay.connect(&client, TransportKind::Quic).await;

    // Asked for 300 ms: TIMEOUT, not before.
    let started = Instant::now();
    let error = within(
        "the timeout",
        5,
        session.subscribe(subscribe_waiting("nobody/rendezvous", "video", Some(300))),
    )
    .await
    .unwrap_err();
    let took = started.elapsed();
    assert_eq!(refusal(error), RequestErrorCode::Timeout);
    assert!(took >= Duration::from_millis(300), "held only {took:?}");
    println!("asked 300 ms: TIMEOUT after {took:?}");

    // Asked for a minute: the relay's cap (1 s) applies.
    let started = Instant::now();
    let error = within(
        "the capped timeout",
        10,
        session.subscribe(subscribe_waiting("nobody/rendezvous", "video", Some(60_000))),
    )
    .await
    .unwrap_err();
    let took = started.elapsed();
    assert_eq!(refusal(error), RequestErrorCode::Timeout);
    assert!(took >= Duration::from_secs(1), "held only {took:?}");
    println!("asked 60 s, cap 1 s: TIMEOUT after {took:?}");

    // A second subscriber without the parameter joining the held track is still refused at
    // once, while the first keeps waiting.
    let waiting = tokio::spawn({
        let session = session.clone();
        async move {
            session
                .subscribe(subscribe_waiting("nobody/shared", "video", Some(60_000)))
                .await
        }
    });
    let other = relay.connect(&client, TransportKind::WebTransport).await;
    let error = within(
        "the immediate refusal",
        5,
        other.subscribe(subscribe_waiting("nobody/shared", "video", None)),
    )
    .await
    .unwrap_err();
    assert_eq!(refusal(error), RequestErrorCode::DoesNotExist);
    assert!(!waiting.is_finished(), "the held SUBSCRIBE is still held");
    let error = within("the held one times out", 10, waiting)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(refusal(error), RequestErrorCode::Timeout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_joining_a_held_track_late_still_gets_its_full_wait() {
    // The track is held from the first subscriber's arrival; a second one joins 600 ms later
    // with its own 1 s wait, and the publisher comes after the first one gave up and after
    // the relay's cap has run from the track's start, but within the second one's wait.
    let relay = relay(&["--rendezvous-max", "1s"]).await;
    let client = relay.client();
    let first = relay.connect(&client, TransportKind::Quic).await;
    let second = relay.connect(&client, TransportKind::Quic).await;
    let started = Instant::now();
    let early = tokio::spawn(async move {
        first
            .subscribe(subscribe_waiting("late/joiner", "video", Some(1_000)))
            .await
    });
    within(
        "the held track",
        5,
        poll_until(|| relay.metrics.tracks_awaiting_publisher.get() == 1),
    )
    .await;
    tokio::time::sleep_until((started + Duration::from_millis(600)).into()).await;
    let late = tokio::spawn(async move {
        second
            .subscribe(subscribe_waiting("late/joiner", "video", Some(1_000)))
            .await
    });
    let error = within("the first one's TIMEOUT", 5, early)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(refusal(error), RequestErrorCode::Timeout);
    tokio::time::sleep_until((started + Duration::from_millis(1_200)).into()).await;
    let publisher = relay.connect(&client, TransportKind::Quic).await;
    let pattern = Pattern {
        groups: 2,
        objects: 2,
        interval: Duration::from_millis(5),
    };
    let (_publication, _serving) = publish(publisher, "late/joiner", pattern).await;
    let subscription = within("the late one's SUBSCRIBE_OK", 5, late)
        .await
        .unwrap()
        .expect("held for its own full wait, then answered");
    let groups = within("the pattern", 10, drain(subscription)).await;
    assert!(!groups.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_subscribe_proceeds_when_the_publisher_arrives() {
    let relay = relay(&["--rendezvous-max", "10s"]).await;
    let client = relay.client();
    let viewer = relay.connect(&client, TransportKind::WebTransport).await;

    // Held for a namespace, then PUBLISH_NAMESPACE arrives.
    let held = tokio::spawn({
        let viewer = viewer.clone();
        async move {
            viewer
                .subscribe(subscribe_waiting("late/ns", "video", Some(5_000)))
                .await
        }
    });
    let publisher = relay.connect(&client, TransportKind::Quic).await;
    // Not before the relay holds the request.
    within(
        "the held track",
        5,
        poll_until(|| relay.metrics.tracks_awaiting_publisher.get() == 1),
    )
    .await;
    let pattern = Pattern {
        groups: 3,
        objects: 3,
        interval: Duration::from_millis(5),
    };
    let (_publication, _serving) = publish(publisher.clone(), "late/ns", pattern).await;
    let subscription = within("SUBSCRIBE_OK", 10, held).await.unwrap().unwrap();
    let groups = within("the pattern", 10, drain(subscription)).await;
    assert!(!groups.is_empty(), "objects arrived");

    // Held for a track, then the track is pushed with PUBLISH: the held SUBSCRIBE proceeds
    // with the pushed track, and its session gets no PUBLISH for it even though it also
    // asked for the namespace's tracks (SUBSCRIBE_TRACKS); another session that asked does.
    let tracks_of = |prefix: &str| SubscribeTracks {
        request_id: 0,
        track_namespace_prefix: TrackNamespace::from_path(prefix).unwrap(),
        parameters: Parameters::default(),
    };
    let _viewer_tracks = viewer.subscribe_tracks(tracks_of("late")).await.unwrap();
    let watcher = relay.connect(&client, TransportKind::Quic).await;
    let _watcher_tracks = watcher.subscribe_tracks(tracks_of("late")).await.unwrap();
    let held = tokio::spawn({
        let viewer = viewer.clone();
        async move {
            viewer
                .subscribe(subscribe_waiting("late/push", "video", Some(5_000)))
                .await
        }
    });
    within(
        "the held track",
        5,
        poll_until(|| relay.metrics.tracks_awaiting_publisher.get() == 1),
    )
    .await;
    let pusher = relay.connect(&client, TransportKind::Quic).await;
    let mut writer = pusher
        .publish(Publish {
            request_id: 0,
            track_namespace: TrackNamespace::from_path("late/push").unwrap(),
            track_name: TrackName::from("video"),
            track_alias: 0,
            parameters: Parameters::default(),
            track_properties: Default::default(),
        })
        .await
        .unwrap();
    within("PUBLISH_OK", 5, writer.next_request()).await.unwrap();
    let subscription = within("SUBSCRIBE_OK", 10, held).await.unwrap().unwrap();
    match within("the other session's PUBLISH", 5, watcher.accept()).await {
        Some(Request::Publish(request)) => {
            assert_eq!(request.message.track_name, TrackName::from("video"));
        }
        other => panic!("expected a PUBLISH, got {other:?}"),
    }
    // Both were told at the same moment: the held session would have had its PUBLISH by now.
    let extra = tokio::time::timeout(Duration::from_millis(300), viewer.accept()).await;
    assert!(
        extra.is_err(),
        "the held session got a PUBLISH as well: {extra:?}"
    );
    let reading = tokio::spawn(drain(subscription));
    // Write only once the forwarder is there, so every group is live for it.
    within(
        "the forwarder",
        5,
        poll_until(|| relay.metrics.subscriptions.get() >= 1),
    )
    .await;
    for group in 0..2 {
        let mut subgroup = writer.open_subgroup(group, 0, None, false).await.unwrap();
        for object in 0..3 {
            subgroup
                .write_payload(object, payload(group, object))
                .await
                .unwrap();
        }
        subgroup.finish();
    }
    writer
        .finish(PublishDoneCode::TrackEnded, "pushed")
        .await
        .unwrap();
    let groups = within("the pushed track", 10, reading).await.unwrap();
    assert_eq!(groups, vec![(0, vec![0, 1, 2]), (1, vec![0, 1, 2])]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_tracks_gets_a_publish_for_pushed_tracks() {
    let relay = relay(&[]).await;
    let client = relay.client();
    let pusher = relay.connect(&client, TransportKind::Quic).await;
    let push = |name: &str| Publish {
        request_id: 0,
        track_namespace: TrackNamespace::from_path("disc/show").unwrap(),
        track_name: TrackName::from(name),
        track_alias: 0,
        parameters: Parameters::default(),
        track_properties: Default::default(),
    };
    // One track pushed before the SUBSCRIBE_TRACKS, one after.
    let mut before = pusher.publish(push("before")).await.unwrap();
    within("PUBLISH_OK", 5, before.next_request()).await.unwrap();

    for kind in [TransportKind::Quic, TransportKind::WebTransport] {
        let subscriber = relay.connect(&client, kind).await;
        let _tracks = within(
            "SUBSCRIBE_TRACKS answered",
            5,
            subscriber.subscribe_tracks(SubscribeTracks {
                request_id: 0,
                track_namespace_prefix: TrackNamespace::from_path("disc").unwrap(),
                parameters: Parameters::default(),
            }),
        )
        .await
        .unwrap();
        let mut published = Vec::new();
        while published.is_empty() {
            match within("a PUBLISH from the relay", 5, subscriber.accept()).await {
                Some(Request::Publish(request)) => published.push(request),
                Some(other) => panic!("unexpected request {other:?}"),
                None => panic!("session closed"),
            }
        }
        assert_eq!(published[0].message.track_name, TrackName::from("before"));
        let accepted: Vec<_> = futures_accept(published).await;
        drop(accepted);
    }

    // A track pushed while a SUBSCRIBE_TRACKS is open is published to it, and its objects
    // follow.
    let subscriber = relay.connect(&client, TransportKind::Quic).await;
    let _tracks = subscriber
        .subscribe_tracks(SubscribeTracks {
            request_id: 0,
            track_namespace_prefix: TrackNamespace::from_path("disc/show").unwrap(),
            parameters: Parameters::default(),
        })
        .await
        .unwrap();
    let Some(Request::Publish(first)) = within("PUBLISH before", 5, subscriber.accept()).await else {
        panic!("expected PUBLISH");
    };
    assert_eq!(first.message.track_name, TrackName::from("before"));
    let mut after = pusher.publish(push("after")).await.unwrap();
    within("PUBLISH_OK", 5, after.next_request()).await.unwrap();
    let Some(Request::Publish(second)) = within("PUBLISH after", 5, subscriber.accept()).await else {
        panic!("expected PUBLISH");
    };
    assert_eq!(second.message.track_name, TrackName::from("after"));
    let subscription = second.accept(RequestOk::default()).await.unwrap();
    let reading = tokio::spawn(drain(subscription));
    within(
        "the forwarders",
        5,
        poll_until(|| relay.metrics.subscriptions.get() >= 2),
    )
    .await;
    for group in 0..2 {
        let mut subgroup = after.open_subgroup(group, 0, None, false).await.unwrap();
        for object in 0..2 {
            subgroup
                .write_payload(object, payload(group, object))
                .await
                .unwrap();
        }
        subgroup.finish();
    }
    after.finish(PublishDoneCode::TrackEnded, "pushed").await.unwrap();
    let groups = within("the published track", 10, reading).await.unwrap();
    assert_eq!(groups, vec![(0, vec![0, 1]), (1, vec![0, 1])]);
    drop(first);
}

fn push_msg(namespace: &str, track: &str) -> Publish {
    Publish {
        request_id: 0,
        track_namespace: TrackNamespace::from_path(namespace).unwrap(),
        track_name: TrackName::from(track),
        track_alias: 0,
        parameters: Parameters::default(),
        track_properties: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_session_pushing_a_track_takes_it_over_or_is_refused_without_takeover() {
    for takeover in [true, false] {
        let flag = format!("--publisher-takeover={takeover}");
        let relay = relay(&[&flag]).await;
        let client = relay.client();
        let first = relay.connect(&client, TransportKind::Quic).await;
        let mut writer = first.publish(push_msg("push/take", "video")).await.unwrap();
        within("PUBLISH_OK", 5, writer.next_request()).await.unwrap();
        let viewer = relay.connect(&client, TransportKind::WebTransport).await;
        let mut old = viewer
            .subscribe(subscribe_msg("push/take", "video"))
            .await
            .unwrap();

        // The first session stays open (a crashed encoder's would, until it times out).
        let second = relay.connect(&client, TransportKind::Quic).await;
        let mut writer2 = second.publish(push_msg("push/take", "video")).await.unwrap();
        let answer = within("the answer to the second PUBLISH", 5, writer2.next_request()).await;
        if !takeover {
            match answer {
                Ok(Some(Message::RequestError(e))) => {
                    assert_eq!(e.error_code, RequestErrorCode::Uninterested)
                }
                other => panic!("expected REQUEST_ERROR, got {other:?}"),
            }
            continue;
        }
        assert!(
            matches!(answer, Ok(Some(Message::RequestOk(_)))),
            "got {answer:?}"
        );
        // The old track's subscriber is told to go (and may subscribe again) ...
        let done = within("PUBLISH_DONE for the replaced track", 5, async {
            loop {
                match old.next().await {
                    Ok(Some(TrackEvent::Done(done))) => return Some(done.status_code),
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => return None,
                }
            }
        })
        .await;
        assert_eq!(done, Some(PublishDoneCode::GoingAway));
        // ... and subscribing again reaches the new session's track.
        let new = viewer
            .subscribe(subscribe_msg("push/take", "video"))
            .await
            .unwrap();
        let reading = tokio::spawn(drain(new));
        within(
            "the new forwarder",
            5,
            poll_until(|| relay.metrics.subscriptions.get() >= 1),
        )
        .await;
        let mut subgroup = writer2.open_subgroup(7, 0, None, false).await.unwrap();
        subgroup.write_payload(0, payload(7, 0)).await.unwrap();
        subgroup.finish();
        writer2.finish(PublishDoneCode::TrackEnded, "done").await.unwrap();
        let groups = within("the new track", 10, reading).await.unwrap();
        assert_eq!(groups, vec![(7, vec![0])]);
        drop(writer);
    }
}

/// Accept every PUBLISH (so the relay's forwarders run), returning the subscriptions.
async fn futures_accept(requests: Vec<PublishRequest>) -> Vec<Subscription> {
    let mut subscriptions = Vec::new();
    for request in requests {
        subscriptions.push(request.accept(RequestOk::default()).await.unwrap());
    }
    subscriptions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_fetch_right_behind_its_subscribe_gets_the_earlier_group() {
    let relay = relay(&[]).await;
    let client = relay.client();
    let publisher = relay.connect(&client, TransportKind::Quic).await;
    let pattern = Pattern {
        groups: 1_000,
        objects: 5,
        interval: Duration::from_millis(20),
    };
    let (_publication, serving) = publish(publisher, "live/join", pattern).await;
    // A first viewer brings the track into the relay's cache; wait for two groups.
    let viewer = relay.connect(&client, TransportKind::Quic).await;
    let mut warm = viewer
        .subscribe(subscribe_msg("live/join", "video"))
        .await
        .unwrap();
    let mut groups_seen = std::collections::BTreeSet::new();
    within("two groups", 10, async {
        while groups_seen.len() < 3 {
            if let Some(TrackEvent::Subgroup(subgroup)) = warm.next().await.unwrap() {
                groups_seen.insert(subgroup.group_id());
            }
        }
    })
    .await;

    // SUBSCRIBE and the joining FETCH sent back to back (as the interop runner's "join" case
    // does): the FETCH must not be refused because its SUBSCRIBE is not answered yet.
    for kind in [TransportKind::Quic, TransportKind::WebTransport] {
        let joiner = relay.connect(&client, kind).await;
        // Request IDs are handed out in steps of two as requests are first polled: the
        // SUBSCRIBE (polled first by `join!`) takes the one after `base`, the FETCH the next.
        let base = joiner.next_request_id();
        let joining_request_id = base + 2;
        let subscribe = joiner.subscribe(subscribe_msg("live/join", "video"));
        let fetch = joiner.fetch(Fetch {
            request_id: 0,
            fetch_type: FetchType::RelativeJoining(JoiningFetch {
                joining_request_id,
                joining_start: 1,
            }),
            parameters: Parameters::default(),
        });
        let (subscription, fetch) = within("SUBSCRIBE_OK and FETCH_OK", 10, async {
            tokio::join!(subscribe, fetch)
        })
        .await;
        let _subscription = subscription.unwrap();
        let mut fetch = fetch.unwrap_or_else(|e| panic!("{kind:?}: joining FETCH refused: {e}"));
        let mut objects = 0;
        while let Some(_item) = within("FETCH objects", 10, fetch.next()).await.unwrap() {
            objects += 1;
        }
        assert!(
            objects >= 5,
            "{kind:?}: a whole earlier group, got {objects} objects"
        );
        println!("{kind:?}: joining FETCH returned {objects} objects");
    }
    serving.abort();
}
