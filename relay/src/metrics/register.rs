//! Every relay metric registered under its exported name and help text: [`Metrics`]'
//! `Default`. The registration order is the order of the families in the exposition.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use banyan_moq::track::SkipReason;

use super::{Metrics, RefuseReason, FORWARD_DELAY_BUCKETS, PREFIX, SKIP_REASONS};
use crate::interact::Refusal;

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registrar(Registry::with_prefix(PREFIX.trim_end_matches('_')));
        // Fields are evaluated in the order written, which is the export order. Counter names
        // omit `_total` (the encoder appends it) and help texts their final period (the
        // library adds it).
        Self {
            sessions_accepted: r.counter("sessions_accepted", "Sessions accepted"),
            sessions_rejected: r.counter("sessions_rejected", "Sessions refused (limit, auth, bad setup)"),
            objects_in: r.counter(
                "objects_in",
                "Objects received from publishers and upstream relays",
            ),
            objects_out: r.counter("objects_out", "Objects sent to subscribers"),
            bytes_in: r.counter("bytes_in", "Object payload bytes received"),
            bytes_out: r.counter("bytes_out", "Object payload bytes sent"),
            upstream_subscribe_total: r.counter("upstream_subscribe", "Upstream SUBSCRIBE requests sent"),
            parent_connects: r.counter("parent_connects", "Sessions opened to parent relays"),
            parent_connect_failures: r.counter(
                "parent_connect_failures",
                "Failed attempts to reach a parent relay",
            ),
            upstream_failovers: r.counter(
                "upstream_failovers",
                "Upstream subscriptions moved to another parent session after a failure or GOAWAY",
            ),
            publisher_takeovers: r.counter(
                "publisher_takeovers",
                "Tracks moved to a new session that took their namespace over from the old publisher",
            ),
            cache_hits: r.counter("cache_hits", "Requests served from the group cache"),
            cache_misses: r.counter("cache_misses", "Requests that found nothing cached"),
            cache_evictions: r.counter("cache_evictions", "Groups evicted from the cache"),
            groups_skipped: r.by_reason(
                "groups_skipped",
                "Groups a subscriber skipped (their streams reset), by reason: lag (too many groups behind) or late (not delivered within the latency budget)",
                SKIP_REASONS.map(SkipReason::as_str),
            ),
            auth_failures: r.counter("auth_failures", "Authorization tokens refused"),
            sessions_expired: r.counter(
                "sessions_expired",
                "Sessions closed with EXPIRED_AUTH_TOKEN because their token ran out",
            ),
            tokens_refreshed: r.counter(
                "tokens_refreshed",
                "Session tokens extended by a fresh token for the same subject",
            ),
            likes_in: r.counter("likes_in", "Likes added to this relay's sums"),
            comments_in: r.counter("comments_in", "Comments accepted"),
            gifts_in: r.counter("gifts_recorded", "Gifts newly recorded in the ledger"),
            moderation_actions: r.counter(
                "moderation_actions",
                "Moderation actions applied at this relay as the origin",
            ),
            subscriptions: r.gauge("subscriptions", "Active downstream subscriptions"),
            upstream_subscriptions: r.gauge("upstream_subscriptions", "Active upstream subscriptions"),
            tracks_awaiting_publisher: r.gauge(
                "tracks_awaiting_publisher",
                "Tracks nobody publishes yet, held for subscribers that asked for a rendezvous (RENDEZVOUS_TIMEOUT)",
            ),
            cache_bytes: r.gauge("cache_bytes", "Object payload bytes held in the cache"),
            interact_broadcasts: r.gauge(
                "interaction_broadcasts",
                "Broadcasts with interaction state at this relay",
            ),
            sessions: r.by_transport("sessions", "Open MoQT sessions by transport"),
            requests_refused: r.by_reason(
                "requests_refused",
                "Requests refused, by reason",
                RefuseReason::ALL.map(RefuseReason::label),
            ),
            interact_refused: r.by_reason(
                "interactions_refused",
                "Interaction objects refused, by reason",
                Refusal::ALL.map(Refusal::label),
            ),
            forward_delay: r.histogram(
                "forward_delay_seconds",
                "Delay from receiving an object to writing its first byte downstream",
            ),
            registry: r.0,
        }
    }
}

/// A registry being filled: each method registers a new metric and returns a handle sharing
/// its value.
struct Registrar(Registry);

impl Registrar {
    fn counter(&mut self, name: &str, help: &str) -> Counter {
        let c = Counter::default();
        self.0.register(name, help, c.clone());
        c
    }

    fn gauge(&mut self, name: &str, help: &str) -> Gauge {
        let g = Gauge::default();
        self.0.register(name, help, g.clone());
        g
    }

    /// A gauge family labelled `transport`, one gauge per transport in
    /// [`TRANSPORTS`](super::TRANSPORTS) order.
    fn by_transport(&mut self, name: &str, help: &str) -> [Gauge; 3] {
        let family = Family::<TransportLabel, Gauge>::default();
        self.0.register(name, help, family.clone());
        super::TRANSPORTS.map(|kind| {
            family
                .get_or_create(&TransportLabel {
                    transport: kind.as_str(),
                })
                .clone()
        })
    }

    /// A counter family labelled `reason`, one counter per reason, in `reasons`' order.
    fn by_reason<const N: usize>(
        &mut self,
        name: &str,
        help: &str,
        reasons: [&'static str; N],
    ) -> [Counter; N] {
        let family = Family::<ReasonLabel, Counter>::default();
        self.0.register(name, help, family.clone());
        reasons.map(|reason| family.get_or_create(&ReasonLabel { reason }).clone())
    }

    /// A histogram with [`FORWARD_DELAY_BUCKETS`].
    fn histogram(&mut self, name: &str, help: &str) -> Histogram {
        let h = Histogram::new(FORWARD_DELAY_BUCKETS);
        self.0.register(name, help, h.clone());
        h
    }
}

/// The label set of `sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TransportLabel {
    transport: &'static str,
}

/// The label set of `requests_refused_total` and `interactions_refused_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}
