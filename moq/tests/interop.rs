//! Proves banyan-moq interoperates with an independent draft-18 implementation, moq-transport
//! 0.17 (cloudflare/moq-rs), over real QUIC and WebTransport on loopback, in both directions:
//! moq-transport's client against our server, and our client against moq-transport's server.
//! Setup, namespaces (publish, accept, withdraw), refused subscriptions, SUBSCRIBE and PUBLISH
//! with byte-identical objects on subgroup streams both ways, and datagrams both ways.
//! Known incompatibilities are listed in moq/README.md ("Interoperability").

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use banyan_moq::coding::{PublishDoneCode, RequestErrorCode, TrackName};
use banyan_moq::data::ObjectDatagram;
use banyan_moq::message::{Parameters, PublishNamespace, RequestOk, SubscribeOk};
use banyan_moq::session::{
    Client, ClientOptions, Error, NamespacePublication, Request, Session, Subscription, TrackEvent,
    TrackWriter, TransportConfig, TransportKind,
};
use banyan_tests::moq_rs::{self, Peer};
use bytes::Bytes;
use common::track::{ns, subscribe};
use common::{transport, within};
use moq_transport::coding::{KeyValuePairs, TrackNamespace as TheirNamespace};
use moq_transport::data::ObjectStatus;
use moq_transport::serve::{self, ServeError, Track, TrackReaderMode, Tracks};
use moq_transport::session::{Publisher, SessionError};

/// No case may take longer than this, whatever hangs.
const CASE_TIMEOUT: Duration = Duration::from_secs(30);

/// Objects per direction on subgroup streams: groups × subgroups × objects.
const GROUPS: u64 = 2;
const SUBGROUPS: u64 = 2;
const OBJECTS: u64 = 3;

/// Datagrams per direction.
const DATAGRAMS: u64 = 5;

/// moq-transport's datagram plumbing (`serve::DatagramsReader`, on the publishing and the
/// subscribing side) keeps only the latest datagram, so a burst collapses to its last one.
/// Writes are paced so that most survive; the assertions still only require the last.
const DATAGRAM_PACING: Duration = Duration::from_millis(40);

/// Run each case over raw QUIC and WebTransport, on a multi-threaded runtime (moq-transport
/// expects one), under [`CASE_TIMEOUT`].
macro_rules! both_transports {
    ($($name:ident),* $(,)?) => {
        mod quic {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                crate::bounded(super::$name(banyan_moq::session::TransportKind::Quic)).await
            })*
        }
        mod webtransport {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                crate::bounded(super::$name(banyan_moq::session::TransportKind::WebTransport)).await
            })*
        }
    };
}

async fn bounded(case: impl Future<Output = ()>) {
    tokio::time::timeout(CASE_TIMEOUT, case)
        .await
        .expect("case timed out");
}

/// moq-transport's client against our server (`Server` + `PendingSession::accept`).
mod their_client {
    use super::*;

    both_transports!(
        setup_only,
        announce_only,
        publish_namespace_done,
        subscribe_error,
        announce_subscribe,
        subscribe_before_announce,
        publish_track_only,
        publish_track_subscribe,
        they_subscribe_we_publish,
        datagrams_to_us,
        datagrams_to_them,
        they_unsubscribe,
        we_unsubscribe,
        we_withdraw,
    );

    /// Cases that only work over WebTransport because moq-transport requires
    /// WebTransport-mapped stream error codes even on raw QUIC; see moq/README.md,
    /// "Interoperability".
    mod webtransport_only {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn we_abandon() {
            crate::bounded(super::we_abandon(
                banyan_moq::session::TransportKind::WebTransport,
            ))
            .await
        }
    }

    /// Our server with moq-transport's client connected: (harness, their side, our side).
    async fn connect(kind: TransportKind) -> (common::Harness, Peer, Session) {
        let mut h = common::start().await;
        let theirs = within(
            "moq-transport connects",
            moq_rs::connect(h.addr, h.identity_hash, transport(kind)),
        )
        .await;
        let ours = within("our server session", h.sessions.recv())
            .await
            .expect("server running");
        (h, theirs, ours)
    }

    async fn setup_only(kind: TransportKind) {
        let (h, theirs, ours) = connect(kind).await;
        assert_eq!(ours.transport(), kind);
        let url = ours.url().expect("the URL the client asked for");
        assert_eq!(url.path(), moq_rs::PATH);
        match kind {
            // Over raw QUIC the client sends AUTHORITY and PATH in SETUP.
            TransportKind::Quic => {
                assert_eq!(ours.peer_setup().path.as_deref(), Some(moq_rs::PATH));
                let authority = format!("localhost:{}", h.addr.port());
                assert_eq!(ours.peer_setup().authority.as_deref(), Some(authority.as_str()));
            }
            // Over WebTransport it must not; the path is the CONNECT's.
            TransportKind::WebTransport | TransportKind::WebSocket => {
                assert_eq!(ours.peer_setup().path, None);
                assert_eq!(ours.peer_setup().authority, None);
            }
        }
        // Neither side objects to the other's SETUP after the fact (our SETUP carries a
        // MOQT_IMPLEMENTATION option moq-transport does not use).
        assert!(
            tokio::time::timeout(Duration::from_millis(200), ours.closed())
                .await
                .is_err(),
            "the session stays up"
        );
        assert!(theirs.is_running());
    }

