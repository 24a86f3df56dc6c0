//! The relay process: one UDP port for raw QUIC and WebTransport sessions, an optional TCP
//! port for QMux over WebSocket (`--ws-listen`), the internal HTTP listener, and graceful
//! shutdown (GOAWAY, bounded drain, exit).
//!
//! [`Node`] is the relay without sockets: the shared state and the one code path that
//! authorizes, accepts and serves a session. [`Relay`] feeds it the sessions its QUIC endpoint
//! accepts; a test can feed it sessions over any [`Connection`](banyan_moq::session::transport::Connection)
//! (e.g. `banyan_tests::mem`), dialing parents with its own [`Dial`].
//!
//! `node.rs` builds the [`Node`] and its shared state; `session.rs` serves one session (and
//! keeps the live ones for GOAWAY).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use banyan_certs::{DevOptions, Identity, ServerVerification};
use banyan_control::api::Capacity;
use banyan_moq::coding::SessionErrorCode;
use banyan_moq::session::{AnyIncoming, Client, Server, SessionConfig, TransportConfig, WsServer};
use tokio::sync::{watch, Notify, Semaphore};

use crate::config::RelayConfig;
use crate::heartbeat::{self, HeartbeatConfig, Reporter};
use crate::http::{self, HttpState};
use crate::metrics::Metrics;
use crate::upstream::Dial;

mod node;
mod session;

pub use node::Node;
use session::{serve_connection, Sessions};

/// Where the relay listens and which certificate it serves (part of [`RelayConfig`]).
#[derive(Debug, Clone, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ServerSettings {
    /// UDP address for MoQT, both raw QUIC (ALPN moqt-18) and WebTransport (HTTP/3) on one port.
    #[arg(long, value_name = "ADDR", default_value = "[::]:4443")]
    pub listen: SocketAddr,

    /// TLS certificate chain (PEM). Needs --tls-key; excludes --dev-cert.
    #[arg(long, value_name = "PEM")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// TLS private key (PEM) for --tls-cert.
    #[arg(long, value_name = "PEM")]
    pub tls_key: Option<std::path::PathBuf>,

    /// Mint a short-lived, browser-acceptable development certificate at start-up, print its
    /// SHA-256 hash and serve it at GET /certificate.sha256. Excludes --tls-cert/--tls-key.
    #[arg(long, value_name = "BOOL", default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub dev_cert: bool,

    /// TCP address of the internal HTTP listener (/metrics, /health, /certificate.sha256).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9090")]
    pub http_listen: SocketAddr,

    /// TCP address for MoQT over WebSocket (QMux, subprotocol qmux-01.moqt-18), for browsers
    /// without WebTransport (Safari, iOS). Off unless set. wss:// with --tls-cert/--tls-key
    /// (browsers accept wss:// only with a certificate they trust), plain ws:// otherwise (for
    /// development on loopback).
    #[arg(long, value_name = "ADDR")]
    pub ws_listen: Option<SocketAddr>,
}

impl ServerSettings {
    /// The TLS certificate and key paths, when a real certificate (not `--dev-cert`) is used.
    pub fn tls_files(&self) -> Option<(&std::path::Path, &std::path::Path)> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) if !self.dev_cert => Some((cert, key)),
            _ => None,
        }
    }
}

/// A bound, ready-to-run relay.
#[derive(Debug)]
pub struct Relay {
    server: Server,
    /// The WebSocket listener, with `--ws-listen`.
    ws: Option<WsServer>,
    http: tokio::net::TcpListener,
    node: Node,
    cert_hash: Option<String>,
    relay_id: String,
    max_sessions: usize,
    drain_timeout: Duration,
    heartbeat: Option<Reporter>,
}

