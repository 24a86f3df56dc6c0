//! Proves that hostile or broken WebSocket peers get a clear answer and never hurt the server:
//! an upgrade without our subprotocol is refused with 400 naming `qmux-01.moqt-18`, a plain
//! HTTP request is turned away, a text message closes the WebSocket with 1003, a malformed QMux
//! record and a flow-control violation close the session with a QMux CONNECTION_CLOSE, an
//! oversized message drops the connection, and after each the server still serves a
//! well-behaved WebSocket client.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use banyan_moq::session::TransportKind;
use bytes::{BufMut, Bytes, BytesMut};
use common::{start, within, Harness};
use futures::{SinkExt, StreamExt};
use qmux::ws::tokio_tungstenite::tungstenite::client::IntoClientRequest;
use qmux::ws::tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use qmux::ws::tokio_tungstenite::tungstenite::{self, Message};
use qmux::ws::tokio_tungstenite::{self as tokio_tungstenite, MaybeTlsStream, WebSocketStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// QMux's first frame: QX_TRANSPORT_PARAMETERS (type 0x3f5153300d0a0d0a).
const QX_TRANSPORT_PARAMETERS: u64 = 0x3f51_5330_0d0a_0d0a;
/// QUIC's CONNECTION_CLOSE (transport) frame type.
const CONNECTION_CLOSE: u64 = 0x1c;

/// A QUIC variable-length integer (RFC 9000 §16).
fn varint(buf: &mut BytesMut, v: u64) {
    match v {
        0..=0x3f => buf.put_u8(v as u8),
        0x40..=0x3fff => buf.put_u16(0x4000 | v as u16),
        0x4000..=0x3fff_ffff => buf.put_u32(0x8000_0000 | v as u32),
        _ => buf.put_u64(0xc000_0000_0000_0000 | v),
    }
}

fn read_varint(data: &[u8]) -> Option<(u64, usize)> {
    let first = *data.first()?;
    let len = 1usize << (first >> 6);
    let bytes = data.get(..len)?;
    let mut v = u64::from(first & 0x3f);
    for b in &bytes[1..] {
        v = (v << 8) | u64::from(*b);
    }
    Some((v, len))
}

/// Open a WebSocket to the harness offering `protocols`.
async fn open(h: &Harness, protocols: &str) -> Result<Ws, tungstenite::Error> {
    let mut request = format!("ws://127.0.0.1:{}/banyan", h.ws_addr.port())
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocols.parse().unwrap());
    tokio_tungstenite::connect_async(request).await.map(|(ws, _)| ws)
}

/// An empty QX_TRANSPORT_PARAMETERS frame (the defaults), as the first record.
fn transport_parameters() -> Bytes {
    let mut buf = BytesMut::new();
    varint(&mut buf, QX_TRANSPORT_PARAMETERS);
    varint(&mut buf, 0);
    buf.freeze()
}

/// Read the server's messages until it closes; the error code of its QMux CONNECTION_CLOSE.
async fn transport_close_code(ws: &mut Ws) -> u64 {
    within("the server closes the session", async {
        while let Some(message) = ws.next().await {
            let Ok(Message::Binary(data)) = message else {
                continue;
            };
            if let Some((CONNECTION_CLOSE, n)) = read_varint(&data) {
                return read_varint(&data[n..]).expect("an error code").0;
            }
        }
        panic!("the WebSocket ended without a QMux CONNECTION_CLOSE")
    })
    .await
}

/// A well-behaved client still gets a session over WebSocket.
async fn still_serving(h: &mut Harness) {
    let (client, server) = h.pair(TransportKind::WebSocket).await;
    assert_eq!(client.transport(), TransportKind::WebSocket);
    assert_eq!(server.transport(), TransportKind::WebSocket);
}

