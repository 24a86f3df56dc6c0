//! Proves the session layer over real QUIC, WebTransport and WebSocket on loopback: setup, namespaces,
//! subscriptions with objects on subgroup streams (in order, byte-identical), datagrams,
//! fetch, track status, PUBLISH, GOAWAY, and refused requests, on every transport (raw QUIC,
//! WebTransport, QMux over WebSocket).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use banyan_moq::coding::{Location, PublishDoneCode, RequestErrorCode, TrackName};
use banyan_moq::data::{EndOfRange, FetchItem, FetchObject, ObjectDatagram, RangeKind};
use banyan_moq::message::{
    Fetch, FetchOk, FetchType, Message, Parameters, Publish, PublishNamespace, RequestOk, StandaloneFetch,
    SubscribeNamespace, SubscribeOk, TrackStatus,
};
use banyan_moq::session::{Error, NamespaceEvent, Request, TrackEvent, TransportKind};
use bytes::Bytes;
use common::track::{ns, payload, publish_groups, read_groups, subscribe};
use common::{start, within};

macro_rules! every_transport {
    ($($name:ident),* $(,)?) => {
        mod quic {
            $(#[tokio::test] async fn $name() { super::$name(banyan_moq::session::TransportKind::Quic).await })*
        }
        mod webtransport {
            $(#[tokio::test] async fn $name() { super::$name(banyan_moq::session::TransportKind::WebTransport).await })*
        }
        mod websocket {
            $(#[tokio::test] async fn $name() { super::$name(banyan_moq::session::TransportKind::WebSocket).await })*
        }
    };
}

every_transport!(
    setup_exposes_transport_and_url,
    publish_namespace_then_withdraw,
    subscribe_receives_every_object_in_order,
    datagrams_reach_the_subscriber,
    fetch_returns_the_requested_range,
    refused_subscribe_reports_the_code,
    track_status_round_trip,
    subscribe_namespace_sees_publish_and_done,
    publish_pushes_a_track,
    goaway_reaches_the_client_and_blocks_new_requests,
    unsubscribe_is_seen_by_the_publisher,
);

async fn setup_exposes_transport_and_url(kind: TransportKind) {
    let mut h = start().await;
    let (client, server) = h.pair(kind).await;
    assert_eq!(client.transport(), kind);
    assert_eq!(server.transport(), kind);
    let url = server.url().expect("server knows the URL");
    assert_eq!(url.path(), "/banyan");
    assert_eq!(url.query(), Some("room=1"));
    let implementation = server
        .peer_setup()
        .moqt_implementation
        .clone()
        .expect("client sent implementation");
    assert!(implementation.starts_with(b"banyan-moq/"));
}

async fn publish_namespace_then_withdraw(kind: TransportKind) {
    let mut h = start().await;
    let (client, server) = h.pair(kind).await;
    let publish = PublishNamespace {
        request_id: 0,
        track_namespace: ns("live/show"),
        parameters: Parameters::default(),
    };
    let client_side = tokio::spawn(async move { client.publish_namespace(publish).await });
    let Some(Request::PublishNamespace(request)) = within("request", server.accept()).await else {
        panic!("expected PUBLISH_NAMESPACE")
    };
    assert_eq!(request.message.track_namespace, ns("live/show"));
    let mut accepted = request.accept().await.unwrap();
    let publication = within("ok", client_side).await.unwrap().unwrap();
    assert_eq!(publication.namespace(), &ns("live/show"));
    publication.withdraw();
    within("withdrawn", accepted.withdrawn()).await.unwrap();
}

async fn subscribe_receives_every_object_in_order(kind: TransportKind) {
    let mut h = start().await;
    let (client, server) = h.pair(kind).await;
    const GROUPS: u64 = 4;
    const OBJECTS: u64 = 12;

    let publisher = tokio::spawn(async move {
        let Some(Request::Subscribe(request)) = server.accept().await else {
            panic!("expected SUBSCRIBE")
        };
        assert_eq!(request.message.track_name, TrackName::from("video"));
        let writer = request.accept(SubscribeOk::default()).await.unwrap();
        publish_groups(writer, GROUPS, OBJECTS).await;
        server
    });

    let subscription = within("subscribe", client.subscribe(subscribe("live", "video")))
        .await
        .unwrap();
    let (received, done) = read_groups(subscription).await;
    assert_eq!(done.status_code, PublishDoneCode::TrackEnded);
    assert_eq!(done.stream_count, GROUPS);
    assert_eq!(received.len() as u64, GROUPS);
    for ids in received.values() {
        assert_eq!(
            ids,
            &(0..OBJECTS).collect::<Vec<_>>(),
            "objects in order within the subgroup"
        );
    }
    within("publisher", publisher).await.unwrap();
}

async fn datagrams_reach_the_subscriber(kind: TransportKind) {
    let mut h = start().await;
    let (client, server) = h.pair(kind).await;
    const COUNT: u64 = 20;
    let publisher = tokio::spawn(async move {
        let Some(Request::Subscribe(request)) = server.accept().await else {
            panic!("expected SUBSCRIBE")
        };
        let writer = request.accept(SubscribeOk::default()).await.unwrap();
        // Give the subscriber time to register the alias before datagrams (which are not
        // queued for unknown aliases) arrive.
        tokio::time::sleep(Duration::from_millis(100)).await;
        for i in 0..COUNT {
            let datagram = ObjectDatagram {
                group_id: i / 5,
                object_id: i % 5,
                payload: Bytes::from(format!("datagram {i}")),
                ..Default::default()
            };
            writer.send_datagram(datagram).unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        (server, writer)
    });
    let mut subscription = within("subscribe", client.subscribe(subscribe("live", "likes")))
        .await
        .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < COUNT as usize {
        match within("datagram", subscription.next()).await.unwrap() {
            Some(TrackEvent::Datagram(d)) => {
                let i = d.group_id * 5 + d.object_id;
                assert_eq!(d.payload, Bytes::from(format!("datagram {i}")));
                assert_eq!(d.track_alias, subscription.track_alias());
                seen.insert(i);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen.len() as u64, COUNT);
    drop(publisher);
}

async fn fetch_returns_the_requested_range(kind: TransportKind) {
    let mut h = start().await;
    let (client, server) = h.pair(kind).await;
    let publisher = tokio::spawn(async move {
        let Some(Request::Fetch(request)) = server.accept().await else {
            panic!("expected FETCH")
        };
        let FetchType::Standalone(range) = &request.message.fetch_type else {
            panic!("standalone")
        };
        let (start, end) = (range.start_location, range.end_location);
        let ok = FetchOk {
            end_of_track: false,
            end_location: end,
            ..Default::default()
        };
        let mut writer = request.accept(ok).await.unwrap();
        for group in start.group..end.group {
            for object in 0..3 {
                let item = FetchItem::Object(FetchObject {
                    group_id: group,
                    subgroup_id: Some(0),
                    object_id: object,
                    publisher_priority: 7,
                    payload: payload(group, object),
                    ..Default::default()
                });
                writer.write(&item).await.unwrap();
            }
        }
        let end_marker = EndOfRange {
            kind: RangeKind::NonExistent,
            group_id: end.group,
            object_id: 0,
        };
        writer.write(&FetchItem::EndOfRange(end_marker)).await.unwrap();
        writer.finish();
        server
    });
    let fetch = Fetch {
        request_id: 0,
        fetch_type: FetchType::Standalone(StandaloneFetch {
            track_namespace: ns("live"),
            track_name: TrackName::from("video"),
            start_location: Location::new(2, 0),
            end_location: Location::new(5, 0),
        }),
        parameters: Parameters::default(),
    };
    let mut reader = within("fetch", client.fetch(fetch)).await.unwrap();
    let mut objects = Vec::new();
    let mut end = None;
    while let Some(item) = within("fetch item", reader.next()).await.unwrap() {
        match item {
            FetchItem::Object(o) => {
                assert_eq!(o.payload, payload(o.group_id, o.object_id));
                objects.push((o.group_id, o.object_id));
            }
            FetchItem::EndOfRange(e) => end = Some(e),
        }
    }
    let expected: Vec<_> = (2..5).flat_map(|g| (0..3).map(move |o| (g, o))).collect();
    assert_eq!(objects, expected);
    assert_eq!(end.map(|e| e.group_id), Some(5));
    within("publisher", publisher).await.unwrap();
}

async fn refused_subscribe_reports_the_code(kind: TransportKind) {
    let mut h = start().await;
    let (client, server) = h.pair(kind).await;
    let _server = tokio::spawn(async move {
        let request = server.accept().await.expect("a request");
        request
            .reject(RequestErrorCode::DoesNotExist, "no such track")
            .await
            .unwrap();
        server
    });
    let error = within("subscribe", client.subscribe(subscribe("nope", "video")))
        .await
        .unwrap_err();
    match error {
        Error::Refused { code, reason, .. } => {
            assert_eq!(code, RequestErrorCode::DoesNotExist);
            assert_eq!(reason, "no such track");
        }
        other => panic!("expected Refused, got {other:?}"),
    }
}

async fn track_status_round_trip(kind: TransportKind) {
    let mut h = start().await;
    let (client, server) = h.pair(kind).await;
    tokio::spawn(async move {
        let Some(Request::TrackStatus(request)) = server.accept().await else {
            panic!("expected TRACK_STATUS")
        };
        assert_eq!(request.message.track_name, TrackName::from("video"));
        let mut ok = RequestOk::default();
        ok.parameters.largest_object = Some(Location::new(41, 7));
        request.respond(ok).await.unwrap();
        server
    });
    let status = TrackStatus {
        request_id: 0,
        track_namespace: ns("live"),
        track_name: TrackName::from("video"),
        parameters: Parameters::default(),
    };
    let ok = within("status", client.track_status(status)).await.unwrap();
    assert_eq!(ok.parameters.largest_object, Some(Location::new(41, 7)));
}

async fn subscribe_namespace_sees_publish_and_done(kind: TransportKind) {
    let mut h = start().await;
    let (client, server) = h.pair(kind).await;
    let publisher = tokio::spawn(async move {
        let Some(Request::SubscribeNamespace(request)) = server.accept().await else {
            panic!("expected SUBSCRIBE_NAMESPACE")
        };
        let mut announcer = request.accept().await.unwrap();
        announcer.announce(&ns("live/a")).await.unwrap();
        announcer.announce(&ns("live/b/c")).await.unwrap();
        announcer.done(&ns("live/a")).await.unwrap();
        assert!(
            announcer.announce(&ns("other")).await.is_err(),
            "outside the prefix"
        );
        (server, announcer)
    });
    let request = SubscribeNamespace {
        request_id: 0,
        track_namespace_prefix: ns("live"),
        parameters: Parameters::default(),
    };
    let mut subscription = within("subscribe namespace", client.subscribe_namespace(request))
        .await
        .unwrap();
    let mut events = Vec::new();
    for _ in 0..3 {
        events.push(within("event", subscription.next()).await.unwrap().unwrap());
    }
    assert_eq!(
        events,
        vec![
            NamespaceEvent::Published(ns("live/a")),
            NamespaceEvent::Published(ns("live/b/c")),
            NamespaceEvent::Done(ns("live/a")),
        ]
    );
    drop(publisher);
}

async fn publish_pushes_a_track(kind: TransportKind) {
    let mut h = start().await;
    let (client, server) = h.pair(kind).await;
    let receiver = tokio::spawn(async move {
        let Some(Request::Publish(request)) = server.accept().await else {
            panic!("expected PUBLISH")
        };
        assert_eq!(request.message.track_name, TrackName::from("chat"));
        let mut subscription = request.accept(RequestOk::default()).await.unwrap();
        let mut messages = Vec::new();
        while let Some(event) = subscription.next().await.unwrap() {
            if let TrackEvent::Subgroup(mut subgroup) = event {
                while let Some(object) = subgroup.next().await.unwrap() {
                    messages.push(object.payload);
                }
            }
        }
        messages
    });
    let publish = Publish {
        request_id: 0,
        track_namespace: ns("live"),
        track_name: TrackName::from("chat"),
        track_alias: 0,
        parameters: Parameters::default(),
        track_properties: Default::default(),
    };
    let mut writer = within("publish", client.publish(publish)).await.unwrap();
    let reply = within("publish ok", writer.next_request()).await.unwrap();
    assert!(
        matches!(reply, Some(Message::RequestOk(_)) | Some(Message::PublishOk(_))),
        "got {reply:?}"
    );
    let mut subgroup = writer.open_subgroup(0, 0, None, false).await.unwrap();
    for i in 0..5u64 {
        subgroup
            .write_payload(i, Bytes::from(format!("hello {i}")))
            .await
            .unwrap();
    }
    subgroup.finish();
    writer.finish(PublishDoneCode::TrackEnded, "bye").await.unwrap();
    let messages = within("receiver", receiver).await.unwrap();
    assert_eq!(
        messages,
        (0..5)
            .map(|i| Bytes::from(format!("hello {i}")))
            .collect::<Vec<_>>()
    );
}

async fn goaway_reaches_the_client_and_blocks_new_requests(kind: TransportKind) {
    let mut h = start().await;
    let (client, server) = h.pair(kind).await;
    server
        .goaway("moqt://elsewhere:4443/", Duration::from_secs(3))
        .await
        .unwrap();
    let goaway = within("goaway", client.goaway_received()).await;
    assert_eq!(goaway.new_session_uri, "moqt://elsewhere:4443/");
    assert_eq!(goaway.timeout, 3000);
    let error = client.subscribe(subscribe("live", "video")).await.unwrap_err();
    assert!(matches!(error, Error::GoingAway), "got {error:?}");
}

async fn unsubscribe_is_seen_by_the_publisher(kind: TransportKind) {
    let mut h = start().await;
    let (client, server) = h.pair(kind).await;
    let publisher = tokio::spawn(async move {
        let Some(Request::Subscribe(request)) = server.accept().await else {
            panic!("expected SUBSCRIBE")
        };
        let mut writer = request.accept(SubscribeOk::default()).await.unwrap();
        // Nothing but cancellation can end this loop.
        while writer.next_request().await.unwrap().is_some() {}
        writer
            .finish(PublishDoneCode::SubscriptionEnded, "unsubscribed")
            .await
            .ok();
        server
    });
    let subscription = within("subscribe", client.subscribe(subscribe("live", "video")))
        .await
        .unwrap();
    drop(subscription);
    within("publisher sees cancel", publisher).await.unwrap();
}

/// The names of this process's threads.
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_string())
        .collect()
}

/// A server's UDP socket is read on a thread of its own (so a saturated runtime cannot starve
/// its receiving), objects flow through it, and the thread ends with the server's runtime
/// even while sessions are still open and a peer keeps sending to it, instead of outliving it.
#[test]
fn a_server_reads_its_socket_on_its_own_thread_which_ends_with_its_runtime() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (thread, port, open) = runtime.block_on(async {
        let mut h = start().await;
        let port = h.url(TransportKind::Quic).port().unwrap();
        let thread = format!("moq-udp-{port}");
        assert!(
            thread_names().contains(&thread),
            "{thread} among {:?}",
            thread_names()
        );
        let (client, server) = h.pair(TransportKind::Quic).await;
        let publisher = tokio::spawn(async move {
            let Some(Request::Subscribe(request)) = server.accept().await else {
                panic!("expected SUBSCRIBE")
            };
            publish_groups(request.accept(SubscribeOk::default()).await.unwrap(), 3, 5).await;
            server
        });
        let subscription = within("subscribe", client.subscribe(subscribe("live", "video")))
            .await
            .unwrap();
        let (received, _) = read_groups(subscription).await;
        assert_eq!(received.len(), 3, "every group through the server's UDP thread");
        let server = within("publisher", publisher).await.unwrap();
        (thread, port, (client, server))
    });
    // The sessions stay open: their connection drivers die with the runtime, so the endpoint
    // never hears that they ended. And datagrams keep coming, from before the runtime goes
    // and faster than the thread's pause, so it never finds its socket empty to wait on.
    let flooding = Arc::new(AtomicBool::new(true));
    let flood = {
        let flooding = flooding.clone();
        std::thread::spawn(move || {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            while flooding.load(Ordering::Relaxed) {
                // Too short to be answered (no stateless reset): read and dropped.
                let _ = socket.send_to(&[0x40; 8], ("127.0.0.1", port));
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    drop(runtime);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while thread_names().contains(&thread) {
        assert!(
            std::time::Instant::now() < deadline,
            "{thread} still running 10 s after its runtime shut down"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    flooding.store(false, Ordering::Relaxed);
    flood.join().unwrap();
    drop(open);
}
