//! The relay's counters, gauges and one latency histogram, as `prometheus-client` metrics in
//! one [`Registry`], encoded as OpenMetrics text by [`Metrics::render`].
//!
//! Share one `Arc<Metrics>`; counters and gauges are single relaxed atomics, cheap enough for
//! per-object hot paths (the histogram takes an uncontended lock per observation). Labels come
//! from small fixed enums only (transport, refusal reason), never from viewers, namespaces or
//! tracks; every label value is created (at zero) up front, so each series is always present.

use std::sync::Arc;

use banyan_moq::session::TransportKind;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::interact::Refusal;

/// The prefix of every metric name.
pub const PREFIX: &str = "banyan_relay_";

/// The content type of [`Metrics::render`]'s output (OpenMetrics text).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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
    /// Open sessions over raw QUIC (`sessions{transport="quic"}`).
    pub sessions_quic: Gauge,
    /// Open sessions over WebTransport (`sessions{transport="webtransport"}`).
    pub sessions_webtransport: Gauge,
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
    /// Groups skipped because a subscriber fell too far behind.
    pub groups_skipped: Counter,
    /// Tokens refused (missing, malformed, expired, bad signature, out of scope).
    pub auth_failures: Counter,
    /// Requests refused, by reason, indexed like [`RefuseReason::ALL`].
    requests_refused: [Counter; 6],
    /// Likes added to this relay's sums (accepted from viewers or child relays).
    pub likes_in: Counter,
    /// Comments accepted.
    pub comments_in: Counter,
    /// Gifts newly recorded in this relay's ledger (retries not counted).
    pub gifts_in: Counter,
    /// Interaction objects refused, by [`Refusal`], indexed like [`Refusal::ALL`].
    interact_refused: [Counter; 6],
    /// Broadcasts with interaction state at this relay (freed when idle).
    pub interact_broadcasts: Gauge,
    /// Delay from receiving an object to writing its first byte downstream, in seconds
    /// (buckets [`FORWARD_DELAY_BUCKETS`]).
    pub forward_delay: Histogram,
    /// Every metric above, under their exported names.
    registry: Registry,
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

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix(PREFIX.trim_end_matches('_'));
        // Register a clone of each metric (clones share one value); help texts get a final
        // period from the library.
        let mut counter = |name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        // Counter names omit `_total`: the encoder appends it.
        let sessions_accepted = counter("sessions_accepted", "Sessions accepted");
        let sessions_rejected = counter("sessions_rejected", "Sessions refused (limit, auth, bad setup)");
        let objects_in = counter(
            "objects_in",
            "Objects received from publishers and upstream relays",
        );
        let objects_out = counter("objects_out", "Objects sent to subscribers");
        let bytes_in = counter("bytes_in", "Object payload bytes received");
        let bytes_out = counter("bytes_out", "Object payload bytes sent");
        let upstream_subscribe_total = counter("upstream_subscribe", "Upstream SUBSCRIBE requests sent");
        let parent_connects = counter("parent_connects", "Sessions opened to parent relays");
        let parent_connect_failures = counter(
            "parent_connect_failures",
            "Failed attempts to reach a parent relay",
        );
        let upstream_failovers = counter(
            "upstream_failovers",
            "Upstream subscriptions moved to another parent session after a failure or GOAWAY",
        );
        let publisher_takeovers = counter(
            "publisher_takeovers",
            "Tracks moved to a new session that took their namespace over from the old publisher",
        );
        let cache_hits = counter("cache_hits", "Requests served from the group cache");
        let cache_misses = counter("cache_misses", "Requests that found nothing cached");
        let cache_evictions = counter("cache_evictions", "Groups evicted from the cache");
        let groups_skipped = counter(
            "groups_skipped",
            "Groups skipped because a subscriber fell too far behind",
        );
        let auth_failures = counter("auth_failures", "Authorization tokens refused");
        let likes_in = counter("likes_in", "Likes added to this relay's sums");
        let comments_in = counter("comments_in", "Comments accepted");
        let gifts_in = counter("gifts_recorded", "Gifts newly recorded in the ledger");

        let mut gauge = |name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let subscriptions = gauge("subscriptions", "Active downstream subscriptions");
        let upstream_subscriptions = gauge("upstream_subscriptions", "Active upstream subscriptions");
        let tracks_awaiting_publisher = gauge(
            "tracks_awaiting_publisher",
            "Tracks nobody publishes yet, held for subscribers that asked for a rendezvous (RENDEZVOUS_TIMEOUT)",
        );
        let cache_bytes = gauge("cache_bytes", "Object payload bytes held in the cache");
        let interact_broadcasts = gauge(
            "interaction_broadcasts",
            "Broadcasts with interaction state at this relay",
        );

        let sessions = Family::<TransportLabel, Gauge>::default();
        registry.register("sessions", "Open MoQT sessions by transport", sessions.clone());
        let session_gauge = |kind: TransportKind| {
            sessions
                .get_or_create(&TransportLabel {
                    transport: kind.as_str(),
                })
                .clone()
        };
        let sessions_quic = session_gauge(TransportKind::Quic);
        let sessions_webtransport = session_gauge(TransportKind::WebTransport);

        let mut by_reason = |name: &str, help: &str, reasons: [&'static str; 6]| {
            let family = Family::<ReasonLabel, Counter>::default();
            registry.register(name, help, family.clone());
            reasons.map(|reason| family.get_or_create(&ReasonLabel { reason }).clone())
        };
        let requests_refused = by_reason(
            "requests_refused",
            "Requests refused, by reason",
            RefuseReason::ALL.map(RefuseReason::label),
        );
        let interact_refused = by_reason(
            "interactions_refused",
            "Interaction objects refused, by reason",
            Refusal::ALL.map(Refusal::label),
        );

        let forward_delay = Histogram::new(FORWARD_DELAY_BUCKETS);
        registry.register(
            "forward_delay_seconds",
            "Delay from receiving an object to writing its first byte downstream",
            forward_delay.clone(),
        );

        Self {
            sessions_quic,
            sessions_webtransport,
            sessions_accepted,
            sessions_rejected,
            subscriptions,
            objects_in,
            objects_out,
            bytes_in,
            bytes_out,
            upstream_subscriptions,
            tracks_awaiting_publisher,
            upstream_subscribe_total,
            parent_connects,
            parent_connect_failures,
            upstream_failovers,
            publisher_takeovers,
            cache_hits,
            cache_misses,
            cache_evictions,
            cache_bytes,
            groups_skipped,
            auth_failures,
            requests_refused,
            likes_in,
            comments_in,
            gifts_in,
            interact_refused,
            interact_broadcasts,
            forward_delay,
            registry,
        }
    }
}