#[tokio::test]
async fn an_upgrade_without_our_subprotocol_is_refused_naming_ours() {
    let mut h = start().await;
    match open(&h, "qmux-01.moq-lite-04, webtransport").await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 400);
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned();
            assert!(body.contains("qmux-01.moqt-18"), "{body}");
        }
        Err(other) => panic!("expected a 400 answer, got {other}"),
        Ok(_) => panic!("an upgrade without qmux-NN.moqt-18 was accepted"),
    }
    still_serving(&mut h).await;
}

#[tokio::test]
async fn a_plain_http_request_is_turned_away() {
    let mut h = start().await;
    let mut tcp = tokio::net::TcpStream::connect(h.ws_addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    within("the server answers and closes", tcp.read_to_end(&mut answer))
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "a plain GET gets a 4xx or nothing: {answer:?}"
    );
    still_serving(&mut h).await;
}

#[tokio::test]
async fn a_text_message_closes_the_websocket_with_1003() {
    let mut h = start().await;
    let mut ws = open(&h, "qmux-01.moqt-18").await.expect("upgrade");
    ws.send(Message::Binary(transport_parameters())).await.unwrap();
    ws.send(Message::Text("hello".into())).await.unwrap();
    let code = within("the server closes the WebSocket", async {
        while let Some(message) = ws.next().await {
            match message {
                Ok(Message::Close(frame)) => return frame.map(|f| f.code),
                Ok(_) => continue,
                Err(e) => panic!("expected a close frame, got {e}"),
            }
        }
        None
    })
    .await;
    assert_eq!(code, Some(CloseCode::Unsupported));
    still_serving(&mut h).await;
}

#[tokio::test]
async fn a_malformed_record_is_a_transport_close() {
    let mut h = start().await;
    let mut ws = open(&h, "qmux-01.moqt-18").await.expect("upgrade");
    // Not QX_TRANSPORT_PARAMETERS first, and not a frame type at all.
    ws.send(Message::Binary(Bytes::from_static(&[0x1f, 0xff, 0x00])))
        .await
        .unwrap();
    // QMux answers every protocol violation with CONNECTION_CLOSE 1002 (as the browser
    // polyfill does).
    assert_eq!(transport_close_code(&mut ws).await, 1002);
    still_serving(&mut h).await;
}

#[tokio::test]
async fn data_beyond_the_flow_control_window_closes_the_session() {
    let mut h = start().await;
    let mut ws = open(&h, "qmux-01.moqt-18").await.expect("upgrade");
    ws.send(Message::Binary(transport_parameters())).await.unwrap();
    // Our first bidirectional stream (id 0): before SETUP nobody reads it, so everything sent
    // stays buffered at the server, which grants 4 MiB per stream (TransportConfig's default).
    // Send more than that, in records of 16,000 bytes.
    let chunk = vec![0u8; 16_000];
    let mut offset = 0u64;
    while offset <= 4 * 1024 * 1024 {
        let mut frame = BytesMut::new();
        varint(&mut frame, 0x0e); // STREAM with OFF and LEN
        varint(&mut frame, 0);
        varint(&mut frame, offset);
        varint(&mut frame, chunk.len() as u64);
        frame.put_slice(&chunk);
        if ws.send(Message::Binary(frame.freeze())).await.is_err() {
            break; // the server closed while we were still sending
        }
        offset += chunk.len() as u64;
    }
    assert_eq!(transport_close_code(&mut ws).await, 1002);
    still_serving(&mut h).await;
}

#[tokio::test]
async fn an_oversized_message_drops_the_connection() {
    let mut h = start().await;
    let mut ws = open(&h, "qmux-01.moqt-18").await.expect("upgrade");
    ws.send(Message::Binary(transport_parameters())).await.unwrap();
    // Records are at most 16 KiB; the server reads no message above 64 KiB.
    let _ = ws.send(Message::Binary(Bytes::from(vec![0u8; 256 * 1024]))).await;
    // `within` allows 10 s, a third of the idle timeout: the server dropped it for the size.
    within("the server drops the connection", async {
        while let Some(message) = ws.next().await {
            if message.is_err() || matches!(message, Ok(Message::Close(_))) {
                return;
            }
        }
    })
    .await;
    still_serving(&mut h).await;
}
