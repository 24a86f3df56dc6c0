//! Proves that bad input from the network closes the offending session with the spec's
//! error code (or refuses the one request), never panics, and leaves the server serving
//! everyone else: silence instead of SETUP, garbage on the control stream, unknown stream
//! types, oversized messages, non-request messages opening request streams, duplicate and
//! wrong-parity Request IDs, and objects above the size limit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use banyan_certs::{client_config, ServerVerification};
use banyan_moq::coding::{encode_varint, Encode, SessionErrorCode, TrackName, TrackNamespace};
use banyan_moq::data::{SubgroupHeader, SubgroupId};
use banyan_moq::message::{Message, Parameters, Setup, Subscribe, SubscribeOk};
use banyan_moq::session::{Error, Request, SessionConfig, TrackEvent, TransportKind};
use banyan_moq::Version;
use bytes::{BufMut, Bytes, BytesMut};
use common::{start, start_with, test_config, within, Harness};

const V: Version = Version::Draft18;

/// A raw-QUIC connection to the harness server that speaks whatever bytes the test writes.
async fn raw_connection(h: &Harness) -> quinn::Connection {
    let mut tls = client_config(
        &ServerVerification::PinnedSha256(vec![h.identity_hash]),
        &[b"moqt-18"],
    )
    .unwrap();
    tls.alpn_protocols = vec![b"moqt-18".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    endpoint.connect(h.addr, "localhost").unwrap().await.unwrap()
}

fn frame(message: impl Into<Message>) -> Bytes {
    message.into().to_frame(V).unwrap()
}

/// Open our control stream with a valid SETUP; the stream is returned for more bytes.
async fn send_setup(conn: &quinn::Connection) -> quinn::SendStream {
    let mut control = conn.open_uni().await.unwrap();
    control.write_all(&frame(Setup::default())).await.unwrap();
    control
}

/// The application error code the server closed the connection with.
async fn close_code(conn: &quinn::Connection) -> u64 {
    match within("server closes the connection", conn.closed()).await {
        quinn::ConnectionError::ApplicationClosed(close) => close.error_code.into_inner(),
        other => panic!("expected an application close, got {other:?}"),
    }
}

fn subscribe(request_id: u64) -> Subscribe {
    Subscribe {
        request_id,
        track_namespace: TrackNamespace::from_path("live").unwrap(),
        track_name: TrackName::from("video"),
        parameters: Parameters::default(),
    }
}

/// After a hostile peer, a well-behaved client still gets a working session.
async fn still_serving(h: &mut Harness) {
    let (client, server) = h.pair(TransportKind::Quic).await;
    let answer = tokio::spawn(async move {
        if let Some(Request::Subscribe(request)) = server.accept().await {
            let writer = request.accept(SubscribeOk::default()).await.unwrap();
            return Some((server, writer));
        }
        None
    });
    within("subscribe after abuse", client.subscribe(subscribe(0)))
        .await
        .unwrap();
    assert!(within("server answered", answer).await.unwrap().is_some());
}

#[tokio::test]
async fn silence_instead_of_setup_times_out() {
    let mut h = start_with(SessionConfig {
        setup_timeout: Duration::from_millis(300),
        ..test_config()
    })
    .await;
    let conn = raw_connection(&h).await;
    assert_eq!(
        close_code(&conn).await,
        SessionErrorCode::ControlMessageTimeout.code()
    );
    let error = within("server error", h.server_errors.recv()).await.unwrap();
    assert!(matches!(error, Error::Timeout("setup")), "got {error:?}");
    still_serving(&mut h).await;
}

#[tokio::test]
async fn garbage_on_the_control_stream_is_a_protocol_violation() {
    let mut h = start().await;
    let conn = raw_connection(&h).await;
    let mut control = send_setup(&conn).await;
    // A message type draft-18 does not define.
    control.write_all(&[0x3f, 0x00, 0x00]).await.unwrap();
    assert_eq!(
        close_code(&conn).await,
        SessionErrorCode::ProtocolViolation.code()
    );
    still_serving(&mut h).await;
}

#[tokio::test]
async fn malformed_setup_is_a_protocol_violation() {
    let mut h = start().await;
    let conn = raw_connection(&h).await;
    let mut control = conn.open_uni().await.unwrap();
    // SETUP whose declared length (2) leaves a dangling half of a Key-Value-Pair.
    let mut bytes = BytesMut::new();
    encode_varint(0x2f00, &mut bytes);
    bytes.put_u16(2);
    bytes.put_slice(&[0x01, 0x05]);
    control.write_all(&bytes).await.unwrap();
    let code = close_code(&conn).await;
    assert!(
        code == SessionErrorCode::ProtocolViolation.code()
            || code == SessionErrorCode::KeyValueFormattingError.code(),
        "got {code:#x}"
    );
    still_serving(&mut h).await;
}

#[tokio::test]
async fn unknown_stream_type_is_a_protocol_violation() {
    let mut h = start().await;
    let conn = raw_connection(&h).await;
    let _control = send_setup(&conn).await;
    let mut stream = conn.open_uni().await.unwrap();
    stream.write_all(&[0x02, 0xaa, 0xbb]).await.unwrap();
    assert_eq!(
        close_code(&conn).await,
        SessionErrorCode::ProtocolViolation.code()
    );
    still_serving(&mut h).await;
}

#[tokio::test]
async fn oversized_message_is_refused_from_its_header() {
    let mut h = start_with(SessionConfig {
        max_message_size: 1024,
        ..test_config()
    })
    .await;
    let conn = raw_connection(&h).await;
    let _control = send_setup(&conn).await;
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    // SUBSCRIBE claiming 60000 bytes; only the header is sent, so refusing proves the
    // server did not wait to buffer the payload.
    let mut header = BytesMut::new();
    encode_varint(Subscribe::TYPE, &mut header);
    header.put_u16(60_000);
    send.write_all(&header).await.unwrap();
    assert_eq!(
        close_code(&conn).await,
        SessionErrorCode::ProtocolViolation.code()
    );
    still_serving(&mut h).await;
}

#[tokio::test]
async fn request_stream_must_start_with_a_request() {
    let mut h = start().await;
    let conn = raw_connection(&h).await;
    let _control = send_setup(&conn).await;
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    send.write_all(&frame(SubscribeOk::default())).await.unwrap();
    assert_eq!(
        close_code(&conn).await,
        SessionErrorCode::ProtocolViolation.code()
    );
    still_serving(&mut h).await;
}

#[tokio::test]
async fn duplicate_request_id_is_invalid() {
    let mut h = start().await;
    let conn = raw_connection(&h).await;
    let _control = send_setup(&conn).await;
    let (mut first, _r1) = conn.open_bi().await.unwrap();
    first.write_all(&frame(subscribe(4))).await.unwrap();
    let (mut second, _r2) = conn.open_bi().await.unwrap();
    second.write_all(&frame(subscribe(4))).await.unwrap();
    assert_eq!(close_code(&conn).await, SessionErrorCode::InvalidRequestId.code());
    still_serving(&mut h).await;
}

#[tokio::test]
async fn request_id_with_the_servers_parity_is_invalid() {
    let mut h = start().await;
    let conn = raw_connection(&h).await;
    let _control = send_setup(&conn).await;
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    send.write_all(&frame(subscribe(1))).await.unwrap();
    assert_eq!(close_code(&conn).await, SessionErrorCode::InvalidRequestId.code());
    still_serving(&mut h).await;
}

#[tokio::test]
async fn second_control_stream_is_a_protocol_violation() {
    let mut h = start().await;
    let conn = raw_connection(&h).await;
    let _control = send_setup(&conn).await;
    let _again = send_setup(&conn).await;
    assert_eq!(
        close_code(&conn).await,
        SessionErrorCode::ProtocolViolation.code()
    );
    still_serving(&mut h).await;
}

#[tokio::test]
async fn object_above_the_size_limit_is_refused_without_closing_the_session() {
    let mut h = start_with(SessionConfig {
        max_object_size: 1000,
        ..test_config()
    })
    .await;
    let (client, server) = h.pair(TransportKind::Quic).await;
    let publisher = tokio::spawn(async move {
        let Some(Request::Subscribe(request)) = server.accept().await else {
            panic!("expected SUBSCRIBE")
        };
        let writer = request.accept(SubscribeOk::default()).await.unwrap();
        let mut big = writer.open_subgroup(0, 0, None, false).await.unwrap();
        // The write may or may not complete before the subscriber stops the stream.
        let _ = big.write_payload(0, Bytes::from(vec![7u8; 50_000])).await;
        let mut small = writer.open_subgroup(1, 0, None, false).await.unwrap();
        small.write_payload(0, Bytes::from_static(b"fits")).await.unwrap();
        small.finish();
        (server, writer)
    });
    let mut subscription = within("subscribe", client.subscribe(subscribe(0))).await.unwrap();
    let mut refused = false;
    let mut delivered = None;
    while delivered.is_none() {
        let Some(TrackEvent::Subgroup(mut subgroup)) = within("event", subscription.next()).await.unwrap()
        else {
            panic!("expected a subgroup")
        };
        match subgroup.next().await {
            Err(Error::Limit(_)) => refused = true,
            Ok(Some(object)) => delivered = Some((subgroup.group_id(), object.payload)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(refused, "the oversized object was refused");
    assert_eq!(delivered, Some((1, Bytes::from_static(b"fits"))));
    drop(publisher);
}

#[tokio::test]
async fn subgroup_header_alone_with_unknown_alias_is_dropped_not_fatal() {
    let mut h = start_with(SessionConfig {
        orphan_timeout: Duration::from_millis(100),
        ..test_config()
    })
    .await;
    let conn = raw_connection(&h).await;
    let _control = send_setup(&conn).await;
    let header = SubgroupHeader {
        track_alias: 999,
        group_id: 0,
        subgroup_id: SubgroupId::Zero,
        publisher_priority: None,
        properties: false,
        end_of_group: false,
        first_object: false,
    };
    let mut stream = conn.open_uni().await.unwrap();
    stream.write_all(&header.to_bytes(V)).await.unwrap();
    // The server stops the orphan stream once it gives up waiting for the alias.
    let stopped = within("orphan stopped", stream.stopped()).await;
    assert!(matches!(stopped, Ok(Some(_))), "got {stopped:?}");
    assert!(conn.close_reason().is_none(), "the session survives");
    still_serving(&mut h).await;
}

#[tokio::test]
async fn malformed_object_on_a_data_stream_closes_the_session() {
    let mut h = start().await;
    let conn = raw_connection(&h).await;
    let _control = send_setup(&conn).await;
    // PUBLISH a track with alias 5, then a subgroup stream for it whose first object has an
    // empty payload and an Object Status that draft-18 does not define (0x07).
    let publish = banyan_moq::message::Publish {
        request_id: 0,
        track_namespace: TrackNamespace::from_path("live").unwrap(),
        track_name: TrackName::from("video"),
        track_alias: 5,
        parameters: Parameters::default(),
        track_properties: Default::default(),
    };
    let (mut request, _response) = conn.open_bi().await.unwrap();
    request.write_all(&frame(publish)).await.unwrap();
    let server = within("server session", h.sessions.recv()).await.unwrap();
    let Some(Request::Publish(incoming)) = within("PUBLISH", server.accept()).await else {
        panic!("expected PUBLISH")
    };
    let mut subscription = incoming.accept(Default::default()).await.unwrap();

    let header = SubgroupHeader {
        track_alias: 5,
        group_id: 0,
        subgroup_id: SubgroupId::Zero,
        publisher_priority: None,
        properties: false,
        end_of_group: false,
        first_object: false,
    };
    let mut stream = conn.open_uni().await.unwrap();
    let mut bytes = BytesMut::from(&header.to_bytes(V)[..]);
    bytes.put_slice(&[0x00, 0x00, 0x07]); // object id delta 0, payload length 0, status 7
    stream.write_all(&bytes).await.unwrap();

    let Some(TrackEvent::Subgroup(mut subgroup)) = within("subgroup", subscription.next()).await.unwrap()
    else {
        panic!("expected a subgroup")
    };
    let error = within("object", subgroup.next()).await.unwrap_err();
    assert!(matches!(error, Error::Decode(_)), "got {error:?}");
    assert_eq!(
        close_code(&conn).await,
        SessionErrorCode::ProtocolViolation.code()
    );
    still_serving(&mut h).await;
}
