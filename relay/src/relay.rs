//! The relay process: one UDP port for raw QUIC and WebTransport sessions, the internal HTTP
//! listener, and graceful shutdown (GOAWAY, bounded drain, exit).
//!
//! [`Node`] is the relay without sockets: the shared state and the one code path that
//! authorizes, accepts and serves a session. [`Relay`] feeds it the sessions its QUIC endpoint
//! accepts; a test can feed it sessions over any [`Connection`](banyan_moq::session::transport::Connection)
//! (e.g. `banyan_tests::mem`), dialing parents with its own [`Dial`].

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use banyan_certs::{DevOptions, Identity, ServerVerification};
use banyan_control::api::Capacity;
use banyan_moq::coding::SessionErrorCode;
use banyan_moq::session::{
    Client, Incoming, PendingSession, Server, Session, SessionConfig, TransportConfig,
};
use parking_lot::Mutex;
use tokio::sync::{watch, Notify, Semaphore};
use tracing::Instrument;

use crate::auth::{self, Authenticator, Claims};
use crate::config::RelayConfig;
use crate::heartbeat::{self, HeartbeatConfig, Reporter};
use crate::http::{self, HttpState};
use crate::interact::hub::Hub;
use crate::interact::ledger::Ledger;
use crate::interact::InteractConfig;
use crate::metrics::Metrics;
use crate::namespaces::Namespaces;
use crate::request::{SessionHandler, SessionLimits, Shared};
use crate::tasks::Tasks;
use crate::track::forward::ForwardConfig;
use crate::track::{TrackConfig, Tracks};
use crate::upstream::{
    self, Dial, HttpResolver, Parents, ParentsConfig, Resolver, Resolvers, StaticResolver,
};
use banyan_moq::track::Budget;

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
        let session_config = Node::session_config_for(config);
        let transport = TransportConfig {
            max_concurrent_requests: u32::try_from(limits.max_subscriptions_per_session.saturating_add(16))
                .unwrap_or(u32::MAX),
            ..TransportConfig::default()
        };
        let server = Server::bind(server_cfg.listen, tls, &transport, session_config.clone())
            .with_context(|| format!("binding the relay to udp {}", server_cfg.listen))?;
        let http = tokio::net::TcpListener::bind(server_cfg.http_listen)
            .await
            .with_context(|| format!("binding the HTTP listener to {}", server_cfg.http_listen))?;

        let dial = parent_client(config, &session_config)?.map(|client| Arc::new(client) as Arc<dyn Dial>);
        let node = Node::new(config, dial)?;
        let heartbeat = reporter(config, &server, &http, cert_hash.as_deref())?;
        Ok(Self {
            server,
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
            tokio::select! {
                incoming = self.server.accept() => {
                    let Some(incoming) = incoming else { break };
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        shared.metrics.sessions_rejected.inc();
                        tracing::warn!(remote = %incoming.remote_address(), "session limit reached; refusing");
                        incoming.refuse();
                        continue;
                    };
                    let node = self.node.clone();
                    tokio::spawn(async move {
                        serve_connection(incoming, &node).await;
                        drop(permit);
                    });
                }
                _ = &mut shutdown => break,
                () = drain_ordered.notified() => break,
            }
        }

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

/// The relay without sockets: the state every session shares and the code path that
/// authorizes, accepts and serves one session. Cloning it gives another handle to the same
/// relay.
///
/// Its background work (each track's upstream feed, the interaction sweeper once
/// [`start`](Self::start)ed) runs in its relay-wide task set, owned by the node and stopped by
/// [`shutdown`](Self::shutdown); each served session's driver runs inside [`serve`](Self::serve).
#[derive(Debug, Clone)]
pub struct Node {
    shared: Arc<Shared>,
    sessions: Arc<Sessions>,
    gifts: Option<Arc<Ledger>>,
    session_config: SessionConfig,
}

impl Node {
    /// A relay configured by `config` (its listening addresses, certificate and heartbeat
    /// settings are not used), dialing its parents (`--upstream`, `--control`) with `dial`;
    /// with no dialer, parents are unreachable.
    pub fn new(config: &RelayConfig, dial: Option<Arc<dyn Dial>>) -> anyhow::Result<Self> {
        let session_config = Self::session_config_for(config);
        let hop_id = upstream::hop_id(&config.relay_id);
        let (shared, gifts) = shared_state(config, hop_id, dial)?;
        Ok(Self {
            shared,
            sessions: Arc::new(Sessions::default()),
            gifts,
            session_config,
        })
    }

