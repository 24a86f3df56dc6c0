//! Counters in atomics and their Prometheus text rendering. No per-viewer or per-relay labels
//! on counters; gauges per broadcast are bounded by the broadcasts the registry holds.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::api::Status;

/// The control plane's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Heartbeats accepted.
    pub heartbeats: AtomicU64,
    /// Heartbeats refused (malformed or invalid).
    pub heartbeats_rejected: AtomicU64,
    /// Viewer assignments made.
    pub watch_assigned: AtomicU64,
    /// Viewer requests for unknown broadcasts.
    pub watch_unknown: AtomicU64,
    /// Viewer requests with no capacity anywhere.
    pub watch_no_capacity: AtomicU64,
    /// Assignment requests refused by the rate limiter.
    pub rate_limited: AtomicU64,
    /// Route lookups answered.
    pub routes: AtomicU64,
    /// Route lookups refused.
    pub routes_refused: AtomicU64,
    /// Publisher assignments.
    pub publishes: AtomicU64,
    /// Drain orders.
    pub drains: AtomicU64,
    /// Relays expired after missed heartbeats.
    pub expired: AtomicU64,
    /// Relays spawned.
    pub spawned: AtomicU64,
    /// Spawn failures.
    pub spawn_failures: AtomicU64,
    /// Relays stopped by the autoscaler.
    pub stopped: AtomicU64,
    /// Broadcast replications ordered by the autoscaler.
    pub replications: AtomicU64,
    /// The fleet's estimated seconds to high-water (0 when no one is joining), in ms.
    pub time_to_full_ms: AtomicU64,
}

impl Metrics {
    /// Add one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text: the counters plus gauges from `status`.
    pub fn render(&self, status: &Status) -> String {
        let mut out = String::new();
        let counters: [(&str, &str, &AtomicU64); 15] = [
            (
                "banyan_control_heartbeats_total",
                "Heartbeats accepted.",
                &self.heartbeats,
            ),
            (
                "banyan_control_heartbeats_rejected_total",
                "Heartbeats refused as malformed or invalid.",
                &self.heartbeats_rejected,
            ),
            (
                "banyan_control_watch_assigned_total",
                "Viewer assignments made.",
                &self.watch_assigned,
            ),
            (
                "banyan_control_watch_unknown_total",
                "Viewer requests for broadcasts with no origin.",
                &self.watch_unknown,
            ),
            (
                "banyan_control_watch_no_capacity_total",
                "Viewer requests with no relay below capacity.",
                &self.watch_no_capacity,
            ),
            (
                "banyan_control_rate_limited_total",
                "Assignment requests refused with 429.",
                &self.rate_limited,
            ),
            (
                "banyan_control_routes_total",
                "Route lookups answered.",
                &self.routes,
            ),
            (
                "banyan_control_routes_refused_total",
                "Route lookups refused.",
                &self.routes_refused,
            ),
            (
                "banyan_control_publishes_total",
                "Publisher assignments.",
                &self.publishes,
            ),
            (
                "banyan_control_drains_total",
                "Drain orders (operator and autoscaler).",
                &self.drains,
            ),
            (
                "banyan_control_relays_expired_total",
                "Relays dropped after missed heartbeats.",
                &self.expired,
            ),
            (
                "banyan_control_relays_spawned_total",
                "Relays spawned.",
                &self.spawned,
            ),
            (
                "banyan_control_spawn_failures_total",
                "Spawn attempts that failed.",
                &self.spawn_failures,
            ),
            (
                "banyan_control_relays_stopped_total",
                "Spawned relays stopped.",
                &self.stopped,
            ),
            (
                "banyan_control_replications_total",
                "Broadcasts replicated onto another relay ahead of demand.",
                &self.replications,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let ttf = self.time_to_full_ms.load(Ordering::Relaxed) as f64 / 1000.0;
        let _ = writeln!(out, "# HELP banyan_control_time_to_full_seconds Fleet's estimated time to high-water at the current join rate (0: nobody joining).\n# TYPE banyan_control_time_to_full_seconds gauge\nbanyan_control_time_to_full_seconds {ttf}");
        let live = status.relays.len();
        let draining = status.relays.iter().filter(|r| r.draining).count();
        let spawned = status.relays.iter().filter(|r| r.spawned).count();
        let viewers: u64 = status.relays.iter().map(|r| u64::from(r.viewers)).sum();
        let capacity: u64 = status
            .relays
            .iter()
            .map(|r| u64::from(r.capacity.max_viewers))
            .sum();
        for (name, help, value) in [
            ("banyan_control_relays", "Live relays.", live as u64),
            (
                "banyan_control_relays_draining",
                "Live relays that are draining.",
                draining as u64,
            ),
            (
                "banyan_control_relays_spawned",
                "Live relays spawned by this control plane.",
                spawned as u64,
            ),
            (
                "banyan_control_sessions",
                "Sessions over all relays (including assignments not yet reported).",
                viewers,
            ),
            (
                "banyan_control_capacity_viewers",
                "Viewer capacity over all relays.",
                capacity,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        let _ = writeln!(out, "# HELP banyan_control_broadcast_viewers Viewers per broadcast as relays report them.\n# TYPE banyan_control_broadcast_viewers gauge");
        for b in &status.broadcasts {
            let _ = writeln!(
                out,
                "banyan_control_broadcast_viewers{{broadcast=\"{}\"}} {}",
                label(&b.broadcast),
                b.viewers
            );
        }
        let _ = writeln!(out, "# HELP banyan_control_broadcast_join_rate Smoothed viewer joins per second per broadcast.\n# TYPE banyan_control_broadcast_join_rate gauge");
        for b in &status.broadcasts {
            let _ = writeln!(
                out,
                "banyan_control_broadcast_join_rate{{broadcast=\"{}\"}} {:.3}",
                label(&b.broadcast),
                b.join_rate
            );
        }
        out
    }
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
