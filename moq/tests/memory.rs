//! Proves whole MoQT sessions run over `banyan_tests::mem`'s in-memory transport pair on tokio's
//! paused clock: handshake, SUBSCRIBE with ordered objects on subgroup streams, FETCH, datagrams
//! lost at the configured rate (counted), latency exactly as configured, and a closed transport
//! ending the session with the peer's code and reason.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use banyan_moq::coding::{Location, SessionErrorCode, TrackNamespace};
use banyan_moq::data::{FetchItem, FetchObject, ObjectDatagram};
use banyan_moq::message::{Fetch, FetchOk, FetchType, Parameters, StandaloneFetch, SubscribeOk};
use banyan_moq::session::transport::Connection;
use banyan_moq::session::{Error, Request, Session, SessionConfig, TrackEvent, TrackWriter};
use banyan_tests::mem::{self, Config, Link, SessionPair};
use bytes::Bytes;
use common::track::{payload, publish_groups, read_groups, subscribe};
use tokio::time::Instant;
use url::Url;

const LATENCY: Duration = Duration::from_millis(25);

fn url() -> Url {
    "moqt://mem.test/banyan?room=1".parse().unwrap()
}

/// Both sessions over a pair with `config`, drivers spawned.
async fn sessions(config: &Config) -> (Session, Session, SessionPair) {
    let pair = mem::session_pair(config, &url(), SessionConfig::default())
        .await
        .unwrap();
    let (client, server) = (pair.client.0.clone(), pair.server.0.clone());
    (client, server, pair)
}

fn spawn_drivers(pair: SessionPair) -> (SessionHandles, Transports) {
    let SessionPair {
        client: (_, client_driver),
        server: (_, server_driver),
        client_transport,
        server_transport,
    } = pair;
    (
        SessionHandles {
            client: tokio::spawn(client_driver.run()),
            server: tokio::spawn(server_driver.run()),
        },
        Transports {
            client: client_transport,
            server: server_transport,
        },
    )
}

struct SessionHandles {
    client: tokio::task::JoinHandle<Result<(), Error>>,
    server: tokio::task::JoinHandle<Result<(), Error>>,
}

struct Transports {
    client: std::sync::Arc<mem::Transport>,
    server: std::sync::Arc<mem::Transport>,
}

