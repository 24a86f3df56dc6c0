//! The relay's counters, gauges and one latency histogram, as `prometheus-client` metrics in
//! one [`Registry`], encoded as OpenMetrics text by [`Metrics::render`].
//!
//! Share one `Arc<Metrics>`; counters and gauges are single relaxed atomics, cheap enough for
//! per-object hot paths (the histogram takes an uncontended lock per observation). Labels come
//! from small fixed enums only (transport, refusal reason), never from viewers, namespaces or
//! tracks; every label value is created (at zero) up front, so each series is always present.
//!
//! - `mod.rs`: [`Metrics`], the handles hot paths update, and the guards that keep gauges
//!   balanced; [`RefuseReason`].
//! - `register.rs`: each metric's exported name, help text and labels (`Metrics::default`).
//! - `tests.rs`: the exposition, parsed back.

use std::sync::Arc;

use banyan_moq::session::TransportKind;
use banyan_moq::track::SkipReason;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::interact::Refusal;

mod register;

/// The prefix of every metric name.
pub const PREFIX: &str = "banyan_relay_";

/// The content type of [`Metrics::render`]'s output (OpenMetrics text).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every reason a group is skipped, in the order of the `groups_skipped` counters.
pub const SKIP_REASONS: [SkipReason; 2] = [SkipReason::Lag, SkipReason::Late];

/// Every transport, in the order of the `sessions` gauges.
pub const TRANSPORTS: [TransportKind; 3] = [
    TransportKind::Quic,
    TransportKind::WebTransport,
    TransportKind::WebSocket,
];

/// The upper bounds (seconds) of `forward_delay_seconds`' buckets; a final `+Inf` bucket is
/// implied.
pub const FORWARD_DELAY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0,
];

/// Why a request was refused, the `reason` label of `requests_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefuseReason {
    /// The session exceeded its request rate.
    RateLimited,
    /// A configured limit (sessions, subscriptions, namespaces, sizes) was reached.
    Limit,
    /// The track or namespace does not exist (or did not appear in time).
    NotFound,
    /// The token was missing, invalid or did not cover the request.
    Unauthorized,
    /// The request's relay path loops through this relay or exceeds the depth limit.
    Loop,
    /// Anything else (malformed request, duplicate, going away, internal).
    Other,
}

impl RefuseReason {
    /// Every reason, in label order.
    pub const ALL: [RefuseReason; 6] = [
        RefuseReason::RateLimited,
        RefuseReason::Limit,
        RefuseReason::NotFound,
        RefuseReason::Unauthorized,
        RefuseReason::Loop,
        RefuseReason::Other,
    ];

    /// The label value.
    pub const fn label(self) -> &'static str {
        match self {
            RefuseReason::RateLimited => "rate_limited",
            RefuseReason::Limit => "limit",
            RefuseReason::NotFound => "not_found",
            RefuseReason::Unauthorized => "unauthorized",
            RefuseReason::Loop => "loop",
            RefuseReason::Other => "other",
        }
    }
}

/// Every relay metric. Fields are public so hot paths update them directly
/// (`metrics.objects_out.inc()`); each is also registered in the registry [`Metrics::render`]
/// encodes (metric handles share their value with their clones).
#[derive(Debug)]
pub struct Metrics {
    /// Open sessions by transport (`sessions{transport="quic"}`, ...), indexed like
    /// [`TRANSPORTS`]; read them with [`Metrics::sessions`].
    sessions: [Gauge; 3],
    /// Sessions accepted (SETUP completed and authorized).
    pub sessions_accepted: Counter,
    /// Sessions refused (limit, auth, bad SETUP).
    pub sessions_rejected: Counter,
    /// Active downstream subscriptions.
    pub subscriptions: Gauge,
    /// Objects received from publishers and upstream relays.
    pub objects_in: Counter,
    /// Objects sent to subscribers (one per subscriber per object).
    pub objects_out: Counter,
    /// Object payload bytes received.
    pub bytes_in: Counter,
    /// Object payload bytes sent.
    pub bytes_out: Counter,
    /// Active upstream subscriptions (this relay subscribing to a parent or publisher).
    pub upstream_subscriptions: Gauge,
    /// Tracks nobody publishes yet, held for subscribers that asked for a rendezvous.
    pub tracks_awaiting_publisher: Gauge,
    /// Upstream SUBSCRIBEs sent (coalescing keeps this at one per track).
    pub upstream_subscribe_total: Counter,
    /// Sessions opened to parent relays.
    pub parent_connects: Counter,
    /// Attempts to reach a parent relay that failed.
    pub parent_connect_failures: Counter,
    /// Upstream subscriptions moved to another parent session after a failure or GOAWAY.
    pub upstream_failovers: Counter,
    /// Tracks moved to a new session that took their namespace over from the old publisher.
    pub publisher_takeovers: Counter,
    /// Subscriptions or fetches served (at least partly) from the cache.
    pub cache_hits: Counter,
    /// Subscriptions or fetches that found nothing cached.
    pub cache_misses: Counter,
    /// Groups evicted from the cache.
    pub cache_evictions: Counter,
    /// Bytes of object payload held in the cache.
    pub cache_bytes: Gauge,
    /// Groups subscribers skipped, by reason, indexed like [`SKIP_REASONS`].
    groups_skipped: [Counter; 2],
    /// Tokens refused (missing, malformed, expired, bad signature, out of scope).
    pub auth_failures: Counter,
    /// Sessions closed because their token expired (EXPIRED_AUTH_TOKEN).
    pub sessions_expired: Counter,
    /// Session tokens extended by a fresh token for the same subject.
    pub tokens_refreshed: Counter,
    /// Requests refused, by reason, indexed like [`RefuseReason::ALL`].
    requests_refused: [Counter; 6],
    /// Likes added to this relay's sums (accepted from viewers or child relays).
    pub likes_in: Counter,
    /// Comments accepted.
    pub comments_in: Counter,
    /// Gifts newly recorded in this relay's ledger (retries not counted).
    pub gifts_in: Counter,
    /// Moderation actions applied at this relay as the origin (recorded in the store when it has one).
    pub moderation_actions: Counter,
    /// Interaction objects refused, by [`Refusal`], indexed like [`Refusal::ALL`].
    interact_refused: [Counter; 12],
    /// Broadcasts with interaction state at this relay (freed when idle).
    pub interact_broadcasts: Gauge,
    /// Delay from receiving an object to writing its first byte downstream, in seconds
    /// (buckets [`FORWARD_DELAY_BUCKETS`]).
    pub forward_delay: Histogram,
    /// Every metric above, under their exported names.
    registry: Registry,
}

