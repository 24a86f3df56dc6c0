//! The control plane's counters as `prometheus-client` metrics, and their OpenMetrics text
//! ([`Metrics::render`]) with gauges computed at scrape time from a registry [`Status`]. No
//! per-viewer or per-relay labels on counters; gauges per broadcast are bounded by the
//! broadcasts the registry holds.

use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use crate::api::Status;

/// The prefix of every metric name.
pub const PREFIX: &str = "banyan_control_";

/// The content type of [`Metrics::render`]'s output (OpenMetrics text).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The control plane's counters (and the autoscaler's time-to-full), each registered under
/// its exported name; clones of a metric share its value.
#[derive(Debug)]
pub struct Metrics {
    /// Heartbeats accepted.
    pub heartbeats: Counter,
    /// Heartbeats refused (malformed or invalid).
    pub heartbeats_rejected: Counter,
    /// Viewer assignments made.
    pub watch_assigned: Counter,
    /// Viewer requests for unknown broadcasts.
    pub watch_unknown: Counter,
    /// Viewer requests with no capacity anywhere.
    pub watch_no_capacity: Counter,
    /// Assignment requests refused by the rate limiter.
    pub rate_limited: Counter,
    /// Route lookups answered.
    pub routes: Counter,
    /// Route lookups refused.
    pub routes_refused: Counter,
    /// Publisher assignments.
    pub publishes: Counter,
    /// Tokens refreshed (`POST /v1/refresh`).
    pub refreshed: Counter,
    /// Refresh requests refused (a token this key did not sign, malformed or run out).
    pub refresh_refused: Counter,
    /// Drain orders.
    pub drains: Counter,
    /// Relays expired after missed heartbeats.
    pub expired: Counter,
    /// Relays spawned.
    pub spawned: Counter,
    /// Spawn failures.
    pub spawn_failures: Counter,
    /// Relays stopped by the autoscaler.
    pub stopped: Counter,
    /// Broadcast replications ordered by the autoscaler.
    pub replications: Counter,
    /// The fleet's estimated seconds to high-water (0 when no one is joining).
    pub time_to_full: Gauge<f64, AtomicU64>,
    /// Every metric above.
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = registry();
        // Counter names omit `_total` (the encoder appends it) and help texts their final
        // period (the library adds it).
        let mut counter = |name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let heartbeats = counter("heartbeats", "Heartbeats accepted");
        let heartbeats_rejected = counter(
            "heartbeats_rejected",
            "Heartbeats refused as malformed or invalid",
        );
        let watch_assigned = counter("watch_assigned", "Viewer assignments made");
        let watch_unknown = counter("watch_unknown", "Viewer requests for broadcasts with no origin");
        let watch_no_capacity = counter(
            "watch_no_capacity",
            "Viewer requests with no relay below capacity",
        );
        let rate_limited = counter("rate_limited", "Assignment requests refused with 429");
        let routes = counter("routes", "Route lookups answered");
        let routes_refused = counter("routes_refused", "Route lookups refused");
        let publishes = counter("publishes", "Publisher assignments");
        let refreshed = counter("tokens_refreshed", "Tokens refreshed with POST /v1/refresh");
        let refresh_refused = counter(
            "token_refreshes_refused",
            "Refresh requests refused (bad signature, malformed or expired token)",
        );
        let drains = counter("drains", "Drain orders (operator and autoscaler)");
        let expired = counter("relays_expired", "Relays dropped after missed heartbeats");
        let spawned = counter("relays_spawned", "Relays spawned");
        let spawn_failures = counter("spawn_failures", "Spawn attempts that failed");
        let stopped = counter("relays_stopped", "Spawned relays stopped");
        let replications = counter(
            "replications",
            "Broadcasts replicated onto another relay ahead of demand",
        );
        let time_to_full = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "time_to_full_seconds",
            "Fleet's estimated time to high-water at the current join rate (0: nobody joining)",
            time_to_full.clone(),
        );
        Self {
            heartbeats,
            heartbeats_rejected,
            watch_assigned,
            watch_unknown,
            watch_no_capacity,
            rate_limited,
            routes,
            routes_refused,
            publishes,
            refreshed,
            refresh_refused,
            drains,
            expired,
            spawned,
            spawn_failures,
            stopped,
            replications,
            time_to_full,
            registry,
        }
    }
}