/// The server's side of one SUBSCRIBE: accept it and hand back the writer.
async fn accept_subscribe(server: &Session) -> TrackWriter {
    let Some(Request::Subscribe(request)) = server.accept().await else {
        panic!("expected SUBSCRIBE")
    };
    request.accept(SubscribeOk::default()).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn setup_subscribe_and_fetch_deliver_every_object_in_order() {
    let started = Instant::now();
    let (client, server, pair) = sessions(&Config::symmetric(LATENCY, 0.0)).await;
    // Client SETUP out, server SETUP back: one round trip.
    assert_eq!(started.elapsed(), 2 * LATENCY);
    assert_eq!(
        server.url(),
        Some(&"moqt://mem.test/banyan?room=1".parse().unwrap())
    );
    assert_eq!(server.remote_address(), Config::default().client_addr);
    assert_eq!(client.rtt(), 2 * LATENCY);
    let (_drivers, transports) = spawn_drivers(pair);

    const GROUPS: u64 = 3;
    const OBJECTS: u64 = 10;
    let publisher = tokio::spawn(async move {
        let writer = accept_subscribe(&server).await;
        publish_groups(writer, GROUPS, OBJECTS).await;

        let Some(Request::Fetch(request)) = server.accept().await else {
            panic!("expected FETCH")
        };
        let ok = FetchOk {
            end_location: Location::new(1, 0),
            ..Default::default()
        };
        let mut writer = request.accept(ok).await.unwrap();
        for object in 0..OBJECTS {
            let item = FetchItem::Object(FetchObject {
                group_id: 0,
                subgroup_id: Some(0),
                object_id: object,
                publisher_priority: 1,
                payload: payload(0, object),
                ..Default::default()
            });
            writer.write(&item).await.unwrap();
        }
        writer.finish();
        server
    });

    let subscription = client.subscribe(subscribe("live", "video")).await.unwrap();
    let (received, done) = read_groups(subscription).await;
    assert_eq!(
        received.keys().copied().collect::<Vec<_>>(),
        (0..GROUPS).collect::<Vec<_>>()
    );
    for (group, ids) in &received {
        assert_eq!(ids, &(0..OBJECTS).collect::<Vec<_>>(), "group {group} in order");
    }
    assert_eq!(done.stream_count, GROUPS);

    let fetch = Fetch {
        request_id: 0,
        fetch_type: FetchType::Standalone(StandaloneFetch {
            track_namespace: TrackNamespace::from_path("live").unwrap(),
            track_name: "video".into(),
            start_location: Location::new(0, 0),
            end_location: Location::new(1, 0),
        }),
        parameters: Parameters::default(),
    };
    let mut reader = client.fetch(fetch).await.unwrap();
    let mut ids = Vec::new();
    while let Some(item) = reader.next().await.unwrap() {
        let FetchItem::Object(object) = item else {
            panic!("only objects were written")
        };
        assert_eq!(object.payload, payload(0, object.object_id));
        ids.push(object.object_id);
    }
    assert_eq!(ids, (0..OBJECTS).collect::<Vec<_>>());
    publisher.await.unwrap();
    let sent = transports.server.stats();
    assert!(
        sent.streams_opened >= GROUPS + 2,
        "subgroups, fetch and control: {sent:?}"
    );
    assert_eq!(sent.stream_writes_retransmitted, 0);
    assert_eq!(transports.client.stats().datagrams_sent, 0);
}

#[tokio::test(start_paused = true)]
async fn datagrams_are_lost_at_the_configured_rate_and_counted() {
    const COUNT: u64 = 1000;
    let config = Config {
        to_client: Link {
            latency: LATENCY,
            loss: 0.2,
        },
        to_server: Link {
            latency: LATENCY,
            loss: 0.0,
        },
        seed: 7,
        ..Config::default()
    };
    let (client, server, pair) = sessions(&config).await;
    let (_drivers, transports) = spawn_drivers(pair);
    let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
    let publisher = tokio::spawn(async move {
        let writer = accept_subscribe(&server).await;
        // Datagrams for an alias the subscriber has not registered yet are dropped: start once
        // SUBSCRIBE_OK has arrived (it may itself be retransmitted). Then one per virtual
        // millisecond, never more than the subscription's queue holds.
        subscribed_rx.await.unwrap();
        for i in 0..COUNT {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let datagram = ObjectDatagram {
                group_id: i,
                object_id: 0,
                payload: Bytes::from(format!("datagram {i}")),
                ..Default::default()
            };
            writer.send_datagram(datagram).unwrap();
        }
        (server, writer)
    });
    let mut subscription = client.subscribe(subscribe("live", "likes")).await.unwrap();
    subscribed_tx.send(()).unwrap();
    let mut received = 0;
    // Until every datagram sent is either received or counted lost.
    while received + transports.server.stats().datagrams_lost < COUNT {
        match subscription.next().await.unwrap() {
            Some(TrackEvent::Datagram(d)) => {
                assert_eq!(d.payload, Bytes::from(format!("datagram {}", d.group_id)));
                received += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let _keep = publisher.await.unwrap();
    let sent = transports.server.stats();
    assert_eq!(sent.datagrams_sent, COUNT);
    assert_eq!(
        received + sent.datagrams_lost,
        COUNT,
        "every datagram is delivered or counted lost"
    );
    // 20% of 1000: the seeded draw lands well inside 15%..25%.
    assert!(
        (150..=250).contains(&sent.datagrams_lost),
        "lost {}",
        sent.datagrams_lost
    );
    // Stream writes the other way saw no loss; this way some were retransmitted (late, never lost).
    assert_eq!(transports.client.stats().stream_writes_retransmitted, 0);
}

#[tokio::test(start_paused = true)]
async fn objects_arrive_exactly_one_latency_after_they_are_sent() {
    let (client, server, pair) = sessions(&Config::symmetric(LATENCY, 0.0)).await;
    let (_drivers, _transports) = spawn_drivers(pair);
    let (sent_tx, sent_rx) = tokio::sync::oneshot::channel();
    let publisher = tokio::spawn(async move {
        let writer = accept_subscribe(&server).await;
        let mut subgroup = writer.open_subgroup(0, 0, None, false).await.unwrap();
        // A pause on the virtual clock separates the object from the stream's opening.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stream_sent = Instant::now();
        subgroup
            .write_payload(0, Bytes::from_static(b"frame"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let datagram_sent = Instant::now();
        writer
            .send_datagram(ObjectDatagram {
                group_id: 1,
                payload: Bytes::from_static(b"ping"),
                ..Default::default()
            })
            .unwrap();
        sent_tx.send((stream_sent, datagram_sent)).unwrap();
        subgroup.finish();
        (server, writer)
    });
    let mut subscription = client.subscribe(subscribe("live", "video")).await.unwrap();
    let Some(TrackEvent::Subgroup(mut subgroup)) = subscription.next().await.unwrap() else {
        panic!("a subgroup stream")
    };
    let object = subgroup.next().await.unwrap().expect("one object");
    let object_received = Instant::now();
    assert_eq!(object.payload, Bytes::from_static(b"frame"));
    let Some(TrackEvent::Datagram(datagram)) = subscription.next().await.unwrap() else {
        panic!("a datagram")
    };
    let datagram_received = Instant::now();
    assert_eq!(datagram.payload, Bytes::from_static(b"ping"));
    let (stream_sent, datagram_sent) = sent_rx.await.unwrap();
    assert_eq!(object_received - stream_sent, LATENCY);
    assert_eq!(datagram_received - datagram_sent, LATENCY);
    let _keep = publisher.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_closed_transport_ends_both_sessions_with_the_code_and_reason() {
    let (client, server, pair) = sessions(&Config::symmetric(LATENCY, 0.0)).await;
    let (drivers, transports) = spawn_drivers(pair);
    let closed_at = Instant::now();
    transports
        .client
        .close(SessionErrorCode::Unauthorized.code(), "token expired");
    let expected = |e: &Error| matches!(e, Error::Closed { code: SessionErrorCode::Unauthorized, reason } if reason == "token expired");
    let server_error = drivers
        .server
        .await
        .unwrap()
        .expect_err("the server's driver ends with the close");
    assert!(expected(&server_error), "{server_error:?}");
    assert_eq!(
        closed_at.elapsed(),
        LATENCY,
        "the close takes one latency to arrive"
    );
    assert!(expected(&server.closed().await));
    assert!(server.is_closed());
    // The closing side ended cleanly and knows it closed the session itself.
    assert!(drivers.client.await.unwrap().is_ok());
    assert!(matches!(client.closed().await, Error::ClosedLocally { .. }));
    assert!(matches!(
        client.subscribe(subscribe("live", "video")).await,
        Err(Error::ClosedLocally { .. })
    ));
}