    async fn announce_only(kind: TransportKind) {
        let (_h, mut theirs, ours) = connect(kind).await;
        let (announce, _publication) = they_announce(&mut theirs, &ours, "interop/announce").await;
        within("REQUEST_OK at moq-transport", announce.ok())
            .await
            .unwrap();
        assert!(theirs.is_running());
    }

    async fn publish_namespace_done(kind: TransportKind) {
        let (_h, mut theirs, ours) = connect(kind).await;
        let (announce, mut publication) = they_announce(&mut theirs, &ours, "interop/done").await;
        within("REQUEST_OK at moq-transport", announce.ok())
            .await
            .unwrap();
        // moq-transport withdraws by cancelling the request stream (RESET_STREAM and
        // STOP_SENDING, CANCELLED; on raw QUIC it sends the code WebTransport-mapped).
        drop(announce);
        within("withdrawal seen by us", publication.withdrawn())
            .await
            .unwrap();
        // The session is intact: the namespace can be published again.
        let (again, _publication) = they_announce(&mut theirs, &ours, "interop/done").await;
        within("REQUEST_OK for the re-announce", again.ok())
            .await
            .unwrap();
        assert!(theirs.is_running());
    }

    async fn subscribe_error(kind: TransportKind) {
        let (_h, theirs, ours) = connect(kind).await;
        they_are_refused(&theirs, &ours).await;
    }

    async fn announce_subscribe(kind: TransportKind) {
        let (_h, mut theirs, ours) = connect(kind).await;
        they_announce_we_subscribe(&mut theirs, &ours, "interop/as", Payload::Subgroups).await;
    }

    /// As the interop runner defines it: the subscriber subscribes before the namespace is
    /// announced. A direct peer (no relay) hands such a SUBSCRIBE to its application, which
    /// may hold it until it has announced. We assert that our SUBSCRIBE waits (it is neither
    /// refused nor answered while moq-transport's application holds it), that the later
    /// PUBLISH_NAMESPACE for the same namespace is accepted, that SUBSCRIBE_OK then arrives,
    /// and that objects flow.
    async fn subscribe_before_announce(kind: TransportKind) {
        let (_h, mut theirs, ours) = connect(kind).await;
        let namespace = "interop/sba";
        let (mut tracks, _, catalog) = Tracks::new(their_ns(namespace)).produce();
        let track = tracks.create("video").expect("track");

        let subscriber = ours.clone();
        let subscribing =
            tokio::spawn(async move { subscriber.subscribe(subscribe(namespace, "video")).await });
        // moq-transport queues a SUBSCRIBE outside any announced namespace for its
        // application.
        let held = within("SUBSCRIBE at moq-transport", theirs.publisher.subscribed())
            .await
            .expect("moq-transport session running");
        assert_eq!(held.info.track_namespace, their_ns(namespace));
        assert_eq!(held.info.track_name.to_string_lossy(), "video");

        // Announce while the SUBSCRIBE is held.
        let (announce, _publication) = they_announce(&mut theirs, &ours, namespace).await;
        within("REQUEST_OK at moq-transport", announce.ok())
            .await
            .unwrap();
        assert!(
            !subscribing.is_finished(),
            "the SUBSCRIBE waits for the publisher's answer"
        );

        let serving = tokio::spawn(Publisher::serve_subscribe(held, catalog));
        let mut subscription = within("SUBSCRIBE_OK", subscribing).await.unwrap().unwrap();
        let _writer = they_write_subgroups(track);
        let received = we_read_subgroups(&mut subscription).await;
        assert_eq!(received, expected_objects());
        assert!(!serving.is_finished() || serving.await.unwrap().is_ok());
    }

    async fn publish_track_only(kind: TransportKind) {
        let (_h, mut theirs, ours) = connect(kind).await;
        let (_writer, reader) = Track::new(their_ns("interop/pub"), "solo").produce();
        let mut published = theirs
            .publisher
            .publish(reader, KeyValuePairs::default())
            .await
            .expect("PUBLISH sent");
        let request = we_get_publish(&ours, "interop/pub", "solo").await;
        assert_eq!(request.message.track_alias, published.info.track_alias);
        let _subscription = request.accept(publish_ok()).await.expect("PUBLISH_OK sent");
        within("PUBLISH_OK at moq-transport", published.ok())
            .await
            .unwrap();
        assert!(theirs.is_running());
    }

