//! Proves banyan-relay carries tracks between independent MoQT draft-18 implementations: the
//! `moq-transport` 0.17 crate (cloudflare/moq-rs) publishing to banyan-moq subscribers,
//! banyan-moq publishing to moq-transport subscribers, and moq-transport to moq-transport,
//! through an in-process relay, with namespaces (PUBLISH_NAMESPACE, relay subscribes on
//! demand) and pushed tracks (PUBLISH), over raw QUIC, WebTransport and across the two; every
//! object of several groups and subgroups arrives byte-identical, and the publisher's end of
//! track reaches the subscriber as PUBLISH_DONE. Incompatibilities: relay/README.md,
//! "Interoperability".

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use banyan_moq::coding::{PublishDoneCode, TrackName, TrackNamespace};
use banyan_moq::message::{Message, Parameters, Publish, PublishNamespace, Subscribe, SubscribeOk};
use banyan_moq::session::{Request, Subscription, TrackEvent, TrackWriter, TransportKind};
use banyan_tests::moq_rs::{self, Peer, Transport};
use bytes::Bytes;
use common::TestRelay;
use moq_transport::coding::{KeyValuePairs, TrackNamespace as TheirNamespace};
use moq_transport::data::ObjectStatus;
use moq_transport::serve::{self, ServeError, Track, TrackReaderMode, Tracks};

/// No case may take longer than this, whatever hangs.
const CASE_TIMEOUT: Duration = Duration::from_secs(40);

/// No single step (a handshake, an answer, the next stream) may take longer than this.
const STEP_TIMEOUT_SECS: u64 = 10;

/// What every case sends: groups × subgroups × objects, on one stream per subgroup.
const GROUPS: u64 = 3;
const SUBGROUPS: u64 = 2;
const OBJECTS: u64 = 4;

/// Datagrams in the datagram case, one per group.
const DATAGRAMS: u64 = 8;

/// moq-transport keeps only the latest datagram between its application and its session, on
/// both ends; pacing lets most through. Only the last is required to arrive.
const DATAGRAM_PACING: Duration = Duration::from_millis(40);

/// The track every case carries.
const TRACK: &str = "video";

/// Run each case with the publisher and the subscriber on each transport (both raw QUIC, both
/// WebTransport, and one of each, which the relay bridges), on a multi-threaded runtime
/// (moq-transport expects one), under [`CASE_TIMEOUT`].
macro_rules! every_transport {
    ($($name:ident),* $(,)?) => {
        every_transport!(@mod quic, Quic, Quic; $($name),*);
        every_transport!(@mod webtransport, WebTransport, WebTransport; $($name),*);
        every_transport!(@mod quic_to_webtransport, Quic, WebTransport; $($name),*);
        every_transport!(@mod webtransport_to_quic, WebTransport, Quic; $($name),*);
    };
    (@mod $module:ident, $publisher:ident, $subscriber:ident; $($name:ident),*) => {
        mod $module {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                crate::bounded(super::$name(
                    banyan_moq::session::TransportKind::$publisher,
                    banyan_moq::session::TransportKind::$subscriber,
                ))
                .await
            })*
        }
    };
}

every_transport!(
    they_announce_we_subscribe,
    they_push_we_subscribe,
    we_announce_they_subscribe,
    we_push_they_subscribe,
    they_announce_they_subscribe,
    they_push_they_subscribe,
    their_datagrams_to_them,
);

/// Bound one step of a case so a hang names the step.
async fn within<F: Future>(what: &str, f: F) -> F::Output {
    common::within(what, STEP_TIMEOUT_SECS, f).await
}

async fn bounded(case: impl Future<Output = ()>) {
    tokio::time::timeout(CASE_TIMEOUT, case)
        .await
        .expect("case timed out");
}

// ---------------------------------------------------------------------------------------------
// (a) moq-transport publishes, banyan-moq subscribes.

/// moq-transport announces the namespace; the relay subscribes to it on demand when we ask.
async fn they_announce_we_subscribe(publisher: TransportKind, subscriber: TransportKind) {
    let relay = common::relay(&[]).await;
    let namespace = "interop/a-announce";
    let mut theirs = connect_theirs(&relay, publisher).await;
    let (track, _announce) = they_announce(&mut theirs, namespace).await;

    let ours = relay.connect(&relay.client(), subscriber).await;
    let mut subscription = within(
        "SUBSCRIBE_OK from the relay",
        ours.subscribe(subscribe(namespace)),
    )
    .await
    .expect("the relay accepts our SUBSCRIBE");
    // The relay's upstream subscription is live; only now does moq-transport write, so every
    // object goes through it.
    let writer = they_write_subgroups(track);
    assert_eq!(we_read_subgroups(&mut subscription).await, expected_objects());
    drop(writer);
    we_see_track_ended(&mut subscription).await;
    assert!(theirs.is_running(), "moq-transport's session survives");
}

