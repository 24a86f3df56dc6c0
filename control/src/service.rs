//! [`Control`]: the service — the HTTP listener plus the control loop (expiry, autoscaler,
//! spawner supervision), run by the caller until a shutdown future resolves.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::autoscale::{Action, Autoscaler};
use crate::config::{ControlConfig, SpawnerKind};
use crate::history::History;
use crate::http::{assignment_limiter, router, Shared};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::spawner::process::{sibling_relay_binary, ProcessConfig, ProcessSpawner};
use crate::spawner::{SpawnError, Spawner};
use crate::token::{Minter, TokenError};

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Binding or serving the HTTP listener failed.
    #[error("HTTP listener on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// The token key could not be loaded.
    #[error("auth key: {0}")]
    Key(#[from] TokenError),
    /// The spawner could not be set up.
    #[error("spawner: {0}")]
    Spawner(#[from] SpawnError),
    /// A `--moderator` entry is not BROADCAST=USER.
    #[error("{0}")]
    Moderator(String),
}

/// The control plane service, bound and ready to [`run`](Control::run).
pub struct Control {
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    autoscaler: Autoscaler,
    spawner: Option<Arc<dyn Spawner>>,
    tick: Duration,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("listener", &self.listener)
            .field("spawner", &self.spawner)
            .finish_non_exhaustive()
    }
}

impl Control {
    /// Bind the listener and set up the key and the spawner named in `config`.
    pub async fn bind(config: &ControlConfig) -> Result<Self, ControlError> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| ControlError::Listen {
                addr: config.listen.to_string(),
                source,
            })?;
        let local = listener.local_addr().map_err(|source| ControlError::Listen {
            addr: config.listen.to_string(),
            source,
        })?;
        let minter = config
            .token
            .auth_key
            .as_deref()
            .map(Minter::from_file)
            .transpose()?;
        let spawner: Option<Arc<dyn Spawner>> = match config.spawn.spawner {
            SpawnerKind::None => None,
            SpawnerKind::Process => {
                let binary = config
                    .spawn
                    .relay_binary
                    .clone()
                    .or_else(sibling_relay_binary)
                    .unwrap_or_else(|| "banyan-relay".into());
                let dir = match &config.spawn.spawn_dir {
                    Some(dir) => dir.clone(),
                    None => std::env::temp_dir().join(format!("banyan-control-{}", std::process::id())),
                };
                let mut process = ProcessConfig::new(binary, config.control_url(local), dir);
                process.region = config.spawn.spawn_region.clone();
                process.capacity_viewers = config.spawn.spawn_capacity_viewers;
                process.host = config.spawn.spawn_host.clone();
                process.extra_args = config.spawn.spawn_relay_arg.clone();
                process.auth_key = config.token.auth_key.clone();
                match ProcessSpawner::new(process) {
                    Ok(s) => Some(Arc::new(s)),
                    Err(e) => {
                        tracing::warn!(error = %e, "process spawner unavailable; the fleet will not grow");
                        None
                    }
                }
            }
            SpawnerKind::Kubernetes => kubernetes_spawner(config).await?,
        };
        let shared = Arc::new(Shared {
            registry: Mutex::new(Registry::new(config.placement.clone())),
            minter,
            token_ttl: config.token.token_ttl,
            publish_token_ttl: config.token.publish_token_ttl,
            moderators: crate::token::Moderators::parse(&config.token.moderator)
                .map_err(ControlError::Moderator)?,
            limiter: assignment_limiter(config.watch_rate, config.watch_burst),
            metrics: Metrics::default(),
            history: Mutex::new(History::new(HISTORY_INTERVAL, HISTORY_SPAN, Instant::now())),
        });
        Ok(Self {
            listener,
            shared,
            autoscaler: Autoscaler::new(config.autoscale()),
            spawner,
            tick: config.tick,
        })
    }

    /// Use `spawner` instead of the one from the configuration (tests, embedders).
    pub fn with_spawner(mut self, spawner: Option<Arc<dyn Spawner>>) -> Self {
        self.spawner = spawner;
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The state the handlers share (registry, metrics).
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Serve until `shutdown` resolves; then stop every spawned relay.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ControlError> {
        let Control {
            listener,
            shared,
            mut autoscaler,
            spawner,
            tick,
        } = self;
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let app = router(shared.clone());
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let control_loop = async {
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = interval.tick() => step(&shared, &mut autoscaler, spawner.as_deref(), Instant::now()).await,
                    _ = stop_rx.changed() => break,
                }
            }
        };
        let (served, ()) = tokio::join!(async { server.await }, control_loop);
        if let Some(spawner) = &spawner {
            for id in spawner.running() {
                let _ = spawner.stop(id).await;
            }
        }
        served.map_err(|source| ControlError::Listen { addr, source })
    }
}

