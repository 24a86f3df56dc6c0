//! The other implementation in the interop tests: `moq-transport` 0.17 (cloudflare/moq-rs,
//! draft-18), on its own QUIC endpoints, as a client of our server or as a server for our
//! client. It needs web-transport-quinn 0.11, which we reach through its re-export
//! (`moq_transport::session::transport::quinn`); ours is 0.13. Both share one quinn, so
//! the QUIC connections are plain `quinn::Connection`s; the stacks only meet on the wire.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use banyan_certs::{client_config, server_config, CertHash, DevOptions, Identity, ServerVerification};
use banyan_moq::session::TransportKind;
use moq_transport::coding::KeyValuePairs;
use moq_transport::session::transport::quinn as wtq;
use moq_transport::session::{Publisher, Session, SessionError, Subscriber, Transport};
use tokio::task::JoinHandle;
use url::Url;
use wtq::proto::{ConnectRequest, ConnectResponse};

/// The draft-18 ALPN for raw QUIC, and the WebTransport protocol we offer and select.
pub const MOQT_ALPN: &str = "moqt-18";
/// WebTransport rides on HTTP/3.
pub const H3_ALPN: &str = "h3";

/// The path moq-transport clients connect to.
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

/// QUIC settings moq-native-ietf (moq-transport's own endpoint crate) uses.
fn quic_transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(10_000))));
    t.keep_alive_interval(Some(Duration::from_secs(4)));
    Arc::new(t)
}

/// Dial `addr` (our server, certificate pinned by `hash`) and complete moq-transport's
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
        .expect("QUIC handshake with our server");
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
                .expect("WebTransport CONNECT to our server");
            assert_eq!(
                session.response().protocol.as_deref(),
                Some(MOQT_ALPN),
                "our server selects moqt-18 in WT-Protocol"
            );
            session
        }
    };
    let (session, publisher, subscriber) = Session::connect(session.into(), None, transport(kind))
        .await
        .expect("moq-transport SETUP with our server");
    Peer::start(session, publisher, subscriber)
}

/// A moq-transport server: one UDP port offering `h3` and `moqt-18`, like moq-native-ietf.
pub struct Server {
    endpoint: quinn::Endpoint,
    pub addr: SocketAddr,
    pub hash: CertHash,
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

    /// The URL our client dials for `kind`.
    pub fn url(&self, kind: TransportKind) -> Url {
        let scheme = match kind {
            TransportKind::Quic => "moqt",
            TransportKind::WebTransport => "https",
        };
        Url::parse(&format!("{scheme}://127.0.0.1:{}{PATH}", self.addr.port())).unwrap()
    }

    /// Accept one connection and complete moq-transport's side of SETUP. The transport is
    /// chosen by the negotiated ALPN and must be `kind`.
    pub async fn accept(&self, kind: TransportKind) -> Peer {
        let conn = self
            .endpoint
            .accept()
            .await
            .expect("endpoint open")
            .await
            .expect("QUIC handshake with our client");
        let alpn = conn
            .handshake_data()
            .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|h| h.protocol)
            .expect("negotiated ALPN");
        let session = match (kind, alpn.as_slice()) {
            (TransportKind::Quic, a) if a == MOQT_ALPN.as_bytes() => {
                // A path-less URL: moq-transport then takes the path from SETUP PATH.
                wtq::Session::raw(
                    conn,
                    Url::parse("moqt://localhost").unwrap(),
                    ConnectResponse::default(),
                )
            }
            (TransportKind::WebTransport, a) if a == H3_ALPN.as_bytes() => {
                let request = wtq::Request::accept(conn)
                    .await
                    .expect("HTTP/3 SETTINGS and CONNECT");
                assert!(
                    request.protocols.iter().any(|p| p == MOQT_ALPN),
                    "our client offers moqt-18 in WT-Available-Protocols: {:?}",
                    request.protocols
                );
                request
                    .respond(ConnectResponse::OK.with_protocol(MOQT_ALPN))
                    .await
                    .expect("CONNECT response")
            }
            (kind, other) => panic!(
                "{kind} client negotiated ALPN {:?}",
                String::from_utf8_lossy(other)
            ),
        };
        let (session, publisher, subscriber) = Session::accept(session.into(), None, transport(kind))
            .await
            .expect("moq-transport SETUP with our client");
        Peer::start(
            session,
            publisher.expect("server publisher"),
            subscriber.expect("server subscriber"),
        )
    }
}