impl Relay {
    /// Bind the QUIC port and the HTTP listener, and load (or mint) the certificate.
    pub async fn bind(config: &RelayConfig) -> anyhow::Result<Self> {
        let (server_cfg, limits) = (&config.server, &config.limits);
        let identity = match (&server_cfg.tls_cert, &server_cfg.tls_key) {
            (Some(cert), Some(key)) => {
                Identity::load_pem(cert, key).context("loading the TLS certificate and key")?
            }
            _ => Identity::mint_dev(&DevOptions::default()).context("minting a development certificate")?,
        };
        let cert_hash = server_cfg.dev_cert.then(|| identity.sha256().to_hex());
        let tls = banyan_certs::server_config(&identity, &[]).context("building the TLS configuration")?;
        // A browser accepts wss:// only with a certificate it trusts, never a development one.
        let ws_tls = server_cfg.tls_files().is_some().then(|| tls.clone());
        let session_config = Node::session_config_for(config);
        let transport = TransportConfig {
            max_concurrent_requests: u32::try_from(limits.max_subscriptions_per_session.saturating_add(16))
                .unwrap_or(u32::MAX),
            ..TransportConfig::default()
        };
        let server = Server::bind(server_cfg.listen, tls, &transport, session_config.clone())
            .with_context(|| format!("binding the relay to udp {}", server_cfg.listen))?;
        let ws = server_cfg
            .ws_listen
            .map(|addr| {
                WsServer::bind(addr, ws_tls, &transport, session_config.clone())
                    .with_context(|| format!("binding the WebSocket listener to tcp {addr}"))
            })
            .transpose()?;
        let http = tokio::net::TcpListener::bind(server_cfg.http_listen)
            .await
            .with_context(|| format!("binding the HTTP listener to {}", server_cfg.http_listen))?;

        let dial = parent_client(config, &session_config)?.map(|client| Arc::new(client) as Arc<dyn Dial>);
        let node = Node::new(config, dial)?;
        let heartbeat = reporter(config, &server, ws.as_ref(), &http, cert_hash.as_deref())?;
        Ok(Self {
            server,
            ws,
            http,
            node,
            cert_hash,
            relay_id: config.relay_id.clone(),
            max_sessions: limits.max_sessions,
            drain_timeout: config.drain_timeout,
            heartbeat,
        })
    }