impl Metrics {
    /// Add one to a counter.
    pub fn inc(counter: &Counter) {
        counter.inc();
    }

    /// OpenMetrics text ([`CONTENT_TYPE`]): the counters, then gauges computed from `status`.
    pub fn render(&self, status: &Status) -> String {
        let mut out = String::with_capacity(4096);
        // Encoding fails only if the writer does, and writing to a `String` cannot.
        let _ = encode_registry(&mut out, &self.registry)
            .and_then(|()| encode_registry(&mut out, &snapshot(status)))
            .and_then(|()| encode_eof(&mut out));
        out
    }
}

/// An empty registry with the control plane's prefix.
fn registry() -> Registry {
    Registry::with_prefix(PREFIX.trim_end_matches('_'))
}

/// The gauges of one `status` snapshot, in a registry of their own for one scrape.
fn snapshot(status: &Status) -> Registry {
    let mut registry = registry();
    let count =
        |keep: fn(&crate::api::RelayStatus) -> bool| status.relays.iter().filter(|r| keep(r)).count() as i64;
    let viewers: u64 = status.relays.iter().map(|r| u64::from(r.viewers)).sum();
    let capacity: u64 = status
        .relays
        .iter()
        .map(|r| u64::from(r.capacity.max_viewers))
        .sum();
    for (name, help, value) in [
        ("relays", "Live relays", count(|_| true)),
        (
            "relays_draining",
            "Live relays that are draining",
            count(|r| r.draining),
        ),
        (
            "spawned_relays",
            "Live relays spawned by this control plane",
            count(|r| r.spawned),
        ),
        (
            "sessions",
            "Sessions over all relays (including assignments not yet reported)",
            i64::try_from(viewers).unwrap_or(i64::MAX),
        ),
        (
            "capacity_viewers",
            "Viewer capacity over all relays",
            i64::try_from(capacity).unwrap_or(i64::MAX),
        ),
    ] {
        registry.register(name, help, ConstGauge::new(value));
    }
    let viewers = Family::<BroadcastLabel, Gauge>::default();
    let join_rate = Family::<BroadcastLabel, Gauge<f64, AtomicU64>>::default();
    for b in &status.broadcasts {
        let label = BroadcastLabel {
            broadcast: Broadcast(b.broadcast.clone()),
        };
        viewers
            .get_or_create(&label)
            .set(i64::try_from(b.viewers).unwrap_or(i64::MAX));
        // Three decimals, as this gauge has always been exported.
        join_rate
            .get_or_create(&label)
            .set((b.join_rate * 1000.0).round() / 1000.0);
    }
    registry.register(
        "broadcast_viewers",
        "Viewers per broadcast as relays report them",
        viewers,
    );
    registry.register(
        "broadcast_join_rate",
        "Smoothed viewer joins per second per broadcast",
        join_rate,
    );
    registry
}

/// The label set of the per-broadcast gauges.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BroadcastLabel {
    broadcast: Broadcast,
}

/// A broadcast name as a label value, escaped (`\`, `"`, newline) as the text format requires.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Broadcast(String);

impl EncodeLabelValue for Broadcast {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::api::{BroadcastStatus, Capacity, Load, RelayStatus, RelayUrls};