/// moq-transport pushes the track with PUBLISH; we subscribe to it at the relay.
async fn they_push_we_subscribe(publisher: TransportKind, subscriber: TransportKind) {
    let relay = common::relay(&[]).await;
    let namespace = "interop/a-push";
    let mut theirs = connect_theirs(&relay, publisher).await;
    let (track, serving) = they_push(&mut theirs, namespace).await;

    let ours = relay.connect(&relay.client(), subscriber).await;
    let mut subscription = within(
        "SUBSCRIBE_OK from the relay",
        ours.subscribe(subscribe(namespace)),
    )
    .await
    .expect("the relay accepts our SUBSCRIBE");
    let writer = they_write_subgroups(track);
    assert_eq!(we_read_subgroups(&mut subscription).await, expected_objects());
    drop(writer);
    we_see_track_ended(&mut subscription).await;
    within("moq-transport's serve() ends", serving)
        .await
        .unwrap()
        .expect("moq-transport publishes without error");
    assert!(theirs.is_running(), "moq-transport's session survives");
}

// ---------------------------------------------------------------------------------------------
// (b) banyan-moq publishes, moq-transport subscribes.

/// We announce the namespace; moq-transport subscribes at the relay, which subscribes to us.
async fn we_announce_they_subscribe(publisher: TransportKind, subscriber: TransportKind) {
    let relay = common::relay(&[]).await;
    let namespace = "interop/b-announce";
    let ours = relay.connect(&relay.client(), publisher).await;
    let request = PublishNamespace {
        request_id: 0,
        track_namespace: ns(namespace),
        parameters: Parameters::default(),
    };
    let _publication = within("REQUEST_OK from the relay", ours.publish_namespace(request))
        .await
        .expect("the relay accepts our namespace");

    let theirs = connect_theirs(&relay, subscriber).await;
    let (writer, reader) = Track::new(their_ns(namespace), TRACK).produce();
    let mut their_subscriber = theirs.subscriber.clone();
    let subscribing = tokio::spawn(async move { their_subscriber.subscribe_open(writer).await });
    // The relay's one upstream SUBSCRIBE.
    let Some(Request::Subscribe(request)) = within("the relay's SUBSCRIBE", ours.accept()).await else {
        panic!("expected SUBSCRIBE from the relay")
    };
    assert_eq!(request.message.track_namespace, ns(namespace));
    assert_eq!(request.message.track_name, TrackName::from(TRACK));
    let mut track = request
        .accept(SubscribeOk::default())
        .await
        .expect("SUBSCRIBE_OK sent");
    let subscription = within("SUBSCRIBE_OK at moq-transport", subscribing)
        .await
        .unwrap()
        .expect("the relay accepts moq-transport's SUBSCRIBE");

    we_publish_to_them(&mut track, reader).await;
    track
        .finish(PublishDoneCode::TrackEnded, "done")
        .await
        .expect("PUBLISH_DONE sent");
    they_see_track_ended(&subscription).await;
    assert!(theirs.is_running(), "moq-transport's session survives");
}

/// We push the track with PUBLISH; moq-transport subscribes to it at the relay.
async fn we_push_they_subscribe(publisher: TransportKind, subscriber: TransportKind) {
    let relay = common::relay(&[]).await;
    let namespace = "interop/b-push";
    let ours = relay.connect(&relay.client(), publisher).await;
    let mut track = ours
        .publish(Publish {
            request_id: 0,
            track_namespace: ns(namespace),
            track_name: TrackName::from(TRACK),
            track_alias: 0,
            parameters: Parameters::default(),
            track_properties: Default::default(),
        })
        .await
        .expect("PUBLISH sent");
    match within("PUBLISH_OK from the relay", track.next_request()).await {
        Ok(Some(Message::RequestOk(_))) => {}
        other => panic!("expected PUBLISH_OK, got {other:?}"),
    }

    let theirs = connect_theirs(&relay, subscriber).await;
    let (writer, reader) = Track::new(their_ns(namespace), TRACK).produce();
    let mut their_subscriber = theirs.subscriber.clone();
    let subscription = within(
        "SUBSCRIBE_OK at moq-transport",
        their_subscriber.subscribe_open(writer),
    )
    .await
    .expect("the relay accepts moq-transport's SUBSCRIBE");

    we_publish_to_them(&mut track, reader).await;
    track
        .finish(PublishDoneCode::TrackEnded, "done")
        .await
        .expect("PUBLISH_DONE sent");
    they_see_track_ended(&subscription).await;
    assert!(theirs.is_running(), "moq-transport's session survives");
}