impl Metrics {
    /// A new, zeroed set, shared.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The open-sessions gauge for a transport.
    pub fn sessions(&self, transport: TransportKind) -> &Gauge {
        let [quic, webtransport, websocket] = &self.sessions;
        match transport {
            TransportKind::Quic => quic,
            TransportKind::WebTransport => webtransport,
            TransportKind::WebSocket => websocket,
        }
    }

    /// Open sessions over every transport.
    pub fn sessions_total(&self) -> i64 {
        self.sessions.iter().map(Gauge::get).sum()
    }

    /// Count a group a subscriber skipped.
    pub fn skip(&self, reason: SkipReason) {
        if let Some(c) = SKIP_REASONS
            .iter()
            .position(|r| *r == reason)
            .and_then(|i| self.groups_skipped.get(i))
        {
            c.inc();
        }
    }

    /// Groups skipped so far, for every reason.
    pub fn groups_skipped(&self) -> u64 {
        self.groups_skipped.iter().map(Counter::get).sum()
    }

    /// Groups skipped so far for `reason`.
    pub fn groups_skipped_for(&self, reason: SkipReason) -> u64 {
        SKIP_REASONS
            .iter()
            .position(|r| *r == reason)
            .and_then(|i| self.groups_skipped.get(i))
            .map_or(0, Counter::get)
    }

    /// Count a refused request.
    pub fn refuse(&self, reason: RefuseReason) {
        if let Some(c) = self.requests_refused.get(reason as usize) {
            c.inc();
        }
    }

    /// Count a refused interaction.
    pub fn interact_refuse(&self, refusal: Refusal) {
        if let Some(c) = self.interact_refused.get(refusal as usize) {
            c.inc();
        }
    }

    /// Interactions refused as `refusal` so far.
    pub fn interact_refused(&self, refusal: Refusal) -> u64 {
        self.interact_refused
            .get(refusal as usize)
            .map_or(0, Counter::get)
    }

    /// Requests refused for `reason` so far.
    pub fn refused(&self, reason: RefuseReason) -> u64 {
        self.requests_refused.get(reason as usize).map_or(0, Counter::get)
    }

    /// Increment the session gauge for `transport` and decrement it when the guard drops.
    pub fn session_guard(&self, transport: TransportKind) -> GaugeGuard {
        GaugeGuard::new(self.sessions(transport))
    }

    /// Increment `subscriptions` and decrement it when the guard drops.
    pub fn subscription_guard(&self) -> GaugeGuard {
        GaugeGuard::new(&self.subscriptions)
    }

    /// Increment `upstream_subscriptions` (and count `upstream_subscribe_total`); the gauge is
    /// decremented when the guard drops.
    pub fn upstream_guard(&self) -> GaugeGuard {
        self.upstream_subscribe_total.inc();
        GaugeGuard::new(&self.upstream_subscriptions)
    }

    /// The OpenMetrics text exposition ([`CONTENT_TYPE`]) of every metric, ending `# EOF`.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        // Encoding fails only if the writer does, and writing to a `String` cannot.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Decrements a gauge when dropped (see [`Metrics::session_guard`]).
#[derive(Debug)]
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    /// Increment `gauge` and return the guard that undoes it.
    pub fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests;