    async fn publish_track_subscribe(kind: TransportKind) {
        let (_h, mut theirs, ours) = connect(kind).await;
        let (writer, reader) = Track::new(their_ns("interop/pubsub"), "video").produce();
        let published = theirs
            .publisher
            .publish(reader, KeyValuePairs::default())
            .await
            .expect("PUBLISH sent");
        // serve(): waits for PUBLISH_OK, forwards the objects, then sends PUBLISH_DONE.
        let serving = tokio::spawn(published.serve());
        let request = we_get_publish(&ours, "interop/pubsub", "video").await;
        let mut subscription = request.accept(publish_ok()).await.expect("PUBLISH_OK sent");
        let writer = they_write_subgroups(writer);
        let received = we_read_subgroups(&mut subscription).await;
        assert_eq!(received, expected_objects());

        // Ending the track makes moq-transport send PUBLISH_DONE.
        drop(writer);
        match within("PUBLISH_DONE", subscription.next()).await.unwrap() {
            Some(TrackEvent::Done(done)) => assert_eq!(done.status_code, PublishDoneCode::TrackEnded),
            other => panic!("expected PUBLISH_DONE, got {other:?}"),
        }
        within("serve() ends", serving).await.unwrap().unwrap();
    }

    async fn they_subscribe_we_publish(kind: TransportKind) {
        let (_h, mut theirs, ours) = connect(kind).await;
        they_subscribe_we_answer(&mut theirs, &ours, "interop/to-them", Payload::Subgroups).await;
    }

    async fn datagrams_to_us(kind: TransportKind) {
        let (_h, mut theirs, ours) = connect(kind).await;
        they_announce_we_subscribe(&mut theirs, &ours, "interop/dg", Payload::Datagrams).await;
    }

    async fn datagrams_to_them(kind: TransportKind) {
        let (_h, mut theirs, ours) = connect(kind).await;
        they_subscribe_we_answer(&mut theirs, &ours, "interop/dg-them", Payload::Datagrams).await;
    }

    /// moq-transport ends a subscription with the pre-draft-18 UNSUBSCRIBE message on the
    /// request stream; our publisher reads it as a cancellation and finishes.
    async fn they_unsubscribe(kind: TransportKind) {
        let (_h, theirs, ours) = connect(kind).await;
        let (writer, _reader) = Track::new(their_ns("interop/unsub"), "video").produce();
        let mut subscriber = theirs.subscriber.clone();
        let subscribing = tokio::spawn(async move { subscriber.subscribe_open(writer).await });
        let Some(Request::Subscribe(request)) = within("SUBSCRIBE at us", ours.accept()).await else {
            panic!("expected SUBSCRIBE")
        };
        let mut writer = request
            .accept(SubscribeOk::default())
            .await
            .expect("SUBSCRIBE_OK sent");
        let subscription = within("SUBSCRIBE_OK", subscribing).await.unwrap().unwrap();
        let unsubscribing = tokio::spawn(subscription.unsubscribe());
        assert_eq!(
            within("cancellation at us", writer.next_request()).await.unwrap(),
            None
        );
        writer
            .finish(PublishDoneCode::SubscriptionEnded, "unsubscribed")
            .await
            .unwrap();
        within("moq-transport's unsubscribe completes", unsubscribing)
            .await
            .unwrap();
        assert!(theirs.is_running());
    }

    /// We cancel a subscription (STOP_SENDING, CANCELLED, on the request stream).
    async fn we_unsubscribe(kind: TransportKind) {
        let (_h, mut theirs, ours) = connect(kind).await;
        we_unsubscribe_from(&mut theirs, &ours, "interop/we-unsub").await;
    }

    /// We abandon a subscription we accepted (drop the `TrackWriter` unfinished: RESET_STREAM
    /// CANCELLED on the request stream). moq-transport must end that subscription only.
    /// Over raw QUIC it instead ends the whole session (`InvalidReset(1)`): it only accepts
    /// stream codes in WebTransport's mapped range, which raw QUIC does not use.
    async fn we_abandon(kind: TransportKind) {
        let (_h, theirs, ours) = connect(kind).await;
        let (writer, _reader) = Track::new(their_ns("interop/abandon"), "video").produce();
        let mut subscriber = theirs.subscriber.clone();
        let subscribing = tokio::spawn(async move { subscriber.subscribe_open(writer).await });
        let Some(Request::Subscribe(request)) = within("SUBSCRIBE at us", ours.accept()).await else {
            panic!("expected SUBSCRIBE")
        };
        let writer = request
            .accept(SubscribeOk::default())
            .await
            .expect("SUBSCRIBE_OK sent");
        let subscription = within("SUBSCRIBE_OK", subscribing).await.unwrap().unwrap();
        drop(writer);
        let closed = within("moq-transport sees the reset", subscription.closed()).await;
        assert!(closed.is_err(), "the subscription ends abnormally: {closed:?}");
        // The session survives: a new request still works.
        they_are_refused(&theirs, &ours).await;
    }