impl Metrics {
    /// A new, zeroed set, shared.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The open-sessions gauge for a transport.
    pub fn sessions(&self, transport: TransportKind) -> &Gauge {
        match transport {
            TransportKind::Quic => &self.sessions_quic,
            TransportKind::WebTransport => &self.sessions_webtransport,
        }
    }

    /// Open sessions over every transport.
    pub fn sessions_total(&self) -> i64 {
        self.sessions_quic.get() + self.sessions_webtransport.get()
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
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::time::Duration;

    use super::*;

    /// Parse OpenMetrics text: every sample belongs to a family announced by HELP and TYPE
    /// lines, counters end `_total`, every value is a number and the text ends `# EOF`.
    /// Returns `name{labels}` → value.
    fn parse(text: &str) -> HashMap<String, f64> {
        let body = text.strip_suffix("# EOF\n").expect("ends with # EOF");
        let mut types: HashMap<String, String> = HashMap::new();
        let mut helped: HashSet<String> = HashSet::new();
        let mut samples = HashMap::new();
        for line in body.lines() {
            assert!(!line.is_empty(), "blank line");
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap();
                assert!(!help.is_empty());
                assert!(helped.insert(name.to_owned()), "duplicate HELP {name}");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                assert!(helped.contains(name), "TYPE before HELP: {line}");
                assert!(types.insert(name.to_owned(), kind.to_owned()).is_none());
                continue;
            }
            assert!(!line.starts_with('#'), "{line}");
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
            let name = series.split('{').next().unwrap();
            assert!(name.starts_with(PREFIX), "{name}");
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{name}"
            );
            let family = [("_total", "counter"), ("_bucket", "histogram")]
                .into_iter()
                .chain([("_sum", "histogram"), ("_count", "histogram")])
                .find_map(|(suffix, kind)| {
                    name.strip_suffix(suffix)
                        .filter(|f| types.get(*f).map(String::as_str) == Some(kind))
                })
                .unwrap_or(name);
            let kind = types
                .get(family)
                .unwrap_or_else(|| panic!("sample before TYPE: {line}"));
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
            if let Some(labels) = series.strip_prefix(name) {
                if !labels.is_empty() {
                    assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                }
            }
            assert!(
                samples.insert(series.to_owned(), value).is_none(),
                "duplicate {series}"
            );
        }
        samples
    }

    #[test]
    fn render_contains_values_and_parses() {
        let m = Metrics::new();
        let quic = m.session_guard(TransportKind::Quic);
        let _wt1 = m.session_guard(TransportKind::WebTransport);
        let _wt2 = m.session_guard(TransportKind::WebTransport);
        m.sessions_accepted.inc_by(3);
        m.sessions_rejected.inc();
        let _sub = m.subscription_guard();
        m.objects_in.inc_by(10);
        m.objects_out.inc_by(200);
        m.bytes_in.inc_by(12_345);
        m.bytes_out.inc_by(246_900);
        let _up = m.upstream_guard();
        m.cache_hits.inc_by(7);
        m.cache_misses.inc_by(2);
        m.cache_evictions.inc_by(4);
        m.cache_bytes.set(1 << 20);
        m.groups_skipped.inc_by(5);
        m.auth_failures.inc_by(6);
        m.refuse(RefuseReason::RateLimited);
        m.refuse(RefuseReason::RateLimited);
        m.refuse(RefuseReason::Unauthorized);
        m.interact_refuse(Refusal::RateLimited);
        m.forward_delay.observe(Duration::from_micros(300).as_secs_f64());
        m.forward_delay.observe(Duration::from_millis(3).as_secs_f64());
        m.forward_delay.observe(Duration::from_secs(2).as_secs_f64());
        drop(quic);

        let text = m.render();
        let s = parse(&text);
        let get = |k: &str| {
            *s.get(&format!("{PREFIX}{k}"))
                .unwrap_or_else(|| panic!("{k} missing:\n{text}"))
        };
        assert_eq!(get("sessions{transport=\"quic\"}"), 0.0);
        assert_eq!(get("sessions{transport=\"webtransport\"}"), 2.0);
        assert_eq!(m.sessions_total(), 2);
        assert_eq!(get("sessions_accepted_total"), 3.0);
        assert_eq!(get("sessions_rejected_total"), 1.0);
        assert_eq!(get("subscriptions"), 1.0);
        assert_eq!(get("objects_in_total"), 10.0);
        assert_eq!(get("objects_out_total"), 200.0);
        assert_eq!(get("bytes_in_total"), 12_345.0);
        assert_eq!(get("bytes_out_total"), 246_900.0);
        assert_eq!(get("upstream_subscriptions"), 1.0);
        assert_eq!(get("upstream_subscribe_total"), 1.0);
        assert_eq!(get("cache_hits_total"), 7.0);
        assert_eq!(get("cache_misses_total"), 2.0);
        assert_eq!(get("cache_evictions_total"), 4.0);
        assert_eq!(get("cache_bytes"), 1_048_576.0);
        assert_eq!(get("groups_skipped_total"), 5.0);
        assert_eq!(get("auth_failures_total"), 6.0);
        assert_eq!(get("requests_refused_total{reason=\"rate_limited\"}"), 2.0);
        assert_eq!(get("requests_refused_total{reason=\"unauthorized\"}"), 1.0);
        assert_eq!(get("requests_refused_total{reason=\"not_found\"}"), 0.0);
        assert_eq!(m.refused(RefuseReason::RateLimited), 2);
        assert_eq!(get("interactions_refused_total{reason=\"rate_limited\"}"), 1.0);
        assert_eq!(m.interact_refused(Refusal::RateLimited), 1);
        assert_eq!(get("forward_delay_seconds_bucket{le=\"0.0005\"}"), 1.0);
        assert_eq!(get("forward_delay_seconds_bucket{le=\"0.0025\"}"), 1.0);
        assert_eq!(get("forward_delay_seconds_bucket{le=\"0.005\"}"), 2.0);
        assert_eq!(get("forward_delay_seconds_bucket{le=\"1.0\"}"), 2.0);
        assert_eq!(get("forward_delay_seconds_bucket{le=\"+Inf\"}"), 3.0);
        assert_eq!(get("forward_delay_seconds_count"), 3.0);
        assert!((get("forward_delay_seconds_sum") - 2.0033).abs() < 1e-9);
    }

    /// The series dashboards, tests and the bench read: every one is present (at zero) in a
    /// fresh set, and nothing else is.
    #[test]
    fn every_series_is_exported_under_its_name() {
        let text = Metrics::default().render();
        let mut got: Vec<String> = parse(&text).into_keys().collect();
        got.sort();
        let mut want: Vec<String> = [
            "sessions_accepted_total",
            "sessions_rejected_total",
            "subscriptions",
            "objects_in_total",
            "objects_out_total",
            "bytes_in_total",
            "bytes_out_total",
            "upstream_subscriptions",
            "tracks_awaiting_publisher",
            "upstream_subscribe_total",
            "parent_connects_total",
            "parent_connect_failures_total",
            "upstream_failovers_total",
            "publisher_takeovers_total",
            "cache_hits_total",
            "cache_misses_total",
            "cache_evictions_total",
            "cache_bytes",
            "groups_skipped_total",
            "auth_failures_total",
            "likes_in_total",
            "comments_in_total",
            "interaction_broadcasts",
            "gifts_recorded_total",
            "forward_delay_seconds_sum",
            "forward_delay_seconds_count",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain(
            [TransportKind::Quic, TransportKind::WebTransport]
                .map(|t| format!("sessions{{transport=\"{}\"}}", t.as_str())),
        )
        .chain(RefuseReason::ALL.map(|r| format!("requests_refused_total{{reason=\"{}\"}}", r.label())))
        .chain(Refusal::ALL.map(|r| format!("interactions_refused_total{{reason=\"{}\"}}", r.label())))
        .chain(
            FORWARD_DELAY_BUCKETS
                .map(|b| format!("{b:?}"))
                .into_iter()
                .chain(["+Inf".to_owned()])
                .map(|le| format!("forward_delay_seconds_bucket{{le=\"{le}\"}}")),
        )
        .map(|s| format!("{PREFIX}{s}"))
        .collect();
        want.sort();
        assert_eq!(got, want, "{text}");
    }

    #[test]
    fn guards_restore_gauges() {
        let m = Metrics::new();
        {
            let _a = m.session_guard(TransportKind::Quic);
            let _b = m.subscription_guard();
            let _c = m.upstream_guard();
            assert_eq!(
                (
                    m.sessions_quic.get(),
                    m.subscriptions.get(),
                    m.upstream_subscriptions.get()
                ),
                (1, 1, 1)
            );
        }
        assert_eq!(
            (
                m.sessions_quic.get(),
                m.subscriptions.get(),
                m.upstream_subscriptions.get()
            ),
            (0, 0, 0)
        );
        assert_eq!(m.upstream_subscribe_total.get(), 1);
        assert_eq!(m.sessions(TransportKind::WebTransport).get(), 0);
    }

    #[test]
    fn histogram_edges() {
        let m = Metrics::default();
        m.forward_delay.observe(0.0);
        m.forward_delay.observe(0.0005); // exactly on a bound: counted in it
        m.forward_delay.observe(Duration::MAX.as_secs_f64());
        let s = parse(&m.render());
        let bucket = |le: &str| s[&format!("{PREFIX}forward_delay_seconds_bucket{{le=\"{le}\"}}")];
        assert_eq!(bucket("0.0005"), 2.0);
        assert_eq!(bucket("1.0"), 2.0);
        assert_eq!(bucket("+Inf"), 3.0);
        assert_eq!(s[&format!("{PREFIX}forward_delay_seconds_count")], 3.0);
    }

    #[test]
    fn concurrent_updates_are_counted() {
        let m = Metrics::new();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        m.objects_out.inc();
                        m.forward_delay.observe(0.001);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(m.objects_out.get(), 40_000);
        let s = parse(&m.render());
        assert_eq!(s[&format!("{PREFIX}forward_delay_seconds_count")], 40_000.0);
    }
}