    /// The UDP address serving MoQT.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.server.local_addr()
    }

    /// The WebSocket listener's address and scheme (`ws` or `wss`), with `--ws-listen`.
    pub fn ws_addr(&self) -> Option<(&'static str, SocketAddr)> {
        let ws = self.ws.as_ref()?;
        Some((ws.scheme(), ws.local_addr().ok()?))
    }

    /// The HTTP listener's address.
    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.http.local_addr()
    }

    /// The development certificate's SHA-256 (hex), when serving one.
    pub fn cert_hash(&self) -> Option<&str> {
        self.cert_hash.as_deref()
    }

    /// The relay's counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.node.metrics()
    }

    /// Serve until `shutdown` resolves (or, with `--control`, the control plane orders a
    /// drain), then send GOAWAY to every session, wait for them to leave (at most the drain
    /// timeout) and return.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        self.node.start();
        let shared = self.node.shared.clone();
        let draining = Arc::new(AtomicBool::new(false));
        let (draining_tx, draining_rx) = watch::channel(false);
        let drain_ordered = Arc::new(Notify::new());
        let heartbeat_task = self.heartbeat.take().map(|reporter| {
            let sources = heartbeat::Sources {
                metrics: shared.metrics.clone(),
                tracks: shared.tracks.clone(),
                namespaces: shared.namespaces.clone(),
            };
            tokio::spawn(reporter.run(sources, draining_rx, drain_ordered.clone()))
        });
        let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
        let state = HttpState {
            metrics: shared.metrics.clone(),
            cert_hash: self.cert_hash.clone(),
            draining: draining.clone(),
            relay_id: self.relay_id.clone(),
            gifts: self.node.gifts.clone(),
        };
        let http_task = tokio::spawn(http::serve(self.http, state, async move {
            let _ = http_stopped.await;
        }));

        let permits = Arc::new(Semaphore::new(self.max_sessions));
        tokio::pin!(shutdown);
        loop {
            let incoming: AnyIncoming = tokio::select! {
                incoming = self.server.accept() => match incoming {
                    Some(incoming) => incoming.into(),
                    None => break,
                },
                incoming = accept_ws(self.ws.as_ref()) => match incoming {
                    Ok(incoming) => incoming.into(),
                    Err(e) => {
                        // Out of descriptors or the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accepting a WebSocket connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
                () = drain_ordered.notified() => break,
            };
            // One admission policy for both listeners: the session limit's permits are shared.
            let remote = incoming.remote_address();
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                shared.metrics.sessions_rejected.inc();
                tracing::warn!(%remote, listener = incoming.listener(), "session limit reached; refusing");
                incoming.refuse();
                continue;
            };
            let node = self.node.clone();
            tokio::spawn(async move {
                serve_connection(remote, incoming.handshake(), &node).await;
                drop(permit);
            });
        }

        // No new WebSocket connections while draining (QUIC's endpoint refuses them in `drain`).
        drop(self.ws.take());
        Self::drain(
            &self.server,
            self.drain_timeout,
            &self.node.sessions,
            &draining,
            &draining_tx,
        )
        .await;
        let _ = http_stop.send(());
        let _ = http_task.await;
        if let Some(task) = heartbeat_task {
            task.abort();
        }
        self.node.shutdown().await;
        Ok(())
    }

    /// Send GOAWAY to every session, wait (at most the drain timeout) for them to leave, then
    /// close the rest and the endpoint.
    async fn drain(
        server: &Server,
        drain_timeout: Duration,
        sessions: &Sessions,
        draining: &AtomicBool,
        draining_tx: &watch::Sender<bool>,
    ) {
        tracing::info!(
            sessions = sessions.len(),
            "shutting down: sending GOAWAY and draining"
        );
        draining.store(true, Ordering::SeqCst);
        draining_tx.send_replace(true);
        for session in sessions.all() {
            let _ = session.goaway("", drain_timeout).await;
        }
        let drained = tokio::time::timeout(drain_timeout, async {
            while sessions.len() > 0 {
                sessions.changed.notified().await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                remaining = sessions.len(),
                "drain timeout; closing remaining sessions"
            );
        }
        for session in sessions.all() {
            session.close(SessionErrorCode::GoawayTimeout, "relay shutting down");
        }
        server.close(0, "relay shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(1), server.wait_idle()).await;
    }
}

/// The next WebSocket connection; never, without a WebSocket listener.
async fn accept_ws(ws: Option<&WsServer>) -> std::io::Result<banyan_moq::session::WsIncoming> {
    match ws {
        Some(ws) => ws.accept().await,
        None => std::future::pending().await,
    }
}

/// The heartbeat reporter, with `--control`.
fn reporter(
    config: &RelayConfig,
    server: &Server,
    ws: Option<&WsServer>,
    http: &tokio::net::TcpListener,
    cert_hash: Option<&str>,
) -> anyhow::Result<Option<Reporter>> {
    let heartbeat = match &config.heartbeat.control {
        Some(control) => {
            let urls = heartbeat::relay_urls(
                &config.heartbeat.public_host,
                server.local_addr().context("reading the bound UDP address")?,
                ws.map(|ws| Ok::<_, anyhow::Error>((ws.scheme(), ws.local_addr()?)))
                    .transpose()
                    .context("reading the bound WebSocket address")?,
                http.local_addr().context("reading the bound HTTP address")?,
            );
            let reporter = Reporter::new(HeartbeatConfig {
                control: control.clone(),
                relay_id: config.relay_id.clone(),
                urls,
                cert_sha256: cert_hash.map(str::to_owned),
                region: config.heartbeat.region.clone(),
                capacity: Capacity {
                    max_viewers: config.capacity_viewers(),
                    egress_bps: config.heartbeat.capacity_egress,
                },
                timeout: Duration::from_secs(2),
            })
            .context("setting up heartbeats to the control plane")?;
            Some(reporter)
        }
        None => None,
    };
    Ok(heartbeat)
}

/// Whether the relay has parents (`--upstream` or `--control`).
fn has_parents(config: &RelayConfig) -> bool {
    config.heartbeat.control.is_some() || !config.upstream.upstream.is_empty()
}

/// The QUIC client that dials parents, when the relay has parents.
fn parent_client(config: &RelayConfig, session_config: &SessionConfig) -> anyhow::Result<Option<Client>> {
    if !has_parents(config) {
        return Ok(None);
    }
    let verification = if config.upstream.upstream_insecure {
        ServerVerification::InsecureSkipVerify
    } else if let Some(ca) = &config.upstream.upstream_ca {
        ServerVerification::CaFile(ca.clone())
    } else {
        ServerVerification::SystemRoots
    };
    let tls = banyan_certs::client_config(&verification, &[]).context(
        "building the TLS configuration for parent relays (see --upstream-ca, --upstream-insecure)",
    )?;
    // A short idle timeout with frequent keep-alives: a parent that dies silently is noticed
    // within --upstream-timeout, which bounds failover.
    let transport = TransportConfig {
        idle_timeout: config.upstream.upstream_timeout,
        keep_alive: config.upstream.upstream_timeout / 4,
        ..TransportConfig::default()
    };
    let client_config = SessionConfig {
        setup_timeout: config.upstream.upstream_timeout * 3,
        ..session_config.clone()
    };
    let client =
        Client::new(tls, &transport, client_config).context("opening the parent-relay client socket")?;
    Ok(Some(client))
}