    /// `name{labels}` → value of every sample; the text ends `# EOF` and has no other comment
    /// than HELP and TYPE.
    fn parse(text: &str) -> BTreeMap<String, f64> {
        let body = text.strip_suffix("# EOF\n").expect("ends with # EOF");
        body.lines()
            .filter(|l| {
                assert!(l.starts_with("# HELP ") || l.starts_with("# TYPE ") || !l.starts_with('#'));
                !l.starts_with('#')
            })
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').unwrap();
                (series.to_owned(), value.parse().unwrap())
            })
            .collect()
    }

    fn relay(id: &str, viewers: u32, draining: bool, spawned: bool) -> RelayStatus {
        RelayStatus {
            relay_id: id.into(),
            region: "eu".into(),
            urls: RelayUrls::default(),
            capacity: Capacity {
                max_viewers: 100,
                egress_bps: 0,
            },
            load: Load::default(),
            viewers,
            broadcasts: vec![],
            parents: vec![],
            draining,
            spawned,
            last_seen_ms: 0,
        }
    }

    #[test]
    fn render_contains_counters_and_status_gauges() {
        let m = Metrics::default();
        m.heartbeats.inc_by(2);
        Metrics::inc(&m.heartbeats_rejected);
        m.spawned.inc();
        m.time_to_full.set(1.5);
        let status = Status {
            relays: vec![relay("a", 3, false, true), relay("b", 4, true, false)],
            broadcasts: vec![BroadcastStatus {
                broadcast: "live/a\"b\\c".into(),
                origin: None,
                viewers: 7,
                join_rate: 0.12345,
                relays: vec![],
            }],
        };
        let text = m.render(&status);
        let s = parse(&text);
        let get = |k: &str| *s.get(k).unwrap_or_else(|| panic!("{k} missing:\n{text}"));
        assert_eq!(get("banyan_control_heartbeats_total"), 2.0);
        assert_eq!(get("banyan_control_heartbeats_rejected_total"), 1.0);
        assert_eq!(get("banyan_control_relays_spawned_total"), 1.0);
        assert_eq!(get("banyan_control_time_to_full_seconds"), 1.5);
        assert_eq!(get("banyan_control_relays"), 2.0);
        assert_eq!(get("banyan_control_relays_draining"), 1.0);
        assert_eq!(get("banyan_control_spawned_relays"), 1.0);
        assert_eq!(get("banyan_control_sessions"), 7.0);
        assert_eq!(get("banyan_control_capacity_viewers"), 200.0);
        let label = r#"{broadcast="live/a\"b\\c"}"#;
        assert_eq!(get(&format!("banyan_control_broadcast_viewers{label}")), 7.0);
        assert_eq!(get(&format!("banyan_control_broadcast_join_rate{label}")), 0.123);
        assert!(text.contains("# HELP banyan_control_heartbeats Heartbeats accepted.\n"));
    }

    /// Each family is announced once over both registries (the counters' and the scrape's):
    /// a counter `x` is the family `x` (samples `x_total`), so a gauge may not be named `x` too.
    #[test]
    fn family_names_are_unique() {
        let m = Metrics::default();
        m.spawned.inc();
        let status = Status {
            relays: vec![relay("a", 1, false, true)],
            broadcasts: vec![],
        };
        let text = m.render(&status);
        let mut families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        let total = families.len();
        families.sort_unstable();
        families.dedup();
        assert_eq!(families.len(), total, "{text}");
    }

    /// The series tests and dashboards read, all present (at zero) with an empty registry.
    #[test]
    fn every_series_is_exported_under_its_name() {
        let got: Vec<String> = parse(&Metrics::default().render(&Status::default()))
            .into_keys()
            .collect();
        let mut want: Vec<String> = [
            "heartbeats_total",
            "heartbeats_rejected_total",
            "watch_assigned_total",
            "watch_unknown_total",
            "watch_no_capacity_total",
            "rate_limited_total",
            "routes_total",
            "routes_refused_total",
            "publishes_total",
            "tokens_refreshed_total",
            "token_refreshes_refused_total",
            "drains_total",
            "relays_expired_total",
            "relays_spawned_total",
            "spawn_failures_total",
            "relays_stopped_total",
            "replications_total",
            "time_to_full_seconds",
            "relays",
            "relays_draining",
            "spawned_relays",
            "sessions",
            "capacity_viewers",
        ]
        .map(|s| format!("{PREFIX}{s}"))
        .into();
        want.sort();
        assert_eq!(got, want);
    }
}