/// One sample of the fleet per second for the status page's graphs, ten minutes of them
/// (600 samples of a few hundred bytes).
const HISTORY_INTERVAL: Duration = Duration::from_secs(1);
const HISTORY_SPAN: Duration = Duration::from_secs(600);

/// One pass of the control loop at `now`.
async fn step(shared: &Shared, autoscaler: &mut Autoscaler, spawner: Option<&dyn Spawner>, now: Instant) {
    let actions = {
        let mut registry = shared.registry.lock();
        let expired = registry.expire(now);
        shared.metrics.expired.inc_by(expired.len() as u64);
        let joins = registry.take_joins();
        let fleet = registry.fleet();
        let actions = autoscaler.tick(now, &joins, &fleet);
        registry.set_join_rates(autoscaler.join_rates().clone());
        let mut history = shared.history.lock();
        if history.due(now) {
            history.record(&registry.status(now), now);
        }
        actions
    };
    // Whole milliseconds, as this gauge has always been exported.
    let ttf = autoscaler
        .time_to_full()
        .map(|d| d.as_millis() as f64 / 1000.0)
        .unwrap_or(0.0);
    shared.metrics.time_to_full.set(ttf);
    for action in actions {
        match action {
            Action::Replicate { broadcast, relay } => {
                tracing::info!(%broadcast, %relay, "replicating ahead of demand");
                Metrics::inc(&shared.metrics.replications);
                shared.registry.lock().designate(&broadcast, &relay, now);
            }
            Action::Drain { relay } => {
                tracing::info!(%relay, "draining idle spawned relay");
                if let Some(spawner) = spawner {
                    spawner.expect_exit(&relay);
                }
                if shared.registry.lock().order_drain(&relay) {
                    Metrics::inc(&shared.metrics.drains);
                }
            }
            Action::Spawn { count } => {
                let Some(spawner) = spawner else { continue };
                for _ in 0..count {
                    match spawner.spawn().await {
                        Ok(id) => {
                            tracing::info!(relay = %id, backend = spawner.name(), "spawned relay");
                            Metrics::inc(&shared.metrics.spawned);
                            autoscaler.spawned(&id, now);
                            shared.registry.lock().mark_spawned(&id);
                        }
                        Err(e) => {
                            Metrics::inc(&shared.metrics.spawn_failures);
                            tracing::warn!(error = %e, "spawning a relay failed");
                        }
                    }
                }
            }
            Action::Stop { relay } => {
                if let Some(spawner) = spawner {
                    match spawner.stop(relay.clone()).await {
                        // Already exited after its drain and reaped.
                        Ok(()) | Err(SpawnError::Unknown(_)) => {}
                        Err(e) => tracing::warn!(%relay, error = %e, "stopping a relay failed"),
                    }
                }
                Metrics::inc(&shared.metrics.stopped);
                autoscaler.stopped(&relay);
                shared.registry.lock().forget(&relay);
            }
        }
    }
    if let Some(spawner) = spawner {
        if let Err(e) = spawner.supervise().await {
            tracing::warn!(error = %e, "supervising relays");
        }
    }
}

#[cfg(feature = "kubernetes")]
async fn kubernetes_spawner(config: &ControlConfig) -> Result<Option<Arc<dyn Spawner>>, ControlError> {
    let spawner = crate::spawner::kubernetes::KubernetesSpawner::in_cluster(
        &config.spawn.k8s_namespace,
        &config.spawn.k8s_statefulset,
    )
    .await?;
    Ok(Some(Arc::new(spawner)))
}

#[cfg(not(feature = "kubernetes"))]
async fn kubernetes_spawner(_config: &ControlConfig) -> Result<Option<Arc<dyn Spawner>>, ControlError> {
    Err(ControlError::Spawner(SpawnError::Backend(
        "built without the `kubernetes` feature".into(),
    )))
}
