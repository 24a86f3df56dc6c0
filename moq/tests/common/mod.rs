//! Loopback harness for session tests: a server on an ephemeral UDP port (raw QUIC and
//! WebTransport) and a WebSocket server on an ephemeral TCP port, with an in-memory development
//! certificate, and clients that pin that certificate.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::time::Duration;

use banyan_certs::{client_config, server_config, DevOptions, Identity, ServerVerification};
use banyan_moq::session::{
    Client, ClientOptions, PendingSession, Server, Session, SessionConfig, SessionDriver, TransportConfig,
    TransportKind, WsServer,
};
use tokio::sync::mpsc;
use url::Url;

pub mod fanout;
pub mod track;

pub struct Harness {
    pub addr: SocketAddr,
    /// The WebSocket server's TCP address (plain `ws://`).
    pub ws_addr: SocketAddr,
    pub client: Client,
    /// Sessions the server accepted, in order.
    pub sessions: mpsc::Receiver<Session>,
    /// Errors from server-side handshakes and drivers, for tests that expect them.
    pub server_errors: mpsc::UnboundedReceiver<banyan_moq::session::Error>,
    pub identity_hash: banyan_certs::CertHash,
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub fn test_config() -> SessionConfig {
    SessionConfig {
        setup_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

/// Start a server whose accepted sessions are delivered on `Harness::sessions`.
pub async fn start() -> Harness {
    start_with(test_config()).await
}

pub async fn start_with(config: SessionConfig) -> Harness {
    init_tracing();
    let identity = Identity::mint_dev(&DevOptions::default()).expect("mint");
    let tls = server_config(&identity, &[]).expect("server tls");
    let server = Server::bind(
        "[::]:0".parse().unwrap(),
        tls,
        &TransportConfig::default(),
        config.clone(),
    )
    .expect("bind");
    let port = server.local_addr().unwrap().port();
    let ws = WsServer::bind(
        "[::]:0".parse().unwrap(),
        None,
        &TransportConfig::default(),
        config.clone(),
    )
    .expect("bind websocket");
    let ws_port = ws.local_addr().unwrap().port();
    let (tx, sessions) = mpsc::channel(64);
    let (etx, server_errors) = mpsc::unbounded_channel();
    let (quic_tx, quic_etx) = (tx.clone(), etx.clone());
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            tokio::spawn(serve(incoming.handshake(), quic_tx.clone(), quic_etx.clone()));
        }
    });
    tokio::spawn(async move {
        while let Ok(incoming) = ws.accept().await {
            tokio::spawn(serve(incoming.handshake(), tx.clone(), etx.clone()));
        }
    });
    let hash = identity.sha256();
    let client_tls = client_config(&ServerVerification::PinnedSha256(vec![hash]), &[]).expect("client tls");
    let client = Client::new(client_tls, &TransportConfig::default(), config).expect("client");
    Harness {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        ws_addr: SocketAddr::from(([127, 0, 0, 1], ws_port)),
        client,
        sessions,
        server_errors,
        identity_hash: hash,
    }
}

/// Complete a server-side handshake, hand the session over and run its driver.
async fn serve(
    handshake: impl std::future::Future<Output = Result<PendingSession, banyan_moq::session::Error>>,
    sessions: mpsc::Sender<Session>,
    errors: mpsc::UnboundedSender<banyan_moq::session::Error>,
) {
    let pending = match handshake.await {
        Ok(p) => p,
        Err(e) => {
            let _ = errors.send(e);
            return;
        }
    };
    match pending.accept().await {
        Ok((session, driver)) => {
            let _ = sessions.send(session).await;
            if let Err(e) = driver.run().await {
                let _ = errors.send(e);
            }
        }
        Err(e) => {
            let _ = errors.send(e);
        }
    }
}

impl Harness {
    pub fn url(&self, kind: TransportKind) -> Url {
        let (scheme, port) = match kind {
            TransportKind::Quic => ("moqt", self.addr.port()),
            TransportKind::WebTransport => ("https", self.addr.port()),
            TransportKind::WebSocket => ("ws", self.ws_addr.port()),
        };
        Url::parse(&format!("{scheme}://localhost:{port}/banyan?room=1")).unwrap()
    }

    /// Connect a client, run its driver, and return it with the server's side.
    pub async fn pair(&mut self, kind: TransportKind) -> (Session, Session) {
        let (client, driver) = self
            .client
            .connect(&self.url(kind), ClientOptions::default())
            .await
            .expect("connect");
        spawn_driver(driver);
        // Skip sessions of other (e.g. deliberately broken) clients accepted earlier. A QUIC
        // session comes from the client's UDP port; a WebSocket one from a TCP port of its own.
        let port = self.client.local_addr().unwrap().port();
        loop {
            let server = tokio::time::timeout(Duration::from_secs(5), self.sessions.recv())
                .await
                .expect("server session in time")
                .expect("server running");
            let ours = match kind {
                TransportKind::WebSocket => server.transport() == kind,
                _ => server.remote_address().port() == port,
            };
            if ours {
                return (client, server);
            }
        }
    }
}

pub fn spawn_driver(driver: SessionDriver) {
    tokio::spawn(async move {
        let _ = driver.run().await;
    });
}

/// moq-transport's name for a transport, for `banyan_tests::moq_rs` (which does not know
/// banyan-moq's types).
pub fn transport(kind: TransportKind) -> banyan_tests::moq_rs::Transport {
    use banyan_tests::moq_rs::Transport;
    match kind {
        TransportKind::Quic => Transport::RawQuic,
        TransportKind::WebTransport => Transport::WebTransport,
        TransportKind::WebSocket => panic!("moq-transport has no WebSocket transport"),
    }
}

/// Wait for a future with a generous bound so a hang fails the test instead of CI.
pub async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}
