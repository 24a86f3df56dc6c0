//! The relay's counters, gauges and one latency histogram, as plain atomics, and their
//! Prometheus text rendering ([`Metrics::render`]).
//!
//! Share one `Arc<Metrics>`; every update is a single relaxed atomic operation, cheap enough for
//! per-object hot paths. Labels come from small fixed enums only (transport, refusal reason),
//! never from viewers, namespaces or tracks.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use banyan_moq::session::TransportKind;

/// The prefix of every metric name.
pub const PREFIX: &str = "banyan_relay_";

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Add one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Add `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (e.g. open sessions).
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Add one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Subtract one.
    pub fn dec(&self) {
        self.add(-1);
    }

    /// Add `n` (may be negative).
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Set the value.
    pub fn set(&self, n: i64) {
        self.0.store(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The upper bounds (seconds) of [`Histogram`]'s buckets; a final `+Inf` bucket is implied.
pub const FORWARD_DELAY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0,
];

const BUCKETS: usize = FORWARD_DELAY_BUCKETS.len();

/// A fixed-bucket latency histogram ([`FORWARD_DELAY_BUCKETS`] plus `+Inf`) in atomics.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per-bucket (non-cumulative) counts; the last slot is `+Inf`.
    counts: [AtomicU64; BUCKETS + 1],
    /// The sum of observations in nanoseconds.
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Record one observation.
    pub fn observe(&self, value: Duration) {
        let secs = value.as_secs_f64();
        let index = FORWARD_DELAY_BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(BUCKETS);
        if let Some(slot) = self.counts.get(index) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The sum of observations.
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed))
    }

    /// Cumulative counts per bucket bound, `+Inf` last (what Prometheus calls `_bucket`).
    pub fn cumulative(&self) -> [u64; BUCKETS + 1] {
        let mut out = [0u64; BUCKETS + 1];
        let mut total = 0;
        for (slot, count) in out.iter_mut().zip(&self.counts) {
            total += count.load(Ordering::Relaxed);
            *slot = total;
        }
        out
    }
}

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

    const fn index(self) -> usize {
        self as usize
    }
}

/// Every relay metric. Fields are public so hot paths update them directly
/// (`metrics.objects_out.inc()`).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open sessions over raw QUIC.
    pub sessions_quic: Gauge,
    /// Open sessions over WebTransport.
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
    /// Requests refused, by reason ([`RefuseReason`]).
    requests_refused: [Counter; 6],
    /// Likes added to this relay's sums (accepted from viewers or child relays).
    pub likes_in: Counter,
    /// Comments accepted.
    pub comments_in: Counter,
    /// Gifts newly recorded in this relay's ledger (retries not counted).
    pub gifts_in: Counter,
    /// Interaction objects refused, by [`crate::interact::Refusal`].
    interact_refused: [Counter; 6],
    /// Broadcasts with interaction state at this relay (freed when idle).
    pub interact_broadcasts: Gauge,
    /// Delay from receiving an object to writing its first byte downstream.
    pub forward_delay: Histogram,
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
        if let Some(c) = self.requests_refused.get(reason.index()) {
            c.inc();
        }
    }

    /// Count a refused interaction.
    pub fn interact_refuse(&self, refusal: crate::interact::Refusal) {
        if let Some(c) = self.interact_refused.get(refusal as usize) {
            c.inc();
        }
    }

    /// Interactions refused as `refusal` so far.
    pub fn interact_refused(&self, refusal: crate::interact::Refusal) -> u64 {
        self.interact_refused
            .get(refusal as usize)
            .map_or(0, Counter::get)
    }

    /// Requests refused for `reason` so far.
    pub fn refused(&self, reason: RefuseReason) -> u64 {
        self.requests_refused.get(reason.index()).map_or(0, Counter::get)
    }

    /// Increment the session gauge for `transport` and decrement it when the guard drops.
    pub fn session_guard(self: &Arc<Self>, transport: TransportKind) -> GaugeGuard {
        let select: fn(&Metrics) -> &Gauge = match transport {
            TransportKind::Quic => |m| &m.sessions_quic,
            TransportKind::WebTransport => |m| &m.sessions_webtransport,
        };
        GaugeGuard::new(self.clone(), select)
    }

    /// Increment `subscriptions` and decrement it when the guard drops.
    pub fn subscription_guard(self: &Arc<Self>) -> GaugeGuard {
        GaugeGuard::new(self.clone(), |m| &m.subscriptions)
    }

    /// Increment `upstream_subscriptions` (and count `upstream_subscribe_total`); the gauge is
    /// decremented when the guard drops.
    pub fn upstream_guard(self: &Arc<Self>) -> GaugeGuard {
        self.upstream_subscribe_total.inc();
        GaugeGuard::new(self.clone(), |m| &m.upstream_subscriptions)
    }

    /// The Prometheus text exposition format (version 0.0.4) of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let mut w = Writer { out: &mut out };

        w.family("sessions", "gauge", "Open MoQT sessions by transport.");
        w.sample("sessions", "{transport=\"quic\"}", self.sessions_quic.get());
        w.sample(
            "sessions",
            "{transport=\"webtransport\"}",
            self.sessions_webtransport.get(),
        );
        w.counter(
            "sessions_accepted_total",
            "Sessions accepted.",
            self.sessions_accepted.get(),
        );
        w.counter(
            "sessions_rejected_total",
            "Sessions refused (limit, auth, bad setup).",
            self.sessions_rejected.get(),
        );
        w.gauge(
            "subscriptions",
            "Active downstream subscriptions.",
            self.subscriptions.get(),
        );
        w.counter(
            "objects_in_total",
            "Objects received from publishers and upstream relays.",
            self.objects_in.get(),
        );
        w.counter(
            "objects_out_total",
            "Objects sent to subscribers.",
            self.objects_out.get(),
        );
        w.counter(
            "bytes_in_total",
            "Object payload bytes received.",
            self.bytes_in.get(),
        );
        w.counter(
            "bytes_out_total",
            "Object payload bytes sent.",
            self.bytes_out.get(),
        );
        w.gauge(
            "upstream_subscriptions",
            "Active upstream subscriptions.",
            self.upstream_subscriptions.get(),
        );
        w.gauge(
            "tracks_awaiting_publisher",
            "Tracks nobody publishes yet, held for subscribers that asked for a rendezvous (RENDEZVOUS_TIMEOUT).",
            self.tracks_awaiting_publisher.get(),
        );
        w.counter(
            "upstream_subscribe_total",
            "Upstream SUBSCRIBE requests sent.",
            self.upstream_subscribe_total.get(),
        );
        w.counter(
            "parent_connects_total",
            "Sessions opened to parent relays.",
            self.parent_connects.get(),
        );
        w.counter(
            "parent_connect_failures_total",
            "Failed attempts to reach a parent relay.",
            self.parent_connect_failures.get(),
        );
        w.counter(
            "upstream_failovers_total",
            "Upstream subscriptions moved to another parent session after a failure or GOAWAY.",
            self.upstream_failovers.get(),
        );
        w.counter(
            "publisher_takeovers_total",
            "Tracks moved to a new session that took their namespace over from the old publisher.",
            self.publisher_takeovers.get(),
        );
        w.counter(
            "cache_hits_total",
            "Requests served from the group cache.",
            self.cache_hits.get(),
        );
        w.counter(
            "cache_misses_total",
            "Requests that found nothing cached.",
            self.cache_misses.get(),
        );
        w.counter(
            "cache_evictions_total",
            "Groups evicted from the cache.",
            self.cache_evictions.get(),
        );
        w.gauge(
            "cache_bytes",
            "Object payload bytes held in the cache.",
            self.cache_bytes.get(),
        );
        w.counter(
            "groups_skipped_total",
            "Groups skipped because a subscriber fell too far behind.",
            self.groups_skipped.get(),
        );
        w.counter(
            "auth_failures_total",
            "Authorization tokens refused.",
            self.auth_failures.get(),
        );

        w.family(
            "requests_refused_total",
            "counter",
            "Requests refused, by reason.",
        );
        for reason in RefuseReason::ALL {
            let labels = format!("{{reason=\"{}\"}}", reason.label());
            w.sample("requests_refused_total", &labels, self.refused(reason));
        }
        w.counter(
            "likes_in_total",
            "Likes added to this relay's sums.",
            self.likes_in.get(),
        );
        w.counter("comments_in_total", "Comments accepted.", self.comments_in.get());
        w.gauge(
            "interaction_broadcasts",
            "Broadcasts with interaction state at this relay.",
            self.interact_broadcasts.get(),
        );
        w.counter(
            "gifts_recorded_total",
            "Gifts newly recorded in the ledger.",
            self.gifts_in.get(),
        );
        w.family(
            "interactions_refused_total",
            "counter",
            "Interaction objects refused, by reason.",
        );
        for refusal in crate::interact::Refusal::ALL {
            let labels = format!("{{reason=\"{}\"}}", refusal.label());
            w.sample(
                "interactions_refused_total",
                &labels,
                self.interact_refused(refusal),
            );
        }

        let name = "forward_delay_seconds";
        w.family(
            name,
            "histogram",
            "Delay from receiving an object to writing its first byte downstream.",
        );
        let cumulative = self.forward_delay.cumulative();
        let bounds = FORWARD_DELAY_BUCKETS
            .iter()
            .map(|b| b.to_string())
            .chain(["+Inf".to_string()]);
        for (bound, count) in bounds.zip(cumulative) {
            w.sample(&format!("{name}_bucket"), &format!("{{le=\"{bound}\"}}"), count);
        }
        w.sample(&format!("{name}_sum"), "", self.forward_delay.sum().as_secs_f64());
        // `_count` equals the `+Inf` bucket, read once so the two always agree.
        w.sample(
            &format!("{name}_count"),
            "",
            cumulative.last().copied().unwrap_or(0),
        );
        out
    }
}

/// Decrements a gauge of a shared [`Metrics`] when dropped (see [`Metrics::session_guard`]).
pub struct GaugeGuard {
    metrics: Arc<Metrics>,
    select: fn(&Metrics) -> &Gauge,
}

impl GaugeGuard {
    /// Increment the gauge `select` picks and return the guard that undoes it.
    pub fn new(metrics: Arc<Metrics>, select: fn(&Metrics) -> &Gauge) -> Self {
        select(&metrics).inc();
        Self { metrics, select }
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        (self.select)(&self.metrics).dec();
    }
}

impl std::fmt::Debug for GaugeGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GaugeGuard").finish_non_exhaustive()
    }
}

/// Appends exposition lines; writing to a `String` cannot fail, so results are ignored.
struct Writer<'a> {
    out: &'a mut String,
}

impl Writer<'_> {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {PREFIX}{name} {help}");
        let _ = writeln!(self.out, "# TYPE {PREFIX}{name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.out, "{PREFIX}{name}{labels} {value}");
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(name, "", value);
    }

    fn gauge(&mut self, name: &str, help: &str, value: i64) {
        self.family(name, "gauge", help);
        self.sample(name, "", value);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    /// Parse exposition text: every sample belongs to a family announced by HELP and TYPE
    /// lines, and every value is a number. Returns `name{labels}` → value.
    fn parse(text: &str) -> HashMap<String, f64> {
        let mut types: HashMap<String, String> = HashMap::new();
        let mut helped: HashSet<String> = HashSet::new();
        let mut samples = HashMap::new();
        for line in text.lines() {
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
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| types.get(*f).map(String::as_str) == Some("histogram"))
                })
                .unwrap_or(name);
            assert!(types.contains_key(family), "sample before TYPE: {line}");
            if types[family] == "counter" {
                assert!(family.ends_with("_total"), "{family}");
            }
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
        m.sessions_accepted.add(3);
        m.sessions_rejected.inc();
        let _sub = m.subscription_guard();
        m.objects_in.add(10);
        m.objects_out.add(200);
        m.bytes_in.add(12_345);
        m.bytes_out.add(246_900);
        let _up = m.upstream_guard();
        m.cache_hits.add(7);
        m.cache_misses.add(2);
        m.cache_evictions.add(4);
        m.cache_bytes.set(1 << 20);
        m.groups_skipped.add(5);
        m.auth_failures.add(6);
        m.refuse(RefuseReason::RateLimited);
        m.refuse(RefuseReason::RateLimited);
        m.refuse(RefuseReason::Unauthorized);
        m.forward_delay.observe(Duration::from_micros(300));
        m.forward_delay.observe(Duration::from_millis(3));
        m.forward_delay.observe(Duration::from_secs(2));
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
        assert_eq!(get("forward_delay_seconds_bucket{le=\"0.0005\"}"), 1.0);
        assert_eq!(get("forward_delay_seconds_bucket{le=\"0.0025\"}"), 1.0);
        assert_eq!(get("forward_delay_seconds_bucket{le=\"0.005\"}"), 2.0);
        assert_eq!(get("forward_delay_seconds_bucket{le=\"1\"}"), 2.0);
        assert_eq!(get("forward_delay_seconds_bucket{le=\"+Inf\"}"), 3.0);
        assert_eq!(get("forward_delay_seconds_count"), 3.0);
        assert!((get("forward_delay_seconds_sum") - 2.0033).abs() < 1e-9);
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
        let h = Histogram::default();
        h.observe(Duration::ZERO);
        h.observe(Duration::from_micros(500)); // exactly on a bound: counted in it
        h.observe(Duration::MAX);
        let c = h.cumulative();
        assert_eq!(c[0], 2);
        assert_eq!(c[BUCKETS], 3);
        assert_eq!(h.count(), 3);
        assert!(c.windows(2).all(|w| w[0] <= w[1]));
        // A fresh set renders and parses too.
        parse(&Metrics::default().render());
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
                        m.forward_delay.observe(Duration::from_millis(1));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(m.objects_out.get(), 40_000);
        assert_eq!(m.forward_delay.count(), 40_000);
    }
}
