//! Heartbeats to the control plane (`--control`): the relay side of the contract in
//! [`banyan_control::api`].
//!
//! Every interval (1 s at first, then the `interval_ms` of the last answer) a [`Reporter`]
//! POSTs a [`Heartbeat`] to `{control}/v1/relays/heartbeat`: the relay's URLs, certificate hash,
//! region and capacity (from its flags), its load (sessions, egress and CPU over the last
//! interval), the broadcasts it carries with their viewers, the parents it pulls them from, and
//! whether it is draining. The control plane rebuilds its whole view of the fleet from these.
//!
//! An answer with `drain: true` orders a drain: the reporter notifies the relay, which shuts
//! down exactly as on SIGTERM (GOAWAY, bounded drain, exit). A failed heartbeat is logged (a
//! warning at most every [`WARN_EVERY`]) and retried at the next interval; it never stops the
//! relay.
//!
//! The rate arithmetic is pure ([`LoadSampler`], [`broadcasts`], [`relay_urls`]) so it is
//! tested without a clock, a socket or `/proc`.

use std::sync::Arc;
use std::time::Duration;

use banyan_control::api::{
    Capacity, ErrorBody, Heartbeat, HeartbeatResponse, Load, RelayUrls, HEARTBEAT_PATH,
};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use url::Url;

use crate::interact::hub::chat_room;
use crate::metrics::Metrics;
use crate::namespaces::Namespaces;
use crate::track::Tracks;

mod load;
mod summary;
#[cfg(test)]
mod tests;
mod warn;

use load::process_cpu_ticks;
pub use load::{bits_per_second, cores, parse_cpu_ticks, LoadSampler};
pub use summary::{broadcasts, relay_urls, TrackSummary};
use warn::WarnLimiter;

/// The control plane and what the relay tells it about itself (part of
/// [`RelayConfig`](crate::config::RelayConfig)).
#[derive(Debug, Clone, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
// Listed in --help after --upstream (display order 5), as they always were.
#[command(next_display_order = 6)]
pub struct HeartbeatSettings {
    /// The control plane (an http:// base URL). The relay asks it for parents:
    /// GET {control}/v1/route/{namespace}?relay={relay-id} → {"upstream": [URL, ...]}, and
    /// reports to it every interval: POST {control}/v1/relays/heartbeat (its URLs, capacity,
    /// load, broadcasts, parents); a response with "drain": true drains the relay like SIGTERM.
    #[arg(long, value_name = "URL", value_parser = crate::config::parse_control)]
    #[serde(with = "crate::config::serde_control", default)]
    pub control: Option<Url>,

    /// The host name (or IP address) clients and child relays reach this relay at, as reported
    /// to the control plane in heartbeats: moqt://HOST:PORT and https://HOST:PORT/ with the
    /// bound UDP port.
    #[arg(long, value_name = "HOST", default_value = "localhost", value_parser = crate::config::parse_public_host)]
    #[serde(deserialize_with = "crate::config::deserialize_public_host")]
    pub public_host: String,

    /// This relay's region (e.g. eu-west), reported to the control plane, which prefers relays
    /// in the viewer's region.
    #[arg(long, value_name = "REGION", default_value = "")]
    pub region: String,

    /// Most viewer sessions this relay offers the control plane for assignment
    /// [default: --max-sessions].
    #[arg(long, value_name = "N")]
    pub capacity_viewers: Option<u32>,

    /// Most egress this relay offers the control plane, in bits per second (suffixes Kbps,
    /// Mbps, Gbps accepted, decimal); 0 = not limited by egress.
    #[arg(long, value_name = "BPS", default_value = "0", value_parser = crate::config::parse_bitrate)]
    #[serde(with = "crate::config::serde_bitrate")]
    pub capacity_egress: u64,
}

/// The interval before the control plane has named one.
pub const FIRST_INTERVAL: Duration = Duration::from_secs(1);

/// The shortest and longest interval accepted from the control plane (an answer outside is
/// clamped, so a bad answer can neither spin the relay nor silence it).
pub const INTERVAL_RANGE: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(60));

/// While heartbeats keep failing, a warning is logged at most this often (the others at debug).
pub const WARN_EVERY: Duration = Duration::from_secs(30);

/// What a [`Reporter`] says about the relay that does not change while it runs.
#[derive(Debug, Clone)]
pub struct HeartbeatConfig {
    /// The control plane's base URL (`--control`).
    pub control: Url,
    /// The relay's id (`--relay-id`).
    pub relay_id: String,
    /// Where clients reach the relay (see [`relay_urls`]).
    pub urls: RelayUrls,
    /// The development certificate's SHA-256 (hex), with `--dev-cert`.
    pub cert_sha256: Option<String>,
    /// `--region`.
    pub region: String,
    /// `--capacity-viewers`, `--capacity-egress`.
    pub capacity: Capacity,
    /// How long one heartbeat request may take.
    pub timeout: Duration,
}

/// Why a heartbeat failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatError {
    /// The HTTP client could not be built or the endpoint URL formed.
    #[error("setting up the control plane client: {0}")]
    Setup(String),
    /// The request did not get an answer (connect error, timeout).
    #[error("POST {url}: {reason}")]
    Unreachable {
        /// The heartbeat endpoint.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The control plane refused the heartbeat.
    #[error("POST {url}: HTTP {status}: {message}")]
    Refused {
        /// The heartbeat endpoint.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The error body's `error: message`, or the status text.
        message: String,
    },
    /// The answer is not a [`HeartbeatResponse`].
    #[error("POST {url}: unreadable answer: {reason}")]
    Unreadable {
        /// The heartbeat endpoint.
        url: String,
        /// Why it could not be read.
        reason: String,
    },
    /// The heartbeat this relay built fails [`Heartbeat::validate`] (a relay bug or a bad flag).
    #[error("invalid heartbeat: {0}")]
    Invalid(String),
}

