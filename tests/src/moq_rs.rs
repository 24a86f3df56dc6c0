//! The independent implementation in the interop tests of banyan-moq and banyan-relay:
//! `moq-transport` 0.17 (cloudflare/moq-rs, draft-18), on its own QUIC endpoints, as a client
//! of a Banyan server or relay ([`connect`]) or as a server for a Banyan client ([`Server`]).
//!
//! It needs web-transport-quinn 0.11, which we reach through its re-export
//! (`moq_transport::session::transport::quinn`); Banyan uses 0.13. Both share one quinn, so the
//! QUIC connections are plain `quinn::Connection`s; the stacks only meet on the wire.
//!
//! The transport is moq-transport's own [`Transport`] (re-exported here): this crate does not
//! depend on banyan-moq, whose tests use it (a dependency would give banyan-moq's tests two
//! incompatible copies of its types), so callers map their `TransportKind` to it.
//!
//! Failures panic with what went wrong: this is test harness code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use banyan_certs::{client_config, server_config, CertHash, DevOptions, Identity, ServerVerification};
use moq_transport::coding::KeyValuePairs;
use moq_transport::session::transport::quinn as wtq;
use moq_transport::session::{Publisher, Session, SessionError, Subscriber};
use tokio::task::JoinHandle;
use url::Url;
use wtq::proto::{ConnectRequest, ConnectResponse};

pub use moq_transport::session::Transport;

/// The draft-18 ALPN for raw QUIC, and the WebTransport protocol we offer and select.
pub const MOQT_ALPN: &str = "moqt-18";
/// WebTransport rides on HTTP/3.
pub const H3_ALPN: &str = "h3";

/// The path moq-transport clients connect to, and [`Server::url`]'s path (the relay does not
/// scope by path).
pub const PATH: &str = "/interop";

/// One established moq-transport session. Its `run()` future is polled on a task (nothing
/// progresses without it) that is aborted when the peer is dropped.
pub struct Peer {
    pub publisher: Publisher,
    pub subscriber: Subscriber,
    pub run: JoinHandle<Result<(), SessionError>>,
    /// Server side only: the path the client asked for (CONNECT `:path` or SETUP PATH).
    pub connection_path: Option<String>,
    /// Server side only: the client's SETUP options.
    pub setup_params: KeyValuePairs,
}

impl Peer {
    fn start(session: Session, publisher: Publisher, subscriber: Subscriber) -> Self {
        let connection_path = session.connection_path().map(str::to_owned);
        let setup_params = session.setup_params().clone();
        Self {
            publisher,
            subscriber,
            run: tokio::spawn(session.run()),
            connection_path,
            setup_params,
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

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("running", &self.is_running())
            .field("connection_path", &self.connection_path)
            .finish_non_exhaustive()
    }
}

/// QUIC settings moq-native-ietf (moq-transport's own endpoint crate) uses.
fn quic_transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(10_000))));
    t.keep_alive_interval(Some(Duration::from_secs(4)));
    Arc::new(t)
}

/// Dial `addr` (a Banyan server or relay, certificate pinned by `hash`) and complete
/// moq-transport's SETUP over `transport`: ALPN `moqt-18`, or `h3` offering `moqt-18` in
/// WT-Available-Protocols.
pub async fn connect(addr: SocketAddr, hash: CertHash, transport: Transport) -> Peer {
    let alpn = match transport {
        Transport::RawQuic => MOQT_ALPN,
        Transport::WebTransport => H3_ALPN,
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
        .expect("QUIC handshake with the Banyan server");
    let session = match transport {
        Transport::RawQuic => {
            // Only metadata: host:port becomes SETUP AUTHORITY, the path SETUP PATH.
            let url = Url::parse(&format!("moqt://localhost:{}{PATH}", addr.port())).unwrap();
            wtq::Session::raw(conn, url, ConnectResponse::default())
        }
        Transport::WebTransport => {
            let url = Url::parse(&format!("https://localhost:{}{PATH}", addr.port())).unwrap();
            let session = wtq::Session::connect(conn, ConnectRequest::new(url).with_protocol(MOQT_ALPN))
                .await
                .expect("WebTransport CONNECT to the Banyan server");
            assert_eq!(
                session.response().protocol.as_deref(),
                Some(MOQT_ALPN),
                "the Banyan server selects moqt-18 in WT-Protocol"
            );
            session
        }
    };
    let (session, publisher, subscriber) = Session::connect(session.into(), None, transport)
        .await
        .expect("moq-transport SETUP with the Banyan server");
    Peer::start(session, publisher, subscriber)
}

/// A moq-transport server: one UDP port offering `h3` and `moqt-18`, like moq-native-ietf,
/// with a freshly minted development certificate (pin [`Server::hash`]).
pub struct Server {
    endpoint: quinn::Endpoint,
    pub addr: SocketAddr,
    pub hash: CertHash,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("hash", &self.hash.to_string())
            .finish_non_exhaustive()
    }
}

impl Server {
    pub fn start() -> Self {
        let identity = Identity::mint_dev(&DevOptions::default()).expect("mint");
        let tls = server_config(&identity, &[H3_ALPN.as_bytes(), MOQT_ALPN.as_bytes()]).expect("server tls");
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).expect("quic server tls");
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config.transport_config(quic_transport());
        let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).expect("bind");
        let addr = endpoint.local_addr().unwrap();
        Self {
            endpoint,
            addr,
            hash: identity.sha256(),
        }
    }

    /// The URL a Banyan client dials for `transport`.
    pub fn url(&self, transport: Transport) -> Url {
        let scheme = match transport {
            Transport::RawQuic => "moqt",
            Transport::WebTransport => "https",
        };
        Url::parse(&format!("{scheme}://127.0.0.1:{}{PATH}", self.addr.port())).unwrap()
    }

    /// Accept one connection and complete moq-transport's side of SETUP. The transport is
    /// chosen by the negotiated ALPN and must be `transport`.
    pub async fn accept(&self, transport: Transport) -> Peer {
        let conn = self
            .endpoint
            .accept()
            .await
            .expect("endpoint open")
            .await
            .expect("QUIC handshake with the Banyan client");
        let alpn = conn
            .handshake_data()
            .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|h| h.protocol)
            .expect("negotiated ALPN");
        let session = match (transport, alpn.as_slice()) {
            (Transport::RawQuic, a) if a == MOQT_ALPN.as_bytes() => {
                // A path-less URL: moq-transport then takes the path from SETUP PATH.
                wtq::Session::raw(
                    conn,
                    Url::parse("moqt://localhost").unwrap(),
                    ConnectResponse::default(),
                )
            }
            (Transport::WebTransport, a) if a == H3_ALPN.as_bytes() => {
                let request = wtq::Request::accept(conn)
                    .await
                    .expect("HTTP/3 SETTINGS and CONNECT");
                assert!(
                    request.protocols.iter().any(|p| p == MOQT_ALPN),
                    "the Banyan client offers moqt-18 in WT-Available-Protocols: {:?}",
                    request.protocols
                );
                request
                    .respond(ConnectResponse::OK.with_protocol(MOQT_ALPN))
                    .await
                    .expect("CONNECT response")
            }
            (transport, other) => panic!(
                "{transport:?} client negotiated ALPN {:?}",
                String::from_utf8_lossy(other)
            ),
        };
        let (session, publisher, subscriber) = Session::accept(session.into(), None, transport)
            .await
            .expect("moq-transport SETUP with the Banyan client");
        Peer::start(
            session,
            publisher.expect("server publisher"),
            subscriber.expect("server subscriber"),
        )
    }
}