    /// The session settings of the relay's side of its sessions (limits from `config`, its Hop ID).
    fn session_config_for(config: &RelayConfig) -> SessionConfig {
        SessionConfig {
            max_message_size: config.limits.max_message_size,
            max_object_size: config.limits.max_object_size,
            hop_id: Some(upstream::hop_id(&config.relay_id)),
            ..SessionConfig::default()
        }
    }

    /// The session settings to accept this relay's sessions with.
    pub fn session_config(&self) -> &SessionConfig {
        &self.session_config
    }

    /// The relay's counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// Start the relay-wide background work (the interaction sweeper) in the node's task set.
    pub fn start(&self) {
        self.shared.tasks.spawn(self.shared.interact.sweeper());
    }

    /// Authorize `pending` (its SETUP token or `?jwt=`), accept it and serve its requests
    /// until the session ends. Runs the session's driver; returns when the session is over.
    pub async fn serve(&self, pending: PendingSession) {
        serve_session(pending, &self.shared, &self.sessions).await;
    }

    /// Stop the relay-wide background work (track feeds, the sweeper) and refuse new work.
    pub async fn shutdown(&self) {
        self.shared.tasks.shutdown().await;
    }
}

/// How long a live track whose parent was lost keeps trying to reach one (another parent, or
/// the same one back) before it ends for its subscribers: long enough for a control plane to
/// notice a dead relay and route around it, short enough that viewers are not left hanging.
const FAILOVER_WINDOW: Duration = Duration::from_secs(10);

/// The state every session shares: namespaces, tracks, the interaction hub, counters, auth
/// and limits; and the gift ledger, when the relay keeps one.
fn shared_state(
    config: &RelayConfig,
    hop_id: u64,
    dial: Option<Arc<dyn Dial>>,
) -> anyhow::Result<(Arc<Shared>, Option<Arc<Ledger>>)> {
    let auth = match &config.auth.auth_key {
        Some(path) => Some(Authenticator::from_file(path).context("loading the auth key")?),
        None => None,
    };
    let metrics = Arc::new(Metrics::default());
    let namespaces = Arc::new(Namespaces::default());
    let parents = parents(config, hop_id, dial, &metrics)?;
    let tracks = Tracks::new(
        namespaces.clone(),
        parents,
        TrackConfig {
            cache_groups: config.cache.cache_groups,
            rendezvous_max: config.track.rendezvous_max,
            linger: Duration::from_secs(2),
            failover_window: FAILOVER_WINDOW,
        },
        Budget::new(config.cache.cache_bytes),
        metrics.clone(),
    );
    let ledger = match &config.interact.gift_ledger {
        Some(path) => {
            Some(Arc::new(Ledger::open(path).with_context(|| {
                format!("opening the gift ledger {}", path.display())
            })?))
        }
        None => None,
    };
    let interact = Hub::new(
        InteractConfig::from(&config.interact),
        tracks.clone(),
        namespaces.clone(),
        metrics.clone(),
        ledger.clone(),
    );
    let shared = Arc::new(Shared {
        namespaces,
        tracks,
        interact,
        metrics,
        auth,
        limits: SessionLimits::from(&config.limits),
        forward: ForwardConfig {
            max_lag: usize::try_from(config.track.max_lag_groups).unwrap_or(usize::MAX),
            drain: Duration::from_secs(2),
        },
        publisher_takeover: config.publisher_takeover,
        hop_id,
        max_depth: config.upstream.max_depth,
        tasks: Tasks::default(),
    });
    Ok((shared, ledger))
}