    /// We withdraw a namespace moq-transport accepted (cancel the request stream).
    async fn we_withdraw(kind: TransportKind) {
        let (_h, mut theirs, ours) = connect(kind).await;
        let (publication, inbound) = we_announce(&ours, &mut theirs, "interop/withdrawn").await;
        publication.withdraw();
        within("withdrawal at moq-transport", inbound.closed())
            .await
            .unwrap();
        // The session survives and the namespace can be published again.
        let _again = we_announce(&ours, &mut theirs, "interop/withdrawn").await;
        assert!(theirs.is_running());
    }
}

/// Our client (`Client::connect`) against moq-transport's server.
mod their_server {
    use super::*;

    both_transports!(
        setup_only,
        announce,
        subscribe_error,
        objects_to_us,
        objects_to_them,
        datagrams_to_us,
        datagrams_to_them,
    );

    /// moq-transport's server with our client connected: (server, our client endpoint, their
    /// side, our side).
    async fn connect(kind: TransportKind) -> (moq_rs::Server, Client, Peer, Session) {
        common::init_tracing();
        let server = moq_rs::Server::start();
        let tls = banyan_certs::client_config(
            &banyan_certs::ServerVerification::PinnedSha256(vec![server.hash]),
            &[],
        )
        .expect("client tls");
        let client = Client::new(tls, &TransportConfig::default(), common::test_config()).expect("client");
        let url = server.url(transport(kind));
        let (ours, theirs) = within("connect", async {
            tokio::join!(
                client.connect(&url, ClientOptions::default()),
                server.accept(transport(kind))
            )
        })
        .await;
        let (ours, driver) = ours.expect("our client completes SETUP with moq-transport");
        common::spawn_driver(driver);
        (server, client, theirs, ours)
    }

    async fn setup_only(kind: TransportKind) {
        let (server, _client, theirs, ours) = connect(kind).await;
        assert_eq!(ours.transport(), kind);
        // moq-transport's server sends an empty SETUP.
        assert_eq!(ours.peer_setup().path, None);
        assert_eq!(theirs.connection_path.as_deref(), Some(moq_rs::PATH));
        let option = |key: u64| match theirs.setup_params.get(key).map(|kv| &kv.value) {
            Some(moq_transport::coding::Value::BytesValue(b)) => {
                Some(String::from_utf8_lossy(b).into_owned())
            }
            _ => None,
        };
        match kind {
            TransportKind::Quic => {
                assert_eq!(option(0x1).as_deref(), Some(moq_rs::PATH), "PATH");
                assert_eq!(
                    option(0x5),
                    Some(format!("127.0.0.1:{}", server.addr.port())),
                    "AUTHORITY"
                );
            }
            TransportKind::WebTransport | TransportKind::WebSocket => {
                assert_eq!(option(0x1), None, "no PATH over WebTransport");
                assert_eq!(option(0x5), None, "no AUTHORITY over WebTransport");
            }
        }
        // Our MOQT_IMPLEMENTATION option (0x7) reaches it intact.
        let implementation = option(0x7).expect("MOQT_IMPLEMENTATION");
        assert!(implementation.starts_with("banyan-moq/"), "{implementation}");
        assert!(
            tokio::time::timeout(Duration::from_millis(200), ours.closed())
                .await
                .is_err(),
            "the session stays up"
        );
        assert!(theirs.is_running());
    }

    async fn announce(kind: TransportKind) {
        let (_server, _client, mut theirs, ours) = connect(kind).await;
        let _announced = we_announce(&ours, &mut theirs, "interop/ours").await;
        assert!(theirs.is_running());
    }

    async fn subscribe_error(kind: TransportKind) {
        let (_server, _client, theirs, ours) = connect(kind).await;
        // moq-transport answers a SUBSCRIBE outside its announced namespaces from whatever
        // its application serves: here an empty catalog, so REQUEST_ERROR DOES_NOT_EXIST.
        let (_tracks, _, catalog) = Tracks::new(their_ns("interop/empty")).produce();
        let mut publisher = theirs.publisher.clone();
        let _responder = tokio::spawn(async move {
            while let Some(subscribed) = publisher.subscribed().await {
                let _ = Publisher::serve_subscribe(subscribed, catalog.clone()).await;
            }
        });
        match within(
            "REQUEST_ERROR",
            ours.subscribe(subscribe("interop/empty", "missing")),
        )
        .await
        {
            Err(Error::Refused { code, .. }) => assert_eq!(code, RequestErrorCode::DoesNotExist),
            other => panic!("expected REQUEST_ERROR DOES_NOT_EXIST, got {other:?}"),
        }
        assert!(theirs.is_running());
    }

