//! [`Node`]: the relay without sockets, and the shared state it is built from.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use banyan_moq::coding::SessionErrorCode;
use banyan_moq::session::{PendingSession, SessionConfig};

use super::session::{serve_session, Sessions};
use crate::auth::Authenticator;
use crate::config::RelayConfig;
use crate::interact::hub::Hub;
use crate::interact::ledger::Ledger;
use crate::interact::InteractConfig;
use crate::metrics::Metrics;
use crate::namespaces::Namespaces;
use crate::request::{SessionLimits, Shared};
use crate::tasks::Tasks;
use crate::track::forward::ForwardConfig;
use crate::track::{TrackConfig, Tracks};
use crate::upstream::{
    self, Dial, HttpResolver, Parents, ParentsConfig, Resolver, Resolvers, StaticResolver,
};
use banyan_moq::track::Budget;

/// The relay without sockets: the state every session shares and the code path that
/// authorizes, accepts and serves one session. Cloning it gives another handle to the same
/// relay.
///
/// Its background work (each track's upstream feed, the interaction sweeper once
/// [`start`](Self::start)ed) runs in its relay-wide task set, owned by the node and stopped by
/// [`shutdown`](Self::shutdown); each served session's driver runs inside [`serve`](Self::serve).
#[derive(Debug, Clone)]
pub struct Node {
    pub(super) shared: Arc<Shared>,
    pub(super) sessions: Arc<Sessions>,
    pub(super) gifts: Option<Arc<Ledger>>,
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
    pub(super) fn session_config_for(config: &RelayConfig) -> SessionConfig {
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

    /// End every live session whose token names `subject` (its `sub` claim) with `code` and
    /// `reason` through [`auth::end_session`](crate::auth::end_session), the path token expiry
    /// takes: their subscriptions and requests stop at once. Returns how many were ended.
    /// For moderation (a ban ends the banned viewer's sessions) and revocation.
    pub fn end_sessions_of(&self, subject: &str, code: SessionErrorCode, reason: &str) -> usize {
        let sessions = self.sessions.of_subject(subject);
        for session in &sessions {
            crate::auth::end_session(session, code, reason);
        }
        sessions.len()
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
            latency_budget: config.track.latency_budget.0,
        },
        publisher_takeover: config.publisher_takeover,
        hop_id,
        max_depth: config.upstream.max_depth,
        tasks: Tasks::default(),
    });
    Ok((shared, ledger))
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