// ---------------------------------------------------------------------------------------------
// (c) moq-transport on both ends.

async fn they_announce_they_subscribe(publisher: TransportKind, subscriber: TransportKind) {
    let relay = common::relay(&[]).await;
    let namespace = "interop/c-announce";
    let mut publishing = connect_theirs(&relay, publisher).await;
    let (track, _announce) = they_announce(&mut publishing, namespace).await;

    let subscribing = connect_theirs(&relay, subscriber).await;
    let (writer, reader) = Track::new(their_ns(namespace), TRACK).produce();
    let mut their_subscriber = subscribing.subscriber.clone();
    let subscription = within(
        "SUBSCRIBE_OK at moq-transport",
        their_subscriber.subscribe_open(writer),
    )
    .await
    .expect("the relay accepts moq-transport's SUBSCRIBE");

    let reading = tokio::spawn(they_read_subgroups(reader));
    let writer = they_write_subgroups(track);
    assert_eq!(
        within("moq-transport reads", reading).await.unwrap(),
        expected_objects()
    );
    drop(writer);
    they_see_track_ended(&subscription).await;
    assert!(publishing.is_running() && subscribing.is_running());
}

async fn they_push_they_subscribe(publisher: TransportKind, subscriber: TransportKind) {
    let relay = common::relay(&[]).await;
    let namespace = "interop/c-push";
    let mut publishing = connect_theirs(&relay, publisher).await;
    let (track, serving) = they_push(&mut publishing, namespace).await;

    let subscribing = connect_theirs(&relay, subscriber).await;
    let (writer, reader) = Track::new(their_ns(namespace), TRACK).produce();
    let mut their_subscriber = subscribing.subscriber.clone();
    let subscription = within(
        "SUBSCRIBE_OK at moq-transport",
        their_subscriber.subscribe_open(writer),
    )
    .await
    .expect("the relay accepts moq-transport's SUBSCRIBE");

    let reading = tokio::spawn(they_read_subgroups(reader));
    let writer = they_write_subgroups(track);
    assert_eq!(
        within("moq-transport reads", reading).await.unwrap(),
        expected_objects()
    );
    drop(writer);
    they_see_track_ended(&subscription).await;
    within("moq-transport's serve() ends", serving)
        .await
        .unwrap()
        .expect("moq-transport publishes without error");
    assert!(publishing.is_running() && subscribing.is_running());
}