    async fn objects_to_us(kind: TransportKind) {
        let (_server, _client, mut theirs, ours) = connect(kind).await;
        they_announce_we_subscribe(&mut theirs, &ours, "interop/from-server", Payload::Subgroups).await;
    }

    async fn objects_to_them(kind: TransportKind) {
        let (_server, _client, mut theirs, ours) = connect(kind).await;
        let _announced = we_announce(&ours, &mut theirs, "interop/to-server").await;
        they_subscribe_we_answer(&mut theirs, &ours, "interop/to-server", Payload::Subgroups).await;
    }

    async fn datagrams_to_us(kind: TransportKind) {
        let (_server, _client, mut theirs, ours) = connect(kind).await;
        they_announce_we_subscribe(&mut theirs, &ours, "interop/dg-from-server", Payload::Datagrams).await;
    }

    async fn datagrams_to_them(kind: TransportKind) {
        let (_server, _client, mut theirs, ours) = connect(kind).await;
        they_subscribe_we_answer(&mut theirs, &ours, "interop/dg-to-server", Payload::Datagrams).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Exchanges shared by both directions: they do not depend on which side is the client.

/// How a case sends its objects.
#[derive(Clone, Copy, Debug)]
enum Payload {
    Subgroups,
    Datagrams,
}

fn their_ns(path: &str) -> TheirNamespace {
    TheirNamespace::from_utf8_path(path)
}

/// PUBLISH_OK: a REQUEST_OK asking the publisher to forward objects.
fn publish_ok() -> RequestOk {
    let mut ok = RequestOk::default();
    ok.parameters.forward = Some(true);
    ok
}

/// The payload of object (group, subgroup, object), so every object's bytes say where it
/// belongs.
fn payload(group: u64, subgroup: u64, object: u64) -> Bytes {
    Bytes::from(format!("g{group}s{subgroup}o{object}"))
}

fn expected_objects() -> BTreeSet<(u64, u64, u64)> {
    let mut all = BTreeSet::new();
    for g in 0..GROUPS {
        for s in 0..SUBGROUPS {
            for o in 0..OBJECTS {
                all.insert((g, s, o));
            }
        }
    }
    all
}

fn datagram_payload(group: u64) -> Bytes {
    Bytes::from(format!("datagram {group}"))
}

/// moq-transport sends PUBLISH_NAMESPACE; we accept it. Returns both handles (dropping
/// moq-transport's withdraws the namespace).
async fn they_announce(
    theirs: &mut Peer,
    ours: &Session,
    namespace: &str,
) -> (moq_transport::session::PublishNamespace, NamespacePublication) {
    let announce = within(
        "PUBLISH_NAMESPACE sent",
        theirs.publisher.publish_namespace_start(their_ns(namespace)),
    )
    .await
    .expect("PUBLISH_NAMESPACE sent");
    let Some(Request::PublishNamespace(request)) = within("PUBLISH_NAMESPACE at us", ours.accept()).await
    else {
        panic!("expected PUBLISH_NAMESPACE")
    };
    assert_eq!(request.message.track_namespace, ns(namespace));
    let publication = request.accept().await.expect("REQUEST_OK sent");
    (announce, publication)
}

/// We send PUBLISH_NAMESPACE; moq-transport accepts it. Returns both handles (dropping
/// moq-transport's revokes its acceptance).
async fn we_announce(
    ours: &Session,
    theirs: &mut Peer,
    namespace: &str,
) -> (NamespacePublication, moq_transport::session::PublishedNamespace) {
    let publisher = ours.clone();
    let request = PublishNamespace {
        request_id: 0,
        track_namespace: ns(namespace),
        parameters: Parameters::default(),
    };
    let publishing = tokio::spawn(async move { publisher.publish_namespace(request).await });
    let mut inbound = within(
        "PUBLISH_NAMESPACE at moq-transport",
        theirs.subscriber.published_namespace(),
    )
    .await
    .expect("moq-transport session running");
    assert_eq!(inbound.info.namespace, their_ns(namespace));
    inbound.ok().expect("REQUEST_OK sent");
    let publication = within("REQUEST_OK at us", publishing).await.unwrap().unwrap();
    assert_eq!(publication.namespace(), &ns(namespace));
    (publication, inbound)
}

/// We subscribe to a track moq-transport serves, receive its objects, then cancel (drop the
/// `Subscription`: STOP_SENDING CANCELLED and FIN on the request stream). moq-transport must
/// end its side of that subscription only, so the same track can be subscribed again.
async fn we_unsubscribe_from(theirs: &mut Peer, ours: &Session, namespace: &str) {
    let (mut tracks, _, catalog) = Tracks::new(their_ns(namespace)).produce();
    let track = tracks.create("video").expect("track");
    // Serve each SUBSCRIBE and report when serving it ends.
    let (ended_tx, mut ended) = tokio::sync::mpsc::unbounded_channel();
    let mut publisher = theirs.publisher.clone();
    let _responder = tokio::spawn(async move {
        while let Some(held) = publisher.subscribed().await {
            let (catalog, ended_tx) = (catalog.clone(), ended_tx.clone());
            tokio::spawn(async move {
                let _ = ended_tx.send(Publisher::serve_subscribe(held, catalog).await);
            });
        }
    });
    let mut subscription = within("SUBSCRIBE_OK", ours.subscribe(subscribe(namespace, "video")))
        .await
        .expect("moq-transport accepts the SUBSCRIBE");
    let mut subgroups = they_write_subgroups(track);
    assert_eq!(we_read_subgroups(&mut subscription).await, expected_objects());

    drop(subscription);
    let served = within("moq-transport ends the subscription", ended.recv()).await;
    assert!(
        matches!(served, Some(Err(SessionError::Serve(ServeError::Cancel)))),
        "serving ends as cancelled: {served:?}"
    );
    assert!(
        theirs.is_running(),
        "the cancellation ends one request, not the session"
    );

    // The same track again: not a duplicate any more, and new objects flow.
    let mut again = within(
        "second SUBSCRIBE_OK",
        ours.subscribe(subscribe(namespace, "video")),
    )
    .await
    .expect("moq-transport accepts the second SUBSCRIBE");
    let mut writer = subgroups
        .create(serve::Subgroup {
            group_id: GROUPS,
            subgroup_id: 0,
            priority: 7,
        })
        .expect("subgroup");
    writer.write(payload(GROUPS, 0, 0)).expect("object");
    writer.finish().expect("FIN");
    loop {
        let Some(TrackEvent::Subgroup(mut subgroup)) = within("subgroup", again.next()).await.unwrap() else {
            panic!("expected a subgroup stream")
        };
        let (group, sub) = (subgroup.group_id(), subgroup.subgroup_id().expect("subgroup id"));
        while let Some(object) = within("object", subgroup.next()).await.unwrap() {
            assert_eq!(object.payload, payload(group, sub, object.object_id));
        }
        if group == GROUPS {
            break;
        }
    }
    assert!(theirs.is_running());
}

/// moq-transport subscribes to one of our tracks; we refuse with DOES_NOT_EXIST.
async fn they_are_refused(theirs: &Peer, ours: &Session) {
    let (writer, _reader) = Track::new(their_ns("interop/none"), "missing").produce();
    let mut subscriber = theirs.subscriber.clone();
    let subscribing = tokio::spawn(async move { subscriber.subscribe_open(writer).await.map(|_| ()) });
    let Some(Request::Subscribe(request)) = within("SUBSCRIBE at us", ours.accept()).await else {
        panic!("expected SUBSCRIBE")
    };
    assert_eq!(request.message.track_namespace, ns("interop/none"));
    assert_eq!(request.message.track_name, TrackName::from("missing"));
    request
        .reject(RequestErrorCode::DoesNotExist, "no such track")
        .await
        .expect("REQUEST_ERROR sent");
    match within("REQUEST_ERROR at moq-transport", subscribing)
        .await
        .unwrap()
    {
        // DOES_NOT_EXIST; moq-transport replaces the peer's reason with a fixed phrase.
        Err(ServeError::NotFoundWithId(..)) => {}
        other => panic!("expected not found, got {other:?}"),
    }
    assert!(theirs.is_running());
}

/// moq-transport publishes a namespace and serves a track in it; we subscribe and receive its
/// objects.
async fn they_announce_we_subscribe(theirs: &mut Peer, ours: &Session, namespace: &str, payload: Payload) {
    let (mut tracks, _, catalog) = Tracks::new(their_ns(namespace)).produce();
    let track = tracks.create("video").expect("track");
    // moq-transport's canonical publisher: announce, then serve each SUBSCRIBE from the
    // catalog, for as long as the announcement lasts.
    let mut publisher = theirs.publisher.clone();
    let announcing = tokio::spawn(async move { publisher.publish_namespace(catalog).await });
    let Some(Request::PublishNamespace(request)) = within("PUBLISH_NAMESPACE at us", ours.accept()).await
    else {
        panic!("expected PUBLISH_NAMESPACE")
    };
    assert_eq!(request.message.track_namespace, ns(namespace));
    let _publication = request.accept().await.expect("REQUEST_OK sent");

    let mut subscription = within("SUBSCRIBE_OK", ours.subscribe(subscribe(namespace, "video")))
        .await
        .expect("moq-transport accepts the SUBSCRIBE");
    match payload {
        Payload::Subgroups => {
            let _writer = they_write_subgroups(track);
            assert_eq!(we_read_subgroups(&mut subscription).await, expected_objects());
        }
        Payload::Datagrams => {
            let mut writer = track.datagrams().expect("datagram mode");
            let sending = tokio::spawn(async move {
                for group in 0..DATAGRAMS {
                    writer
                        .write(serve::Datagram {
                            group_id: group,
                            object_id: 0,
                            priority: 7,
                            status: ObjectStatus::NormalObject,
                            end_of_group: false,
                            payload: datagram_payload(group),
                            extension_headers: Default::default(),
                        })
                        .expect("datagram written");
                    tokio::time::sleep(DATAGRAM_PACING).await;
                }
                writer
            });
            we_read_datagrams(&mut subscription).await;
            drop(within("sender", sending).await.unwrap());
        }
    }
    assert!(
        !announcing.is_finished(),
        "the announcement lasts: {:?}",
        announcing.await
    );
    assert!(theirs.is_running());
}

/// moq-transport subscribes to one of our tracks; we answer with SUBSCRIBE_OK, send objects
/// and end with PUBLISH_DONE.
async fn they_subscribe_we_answer(theirs: &mut Peer, ours: &Session, namespace: &str, payload: Payload) {
    let (writer, reader) = Track::new(their_ns(namespace), "video").produce();
    let mut subscriber = theirs.subscriber.clone();
    let subscribing = tokio::spawn(async move { subscriber.subscribe_open(writer).await });
    let Some(Request::Subscribe(request)) = within("SUBSCRIBE at us", ours.accept()).await else {
        panic!("expected SUBSCRIBE")
    };
    assert_eq!(request.message.track_namespace, ns(namespace));
    assert_eq!(request.message.track_name, TrackName::from("video"));
    let mut writer = request
        .accept(SubscribeOk::default())
        .await
        .expect("SUBSCRIBE_OK sent");
    // Objects go out once moq-transport has SUBSCRIBE_OK, so none wait for an unknown alias.
    let subscription = within("SUBSCRIBE_OK at moq-transport", subscribing)
        .await
        .unwrap()
        .expect("moq-transport accepts SUBSCRIBE_OK");
    let ok = subscription.subscribe_ok().expect("SUBSCRIBE_OK info");
    assert_eq!(ok.track_alias, writer.track_alias());

    match payload {
        Payload::Subgroups => {
            let reading = tokio::spawn(they_read_subgroups(reader));
            let streams = we_write_subgroups(&mut writer).await;
            assert_eq!(
                within("moq-transport reads", reading).await.unwrap(),
                expected_objects()
            );
            writer
                .finish(PublishDoneCode::TrackEnded, "done")
                .await
                .expect("PUBLISH_DONE sent");
            // moq-transport reports a subscription ended by PUBLISH_DONE as closed with its
            // status code.
            let closed = within("PUBLISH_DONE at moq-transport", subscription.closed()).await;
            assert_eq!(
                closed,
                Err(ServeError::Closed(PublishDoneCode::TrackEnded.code()))
            );
            let done = subscription.publish_done().expect("PUBLISH_DONE info");
            assert_eq!(done.status_code, PublishDoneCode::TrackEnded.code());
            assert_eq!(done.stream_count, streams);
        }
        Payload::Datagrams => {
            let reading = tokio::spawn(they_read_datagrams(reader));
            for group in 0..DATAGRAMS {
                writer
                    .send_datagram(ObjectDatagram {
                        group_id: group,
                        object_id: 0,
                        publisher_priority: Some(7),
                        payload: datagram_payload(group),
                        ..Default::default()
                    })
                    .expect("datagram sent");
                tokio::time::sleep(DATAGRAM_PACING).await;
            }
            let received = within("moq-transport reads datagrams", reading).await.unwrap();
            assert!(
                received.contains(&(DATAGRAMS - 1)),
                "the last datagram arrives: {received:?}"
            );
            writer
                .finish(PublishDoneCode::TrackEnded, "done")
                .await
                .expect("PUBLISH_DONE sent");
        }
    }
    assert!(theirs.is_running());
}

/// PUBLISH from moq-transport, as it reaches us.
async fn we_get_publish(ours: &Session, namespace: &str, name: &str) -> banyan_moq::session::PublishRequest {
    let Some(Request::Publish(request)) = within("PUBLISH at us", ours.accept()).await else {
        panic!("expected PUBLISH")
    };
    assert_eq!(request.message.track_namespace, ns(namespace));
    assert_eq!(request.message.track_name, TrackName::from(name));
    request
}

/// moq-transport writes every object of [`expected_objects`], one stream per subgroup. The
/// returned writer keeps the track open (dropping it ends the track).
fn they_write_subgroups(track: serve::TrackWriter) -> serve::SubgroupsWriter {
    let mut subgroups = track.subgroups().expect("subgroup mode");
    for g in 0..GROUPS {
        for s in 0..SUBGROUPS {
            let mut writer = subgroups
                .create(serve::Subgroup {
                    group_id: g,
                    subgroup_id: s,
                    priority: 7,
                })
                .expect("subgroup");
            for o in 0..OBJECTS {
                writer.write(payload(g, s, o)).expect("object");
            }
            writer.finish().expect("FIN");
        }
    }
    subgroups
}

/// We write every object of [`expected_objects`], one stream per subgroup, alternating
/// headers with and without object properties. Returns the number of streams.
async fn we_write_subgroups(writer: &mut TrackWriter) -> u64 {
    let mut streams = 0;
    for g in 0..GROUPS {
        for s in 0..SUBGROUPS {
            let properties = (g + s) % 2 == 1;
            let mut subgroup = writer
                .open_subgroup(g, s, Some(7), properties)
                .await
                .expect("subgroup stream");
            for o in 0..OBJECTS {
                subgroup.write_payload(o, payload(g, s, o)).await.expect("object");
            }
            subgroup.finish();
            streams += 1;
        }
    }
    streams
}

/// Read subgroup streams until every expected object is in; each object's bytes must match
/// the group and subgroup of its stream and its own Object ID.
async fn we_read_subgroups(subscription: &mut Subscription) -> BTreeSet<(u64, u64, u64)> {
    let mut received = BTreeSet::new();
    while received.len() < expected_objects().len() {
        match within("subgroup stream", subscription.next()).await.unwrap() {
            Some(TrackEvent::Subgroup(mut subgroup)) => {
                let group = subgroup.group_id();
                let sub = subgroup.subgroup_id().expect("subgroup id in the header");
                assert_eq!(subgroup.header().track_alias, subscription.track_alias());
                while let Some(object) = within("object", subgroup.next()).await.unwrap() {
                    assert_eq!(object.payload, payload(group, sub, object.object_id));
                    assert!(
                        received.insert((group, sub, object.object_id)),
                        "duplicate object"
                    );
                }
            }
            other => panic!("expected a subgroup stream, got {other:?}"),
        }
    }
    received
}

/// moq-transport's side of [`we_read_subgroups`].
async fn they_read_subgroups(reader: serve::TrackReader) -> BTreeSet<(u64, u64, u64)> {
    let TrackReaderMode::Subgroups(mut subgroups) = within("first data", reader.mode()).await.unwrap() else {
        panic!("expected subgroup mode")
    };
    let mut received = BTreeSet::new();
    while received.len() < expected_objects().len() {
        let mut subgroup = within("subgroup", subgroups.next())
            .await
            .unwrap()
            .expect("track ended early");
        let (group, sub) = (subgroup.group_id, subgroup.subgroup_id);
        while let Some(mut object) = within("object", subgroup.next()).await.unwrap() {
            let bytes = within("payload", object.read_all()).await.unwrap();
            assert_eq!(bytes, payload(group, sub, object.object_id));
            assert!(
                received.insert((group, sub, object.object_id)),
                "duplicate object"
            );
        }
    }
    received
}

/// Read datagrams until the last one sent arrives. Every one must be well-formed and match
/// what was sent; earlier ones may be missing (see [`DATAGRAM_PACING`]).
async fn we_read_datagrams(subscription: &mut Subscription) {
    let mut groups = Vec::new();
    while groups.last() != Some(&(DATAGRAMS - 1)) {
        match within("datagram", subscription.next()).await.unwrap() {
            Some(TrackEvent::Datagram(d)) => {
                assert_eq!(d.track_alias, subscription.track_alias());
                assert!(d.group_id < DATAGRAMS, "group {}", d.group_id);
                assert_eq!(d.object_id, 0);
                assert_eq!(d.publisher_priority, Some(7));
                assert_eq!(d.payload, datagram_payload(d.group_id));
                assert!(
                    groups.last() < Some(&d.group_id),
                    "in order, no duplicates: {groups:?} then {}",
                    d.group_id
                );
                groups.push(d.group_id);
            }
            other => panic!("expected a datagram, got {other:?}"),
        }
    }
}

/// moq-transport's side of [`we_read_datagrams`]: the groups received.
async fn they_read_datagrams(reader: serve::TrackReader) -> Vec<u64> {
    let TrackReaderMode::Datagrams(mut datagrams) = within("first datagram", reader.mode()).await.unwrap()
    else {
        panic!("expected datagram mode")
    };
    let mut groups = Vec::new();
    while groups.last() != Some(&(DATAGRAMS - 1)) {
        let d = within("datagram", datagrams.read())
            .await
            .unwrap()
            .expect("track ended early");
        assert!(d.group_id < DATAGRAMS, "group {}", d.group_id);
        assert_eq!(d.object_id, 0);
        assert_eq!(d.priority, 7);
        assert_eq!(d.payload, datagram_payload(d.group_id));
        assert!(
            groups.last() < Some(&d.group_id),
            "in order, no duplicates: {groups:?} then {}",
            d.group_id
        );
        groups.push(d.group_id);
    }
    groups
}