/// The heartbeat reporter, with `--control`.
fn reporter(
    config: &RelayConfig,
    server: &Server,
    http: &tokio::net::TcpListener,
    cert_hash: Option<&str>,
) -> anyhow::Result<Option<Reporter>> {
    let heartbeat = match &config.heartbeat.control {
        Some(control) => {
            let urls = heartbeat::relay_urls(
                &config.heartbeat.public_host,
                server.local_addr().context("reading the bound UDP address")?,
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

/// The parent links, when the relay has parents (`--upstream` or `--control`), dialed with
/// `dial`.
fn parents(
    config: &RelayConfig,
    hop_id: u64,
    dial: Option<Arc<dyn Dial>>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Option<Arc<Parents>>> {
    let mut resolvers: Vec<Arc<dyn Resolver>> = Vec::new();
    if let Some(control) = &config.heartbeat.control {
        let resolver = HttpResolver::new(control.clone(), config.relay_id.clone(), Duration::from_secs(2))
            .context("setting up the control plane client")?;
        resolvers.push(Arc::new(resolver));
    }
    if !config.upstream.upstream.is_empty() {
        resolvers.push(Arc::new(StaticResolver::new(config.upstream.upstream.clone())));
    }
    let Some(dial) = dial.filter(|_| !resolvers.is_empty()) else {
        return Ok(None);
    };
    Ok(Some(Parents::new(
        dial,
        Arc::new(Resolvers(resolvers)),
        ParentsConfig {
            hop_id,
            token: config.upstream.upstream_token.clone(),
            retry_after: Duration::from_secs(1),
        },
        metrics.clone(),
    )))
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

/// Live sessions, for GOAWAY at shutdown.
#[derive(Debug, Default)]
struct Sessions {
    map: Mutex<HashMap<u64, Session>>,
    next: AtomicU64,
    changed: tokio::sync::Notify,
}

impl Sessions {
    fn insert(&self, session: Session) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.map.lock().insert(id, session);
        id
    }

    fn remove(&self, id: u64) {
        self.map.lock().remove(&id);
        self.changed.notify_waiters();
    }

    fn len(&self) -> usize {
        self.map.lock().len()
    }

    fn all(&self) -> Vec<Session> {
        self.map.lock().values().cloned().collect()
    }
}

/// Handshake, authorize and serve one connection.
async fn serve_connection(incoming: Incoming, node: &Node) {
    let remote = incoming.remote_address();
    let pending = match incoming.handshake().await {
        Ok(pending) => pending,
        Err(e) => {
            tracing::debug!(%remote, error = %e, "handshake failed");
            return;
        }
    };
    let kind = pending.transport();
    let span = tracing::info_span!("conn", %remote, transport = %kind);
    node.serve(pending).instrument(span).await;
}

/// Authorize, accept and serve one session until it ends (see [`Node::serve`]).
async fn serve_session(pending: PendingSession, shared: &Arc<Shared>, sessions: &Sessions) {
    let kind = pending.transport();
    let claims = match session_claims(&pending, shared) {
        Ok(claims) => claims,
        Err(e) => {
            shared.metrics.auth_failures.inc();
            tracing::info!(error = %e, "session refused: bad token");
            pending.reject(e.session_code(), &e.to_string());
            return;
        }
    };
    let (session, driver) = match pending.accept().await {
        Ok(parts) => parts,
        Err(e) => {
            tracing::debug!(error = %e, "session setup failed");
            return;
        }
    };
    let _gauge = shared.metrics.session_guard(kind);
    shared.metrics.sessions_accepted.inc();
    let id = sessions.insert(session.clone());
    tracing::info!("session started");
    let handler = SessionHandler::new(shared.clone(), session, claims);
    let driver = tokio::spawn(driver.run().in_current_span());
    handler.run().await;
    match driver.await {
        Ok(Err(e)) => tracing::info!(error = %e, "session ended"),
        _ => tracing::info!("session ended"),
    }
    sessions.remove(id);
}

/// Session-level claims from a SETUP AUTHORIZATION TOKEN, or `?jwt=` in the URL for browsers.
/// `Ok(None)` when auth is off or no token was sent (requests may then carry their own).
fn session_claims(pending: &PendingSession, shared: &Shared) -> Result<Option<Claims>, auth::AuthError> {
    let Some(authenticator) = &shared.auth else {
        return Ok(None);
    };
    let token = auth::jwt_from_tokens(&pending.setup().authorization_tokens)
        .or_else(|| pending.url().and_then(auth::token_from_url).map(Ok));
    match token {
        None => Ok(None),
        Some(jwt) => authenticator.verify(&jwt?).map(Some),
    }
}
