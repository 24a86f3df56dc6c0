//! The independent implementation in the relay's interop tests: `moq-transport` 0.17
//! (cloudflare/moq-rs, draft-18) as a client of banyan-relay, on its own QUIC endpoint.
//! Adapted from banyan-moq's `tests/common/moq_rs.rs` (test helpers cannot be shared across
//! crates); the relay only needs the client half. It needs web-transport-quinn 0.11, which
//! we reach through its re-export (`moq_transport::session::transport::quinn`); ours is 0.13.
//! Both share one quinn, so the QUIC connections are plain `quinn::Connection`s; the stacks
//! only meet on the wire.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use banyan_certs::{client_config, CertHash, ServerVerification};
use banyan_moq::session::TransportKind;
use moq_transport::session::transport::quinn as wtq;
use moq_transport::session::{Publisher, Session, SessionError, Subscriber, Transport};
use tokio::task::JoinHandle;
use url::Url;
use wtq::proto::{ConnectRequest, ConnectResponse};

/// The draft-18 ALPN for raw QUIC, and the WebTransport protocol we offer and select.
pub const MOQT_ALPN: &str = "moqt-18";
/// WebTransport rides on HTTP/3.
pub const H3_ALPN: &str = "h3";

/// The path moq-transport clients connect to (the relay does not scope by path).
pub const PATH: &str = "/interop";

/// moq-transport's name for a transport.
pub fn transport(kind: TransportKind) -> Transport {
    match kind {
        TransportKind::Quic => Transport::RawQuic,
        TransportKind::WebTransport => Transport::WebTransport,
    }
}

/// One established moq-transport session. Its `run()` future is polled on a task (nothing
/// progresses without it) that is aborted when the peer is dropped.
pub struct Peer {
    pub publisher: Publisher,
    pub subscriber: Subscriber,
    pub run: JoinHandle<Result<(), SessionError>>,
}

impl Peer {
    fn start(session: Session, publisher: Publisher, subscriber: Subscriber) -> Self {
        Self {
            publisher,
            subscriber,
            run: tokio::spawn(session.run()),
        }
    }

    /// Whether moq-transport's session is still running (it ends on any session error).
    pub fn is_running(&self) -> bool {
        !self.run.is_finished()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.run.abort();
    }
}

/// QUIC settings moq-native-ietf (moq-transport's own endpoint crate) uses.
fn quic_transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(10_000))));
    t.keep_alive_interval(Some(Duration::from_secs(4)));
    Arc::new(t)
}

/// Dial `addr` (the relay, certificate pinned by `hash`) and complete moq-transport's
/// SETUP over `kind`: ALPN `moqt-18`, or `h3` offering `moqt-18` in WT-Available-Protocols.
pub async fn connect(addr: SocketAddr, hash: CertHash, kind: TransportKind) -> Peer {
    let alpn = match kind {
        TransportKind::Quic => MOQT_ALPN,
        TransportKind::WebTransport => H3_ALPN,
    };
    let tls =
        client_config(&ServerVerification::PinnedSha256(vec![hash]), &[alpn.as_bytes()]).expect("client tls");
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic client tls");
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(quic_transport());
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).expect("client endpoint");
    let conn = endpoint
        .connect_with(config, addr, "localhost")
        .unwrap()
        .await
        .expect("QUIC handshake with the relay");
    let session = match kind {
        TransportKind::Quic => {
            // Only metadata: host:port becomes SETUP AUTHORITY, the path SETUP PATH.
            let url = Url::parse(&format!("moqt://localhost:{}{PATH}", addr.port())).unwrap();
            wtq::Session::raw(conn, url, ConnectResponse::default())
        }
        TransportKind::WebTransport => {
            let url = Url::parse(&format!("https://localhost:{}{PATH}", addr.port())).unwrap();
            let session = wtq::Session::connect(conn, ConnectRequest::new(url).with_protocol(MOQT_ALPN))
                .await
                .expect("WebTransport CONNECT to the relay");
            assert_eq!(
                session.response().protocol.as_deref(),
                Some(MOQT_ALPN),
                "the relay selects moqt-18 in WT-Protocol"
            );
            session
        }
    };
    let (session, publisher, subscriber) = Session::connect(session.into(), None, transport(kind))
        .await
        .expect("moq-transport SETUP with the relay");
    Peer::start(session, publisher, subscriber)
}