/// A datagram track from moq-transport to moq-transport: forwarded as datagrams.
async fn their_datagrams_to_them(publisher: TransportKind, subscriber: TransportKind) {
    let relay = common::relay(&[]).await;
    let namespace = "interop/c-datagrams";
    let mut publishing = connect_theirs(&relay, publisher).await;
    let (track, _announce) = they_announce(&mut publishing, namespace).await;

    let subscribing = connect_theirs(&relay, subscriber).await;
    let (writer, reader) = Track::new(their_ns(namespace), TRACK).produce();
    let mut their_subscriber = subscribing.subscriber.clone();
    let _subscription = within(
        "SUBSCRIBE_OK at moq-transport",
        their_subscriber.subscribe_open(writer),
    )
    .await
    .expect("the relay accepts moq-transport's SUBSCRIBE");

    let reading = tokio::spawn(they_read_datagrams(reader));
    let mut datagrams = track.datagrams().expect("datagram mode");
    for group in 0..DATAGRAMS {
        datagrams
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
    let received = within("moq-transport reads datagrams", reading).await.unwrap();
    assert!(
        received.contains(&(DATAGRAMS - 1)),
        "the last datagram arrives: {received:?}"
    );
    assert!(publishing.is_running() && subscribing.is_running());
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// moq-transport connected to the relay over `kind`.
async fn connect_theirs(relay: &TestRelay, kind: TransportKind) -> Peer {
    let hash = banyan_certs::parse_sha256_hex(&relay.hash).unwrap();
    within(
        "moq-transport connects to the relay",
        moq_rs::connect(relay.addr, hash, transport(kind)),
    )
    .await
}

/// moq-transport's name for a transport.
fn transport(kind: TransportKind) -> Transport {
    match kind {
        TransportKind::Quic => Transport::RawQuic,
        TransportKind::WebTransport => Transport::WebTransport,
        TransportKind::WebSocket => panic!("moq-transport has no WebSocket transport"),
    }
}

fn ns(path: &str) -> TrackNamespace {
    TrackNamespace::from_path(path).unwrap()
}

fn their_ns(path: &str) -> TheirNamespace {
    TheirNamespace::from_utf8_path(path)
}

fn subscribe(namespace: &str) -> Subscribe {
    Subscribe {
        request_id: 0,
        track_namespace: ns(namespace),
        track_name: TrackName::from(TRACK),
        // Wait for the publisher if it is not there yet (capped by the relay).
        parameters: Parameters {
            rendezvous_timeout: Some(10_000),
            ..Default::default()
        },
    }
}

/// The bytes of object (group, subgroup, object): they name their place, and their length
/// and contents vary (the first object of each subgroup spans many QUIC packets), so any
/// truncation, reordering or mix-up shows.
fn object_payload(group: u64, subgroup: u64, object: u64) -> Bytes {
    let mut bytes = format!("g{group}s{subgroup}o{object}|").into_bytes();
    let len = if object == 0 {
        24_000
    } else {
        50 + ((group * 131 + subgroup * 17 + object * 997) % 1500) as usize
    };
    let seed = (group * 31 + subgroup * 7 + object) as u8;
    bytes.extend((0..len).map(|i| seed.wrapping_add((i % 251) as u8)));
    Bytes::from(bytes)
}

/// A datagram's bytes: they name their group and fit one QUIC packet.
fn datagram_payload(group: u64) -> Bytes {
    let mut bytes = format!("datagram {group}|").into_bytes();
    bytes.extend((0..300).map(|i| (group as u8).wrapping_mul(7).wrapping_add(i as u8)));
    Bytes::from(bytes)
}

/// (group, subgroup, object) → payload for every object a case sends.
fn expected_objects() -> BTreeMap<(u64, u64, u64), Bytes> {
    let mut all = BTreeMap::new();
    for g in 0..GROUPS {
        for s in 0..SUBGROUPS {
            for o in 0..OBJECTS {
                all.insert((g, s, o), object_payload(g, s, o));
            }
        }
    }
    all
}

/// moq-transport announces `namespace` with one track in it and serves SUBSCRIBEs from it
/// (its own `serve_subscribe`). Returns the track's writer and the announcement, which lasts
/// until it is dropped.
async fn they_announce(theirs: &mut Peer, namespace: &str) -> (serve::TrackWriter, Announced) {
    let (mut tracks, _, catalog) = Tracks::new(their_ns(namespace)).produce();
    let track = tracks.create(TRACK).expect("track");
    let announce = within(
        "PUBLISH_NAMESPACE sent",
        theirs.publisher.publish_namespace_start(their_ns(namespace)),
    )
    .await
    .expect("PUBLISH_NAMESPACE sent");
    within("REQUEST_OK from the relay", announce.ok())
        .await
        .expect("the relay accepts moq-transport's namespace");
    let serving = tokio::spawn(async move {
        let _tracks = tracks;
        while let Ok(Some(subscribed)) = announce.subscribed().await {
            let catalog = catalog.clone();
            tokio::spawn(async move {
                let _ = moq_transport::session::Publisher::serve_subscribe(subscribed, catalog).await;
            });
        }
    });
    (track, Announced(serving))
}

/// A namespace moq-transport announced and serves; dropping it stops serving and withdraws.
struct Announced(tokio::task::JoinHandle<()>);

impl Drop for Announced {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// moq-transport pushes a track in `namespace` with PUBLISH and waits for the relay's
/// PUBLISH_OK. Returns the track's writer and the task serving it (it ends after
/// PUBLISH_DONE).
async fn they_push(
    theirs: &mut Peer,
    namespace: &str,
) -> (
    serve::TrackWriter,
    tokio::task::JoinHandle<Result<(), moq_transport::session::SessionError>>,
) {
    let (writer, reader) = Track::new(their_ns(namespace), TRACK).produce();
    let mut published = theirs
        .publisher
        .publish(reader, KeyValuePairs::default())
        .await
        .expect("PUBLISH sent");
    within("PUBLISH_OK from the relay", published.ok())
        .await
        .expect("the relay accepts moq-transport's PUBLISH");
    (writer, tokio::spawn(published.serve()))
}

/// moq-transport writes every object of [`expected_objects`], one stream per subgroup. The
/// returned writer keeps the track open; dropping it ends the track (PUBLISH_DONE).
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
                writer.write(object_payload(g, s, o)).expect("object");
            }
            writer.finish().expect("FIN");
        }
    }
    subgroups
}