/// The registries a heartbeat reports on.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Sessions and bytes out.
    pub metrics: Arc<Metrics>,
    /// Tracks carried, their subscribers and parents.
    pub tracks: Arc<Tracks>,
    /// Namespaces published here.
    pub namespaces: Arc<Namespaces>,
}

/// Sends heartbeats to the control plane; [`run`](Self::run) is its loop.
#[derive(Debug)]
pub struct Reporter {
    config: HeartbeatConfig,
    endpoint: Url,
    client: reqwest::Client,
}

impl Reporter {
    /// A reporter for `config`; no request is sent until [`run`](Self::run).
    pub fn new(config: HeartbeatConfig) -> Result<Self, HeartbeatError> {
        let base = config.control.as_str().trim_end_matches('/');
        let endpoint = Url::parse(&format!("{base}{HEARTBEAT_PATH}"))
            .map_err(|e| HeartbeatError::Setup(format!("{base}{HEARTBEAT_PATH} is not a URL: {e}")))?;
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| HeartbeatError::Setup(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            config,
            endpoint,
            client,
        })
    }

    /// Where heartbeats go: `{control}/v1/relays/heartbeat`.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// Send a heartbeat every interval until dropped. `draining` turns true when the relay
    /// starts draining (a heartbeat saying so goes out at once); `drain` is notified (once) when
    /// the control plane orders a drain.
    pub async fn run(self, sources: Sources, mut draining: watch::Receiver<bool>, drain: Arc<Notify>) {
        let mut interval = FIRST_INTERVAL;
        let mut sampler = LoadSampler::default();
        let mut warnings = WarnLimiter::default();
        let mut drain_ordered = false;
        tracing::info!(control = %self.endpoint, "sending heartbeats to the control plane");
        loop {
            let is_draining = *draining.borrow_and_update();
            let heartbeat = self.heartbeat(&sources, &mut sampler, is_draining);
            match self.send(&heartbeat).await {
                Ok(answer) => {
                    if warnings.succeeded() {
                        tracing::info!(control = %self.endpoint, "heartbeats reach the control plane again");
                    }
                    interval =
                        Duration::from_millis(answer.interval_ms).clamp(INTERVAL_RANGE.0, INTERVAL_RANGE.1);
                    if answer.drain && !drain_ordered {
                        drain_ordered = true;
                        tracing::info!("the control plane ordered a drain");
                        drain.notify_one();
                    }
                }
                Err(error) => match warnings.failed(Instant::now()) {
                    Some(suppressed) => tracing::warn!(
                        %error,
                        retry_in = ?interval,
                        suppressed,
                        "heartbeat to the control plane failed; retrying"
                    ),
                    None => tracing::debug!(%error, "heartbeat to the control plane failed"),
                },
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                Ok(()) = draining.changed() => {}
            }
        }
    }

    /// The heartbeat describing the relay now.
    pub fn heartbeat(&self, sources: &Sources, sampler: &mut LoadSampler, draining: bool) -> Heartbeat {
        let metrics = &sources.metrics;
        let (egress_bps, cpu) = sampler.sample(Instant::now(), metrics.bytes_out.get(), process_cpu_ticks());
        let tracks = sources.tracks.all().into_iter().map(|t| TrackSummary {
            namespace: t.name.namespace.to_path(),
            subscribers: t.subscribers(),
            parent: t.parent_url().map(String::from),
            live: t.is_live(),
            viewers: t.viewers(),
            viewer_sessions: t.viewer_sessions(),
            chat_room: chat_room(&t.name.name, u64::MAX),
        });
        let published = sources
            .namespaces
            .namespaces()
            .iter()
            .map(|n| n.to_path())
            .collect::<Vec<_>>();
        let (broadcasts, parents) = broadcasts(tracks, published);
        Heartbeat {
            relay_id: self.config.relay_id.clone(),
            urls: self.config.urls.clone(),
            cert_sha256: self.config.cert_sha256.clone(),
            region: self.config.region.clone(),
            capacity: self.config.capacity,
            load: Load {
                sessions: u32::try_from(metrics.sessions_total().max(0)).unwrap_or(u32::MAX),
                egress_bps,
                cpu,
                accepted: metrics.sessions_accepted.get(),
            },
            broadcasts,
            parents,
            draining,
        }
    }

    async fn send(&self, heartbeat: &Heartbeat) -> Result<HeartbeatResponse, HeartbeatError> {
        heartbeat
            .validate()
            .map_err(|e| HeartbeatError::Invalid(e.to_string()))?;
        let url = self.endpoint.to_string();
        let response = self
            .client
            .post(self.endpoint.clone())
            .json(heartbeat)
            .send()
            .await
            .map_err(|e| HeartbeatError::Unreachable {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let status = response.status();
        if !status.is_success() {
            let message = match response.json::<ErrorBody>().await {
                Ok(body) => format!("{}: {}", body.error, body.message),
                Err(_) => status.canonical_reason().unwrap_or("error").to_owned(),
            };
            return Err(HeartbeatError::Refused {
                url,
                status: status.as_u16(),
                message,
            });
        }
        response
            .json::<HeartbeatResponse>()
            .await
            .map_err(|e| HeartbeatError::Unreadable {
                url,
                reason: e.to_string(),
            })
    }
}