/// We write every object of [`expected_objects`] on `track` while moq-transport reads
/// `reader`, and check it received them all, byte for byte.
async fn we_publish_to_them(track: &mut TrackWriter, reader: serve::TrackReader) {
    let reading = tokio::spawn(they_read_subgroups(reader));
    for g in 0..GROUPS {
        for s in 0..SUBGROUPS {
            let mut subgroup = track
                .open_subgroup(g, s, Some(7), false)
                .await
                .expect("subgroup stream");
            for o in 0..OBJECTS {
                subgroup
                    .write_payload(o, object_payload(g, s, o))
                    .await
                    .expect("object");
            }
            subgroup.finish();
        }
    }
    assert_eq!(
        within("moq-transport reads", reading).await.unwrap(),
        expected_objects()
    );
}

/// Read subgroup streams until every expected object is in.
async fn we_read_subgroups(subscription: &mut Subscription) -> BTreeMap<(u64, u64, u64), Bytes> {
    let mut received = BTreeMap::new();
    while received.len() < expected_objects().len() {
        let next = tokio::time::timeout(Duration::from_secs(STEP_TIMEOUT_SECS), subscription.next());
        let Ok(next) = next.await else {
            panic!(
                "timed out waiting for a subgroup stream; received {:?}",
                received.keys()
            );
        };
        match next.unwrap() {
            Some(TrackEvent::Subgroup(mut subgroup)) => {
                let group = subgroup.group_id();
                let sub = subgroup.subgroup_id().expect("subgroup id in the header");
                assert_eq!(subgroup.header().track_alias, subscription.track_alias());
                while let Some(object) = within("object", subgroup.next()).await.unwrap() {
                    assert!(
                        received
                            .insert((group, sub, object.object_id), object.payload)
                            .is_none(),
                        "duplicate object {group}/{sub}/{}",
                        object.object_id
                    );
                }
            }
            other => panic!("expected a subgroup stream, got {other:?}"),
        }
    }
    received
}

/// moq-transport's side of [`we_read_subgroups`].
async fn they_read_subgroups(reader: serve::TrackReader) -> BTreeMap<(u64, u64, u64), Bytes> {
    let TrackReaderMode::Subgroups(mut subgroups) = within("first data", reader.mode()).await.unwrap() else {
        panic!("expected subgroup mode")
    };
    let mut received = BTreeMap::new();
    while received.len() < expected_objects().len() {
        let next = tokio::time::timeout(Duration::from_secs(STEP_TIMEOUT_SECS), subgroups.next());
        let Ok(next) = next.await else {
            panic!(
                "moq-transport timed out waiting for a subgroup; received {:?}",
                received.keys()
            );
        };
        let mut subgroup = next.unwrap().expect("track ended early");
        let (group, sub) = (subgroup.group_id, subgroup.subgroup_id);
        while let Some(mut object) = within("object", subgroup.next()).await.unwrap() {
            let bytes = within("payload", object.read_all()).await.unwrap();
            assert!(
                received.insert((group, sub, object.object_id), bytes).is_none(),
                "duplicate object {group}/{sub}/{}",
                object.object_id
            );
        }
    }
    received
}

/// moq-transport reads datagrams until the last one sent arrives; each must be well-formed,
/// in order and byte-identical. Returns the groups received.
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

/// The publisher ended the track: the relay passes PUBLISH_DONE on to us.
async fn we_see_track_ended(subscription: &mut Subscription) {
    match within("PUBLISH_DONE from the relay", subscription.next())
        .await
        .unwrap()
    {
        Some(TrackEvent::Done(done)) => assert_eq!(done.status_code, PublishDoneCode::TrackEnded),
        other => panic!("expected PUBLISH_DONE after the last object, got {other:?}"),
    }
}

/// moq-transport's view of the same: its subscription closes with TRACK_ENDED.
async fn they_see_track_ended(subscription: &moq_transport::session::Subscribe) {
    let closed = within("PUBLISH_DONE at moq-transport", subscription.closed()).await;
    assert_eq!(
        closed,
        Err(ServeError::Closed(PublishDoneCode::TrackEnded.code()))
    );
}
