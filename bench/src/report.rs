//! The results of a run: [`Report`] (the stable JSON shape, documented field by field in
//! `bench/README.md`), its human summary, and the once-a-second [`Progress`] line.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::profile::Profile;
use banyan_media::stats::Distribution;

/// The version of the JSON shape; bumped when a field changes meaning or is removed.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything a run measured. Serialized as the `--json` output.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema: u32,
    /// The profile that produced these figures.
    pub profile: Profile,
    /// Seconds from the first subscriber's start to the end of the drain.
    pub elapsed_s: f64,
    /// Length of the measurement window actually observed, in seconds.
    pub window_s: f64,
    /// Per-object latency (receive wall clock − capture timestamp) of live objects.
    pub latency_ms: Distribution,
    /// Time to first object per subscriber, from starting to connect.
    pub ttff_ms: Distribution,
    /// Objects and bytes received by subscribers.
    pub delivered: Delivered,
    /// What publishers sent.
    pub published: Published,
    /// Groups expected vs received by subscribers.
    pub groups: Groups,
    /// Subscriber sessions.
    pub connections: Connections,
    /// The relay process's cost (all `null` without `--relay-pid`).
    pub relay: RelayUsage,
    /// The bench process's own cost in the window (it shares the machine with the relay).
    pub bench: BenchUsage,
    /// The whole machine during the window: who else was using the CPUs, UDP drops.
    pub host: HostUsage,
}

/// The machine the run shared, over the measurement window.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct HostUsage {
    /// Online CPUs.
    pub cpus: usize,
    /// Busy time of all CPUs, percentage of one core (at most `100 × cpus`).
    pub cpu_busy_percent: Option<f64>,
    /// `cpu_busy_percent − relay.cpu_percent − bench.cpu_percent`: everything else on the
    /// machine (other processes, and kernel work not charged to either process).
    pub other_cpu_percent: Option<f64>,
    /// UDP datagrams dropped for a full socket receive buffer (all sockets on the host).
    pub udp_rcvbuf_errors: Option<u64>,
}

/// Delivery counts and rates.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Delivered {
    /// Objects received by all subscribers within the measurement window.
    pub objects: u64,
    /// Payload bytes received within the window.
    pub bytes: u64,
    /// `objects / window_s`.
    pub objects_per_s: f64,
    /// Payload goodput: `bytes × 8 / window_s / 10⁹`.
    pub gbit_per_s: f64,
    /// What a perfect relay would deliver once all subscribers are in: `fps × subscribers`.
    pub expected_objects_per_s: f64,
    /// `objects_per_s / expected_objects_per_s`: object-level delivery in the window. Unlike
    /// the group delivery ratio (a group with any object counts), an overloaded relay that
    /// delivers a fraction of each group's objects shows here (`null` when nothing was expected).
    #[serde(default)]
    pub object_delivery_ratio: Option<f64>,
    /// Objects received over the whole run (ramp-up, window and drain).
    pub total_objects: u64,
    /// Payload bytes received over the whole run.
    pub total_bytes: u64,
    /// Objects captured before their subscriber's SUBSCRIBE (served from the relay's cache at
    /// join); delivered, but not in `latency_ms`.
    pub cached_objects: u64,
    /// Objects without a LOC Timestamp property (not in `latency_ms`).
    pub without_timestamp: u64,
}

/// What the publishers produced.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Published {
    /// Objects written (counted once per upstream subscription).
    pub objects: u64,
    /// Upstream SUBSCRIBEs the publishers answered.
    pub subscriptions: u64,
}

/// Group delivery.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Groups {
    /// Per subscriber, the groups from where it joined to the publisher's last group, summed.
    pub expected: u64,
    /// Of those, the groups of which at least one object arrived.
    pub received: u64,
    /// `expected − received`: gaps in the Group IDs a subscriber saw.
    pub skipped: u64,
    /// `received / expected` (`null` when nothing was expected).
    pub delivery_ratio: Option<f64>,
}

/// Subscriber sessions.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Connections {
    /// Subscribers started.
    pub attempted: u64,
    /// Subscribers that connected and got SUBSCRIBE_OK.
    pub established: u64,
    /// Subscribers whose connect or SUBSCRIBE failed.
    pub failed: u64,
    /// Established subscriptions that ended before the publisher's last object.
    pub dropped: u64,
    /// Established subscribers that received the publisher's last object.
    pub completed: u64,
}

/// The relay process, sampled from `/proc/<pid>`.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct RelayUsage {
    /// The process id sampled.
    pub pid: Option<u32>,
    /// CPU time over the window as a percentage of one core (can exceed 100).
    pub cpu_percent: Option<f64>,
    /// `cpu_percent / delivered.gbit_per_s`.
    pub cpu_percent_per_gbit_per_s: Option<f64>,
    /// Resident memory at the end of the window, bytes.
    pub rss_bytes: Option<u64>,
    /// Resident memory before any bench session connected, bytes.
    pub rss_baseline_bytes: Option<u64>,
    /// Largest resident memory sampled (once a second), bytes.
    pub rss_peak_bytes: Option<u64>,
    /// `(rss_bytes − rss_baseline_bytes) / connections.established`.
    pub rss_per_subscriber_bytes: Option<f64>,
}

/// The bench process itself.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct BenchUsage {
    /// CPU over the window, percentage of one core.
    pub cpu_percent: Option<f64>,
    /// Resident memory at the end of the window, bytes.
    pub rss_bytes: Option<u64>,
}

/// One progress line, reported every second while running.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Seconds since subscribers started.
    pub elapsed_s: f64,
    /// Which phase: `ramp-up`, `measuring`.
    pub phase: &'static str,
    /// Subscribers currently connected.
    pub connected: u64,
    /// Subscribers in the profile.
    pub subscribers: u64,
    /// Subscribers failed so far.
    pub failed: u64,
    /// Objects received per second over the last interval.
    pub objects_per_s: f64,
    /// Payload Gbit/s over the last interval.
    pub gbit_per_s: f64,
    /// Relay CPU% over the last interval.
    pub relay_cpu_percent: Option<f64>,
    /// Relay RSS now.
    pub relay_rss_bytes: Option<u64>,
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:6.1}s {:9}] subscribers {}/{} connected ({} failed), {:.0} objects/s, {:.3} Gbit/s",
            self.elapsed_s,
            self.phase,
            self.connected,
            self.subscribers,
            self.failed,
            self.objects_per_s,
            self.gbit_per_s
        )?;
        if let (Some(cpu), Some(rss)) = (self.relay_cpu_percent, self.relay_rss_bytes) {
            write!(f, ", relay {cpu:.0}% cpu {}", mib(rss))?;
        }
        Ok(())
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn opt<T: fmt::Display>(value: Option<T>, unit: &str) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v}{unit}"))
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.1} ms"))
}

impl Report {
    /// A human-readable multi-line summary.
    pub fn summary(&self) -> String {
        let p = &self.profile;
        let mut s = String::new();
        s.push_str(&format!(
            "profile: {} publisher(s) × {} broadcast(s) × {} subscriber(s) ({} total, {:?}), {} fps, {} B objects, GOP {}, ramp-up {} s, window {} s\n",
            p.publishers, p.broadcasts_per_publisher, p.subscribers_per_broadcast, p.subscribers,
            p.transport, p.fps, p.object_size, p.gop, p.ramp_up_s, p.duration_s
        ));
        let c = &self.connections;
        s.push_str(&format!(
            "connections: {} attempted, {} established, {} failed, {} dropped, {} completed\n",
            c.attempted, c.established, c.failed, c.dropped, c.completed
        ));
        let d = &self.delivered;
        s.push_str(&format!(
            "delivered (window {:.2} s): {} objects, {} bytes, {:.0} objects/s of {:.0} expected (object delivery ratio {}), {:.3} Gbit/s\n",
            self.window_s,
            d.objects,
            d.bytes,
            d.objects_per_s,
            d.expected_objects_per_s,
            opt(d.object_delivery_ratio.map(|r| format!("{r:.4}")), ""),
            d.gbit_per_s
        ));
        s.push_str(&format!(
            "whole run: {} objects, {} bytes; {} served from cache at join; {} without timestamp\n",
            d.total_objects, d.total_bytes, d.cached_objects, d.without_timestamp
        ));
        let g = &self.groups;
        s.push_str(&format!(
            "groups: {} expected, {} received, {} skipped, delivery ratio {}\n",
            g.expected,
            g.received,
            g.skipped,
            opt(g.delivery_ratio.map(|r| format!("{r:.4}")), "")
        ));
        let l = &self.latency_ms;
        s.push_str(&format!(
            "latency ({} objects): p50 {}, p90 {}, p99 {}, max {}\n",
            l.samples,
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.max)
        ));
        let t = &self.ttff_ms;
        s.push_str(&format!(
            "time to first object ({} subscribers): p50 {}, p95 {}, max {}\n",
            t.samples,
            ms(t.p50),
            ms(t.p95),
            ms(t.max)
        ));
        let r = &self.relay;
        if r.pid.is_some() {
            s.push_str(&format!(
                "relay: {} cpu ({} per Gbit/s), rss {} (baseline {}, peak {}, {} per subscriber)\n",
                opt(r.cpu_percent.map(|v| format!("{v:.1}")), "%"),
                opt(r.cpu_percent_per_gbit_per_s.map(|v| format!("{v:.1}")), "%"),
                opt(r.rss_bytes.map(mib), ""),
                opt(r.rss_baseline_bytes.map(mib), ""),
                opt(r.rss_peak_bytes.map(mib), ""),
                opt(
                    r.rss_per_subscriber_bytes
                        .map(|v| format!("{:.1} KiB", v / 1024.0)),
                    ""
                ),
            ));
        }
        s.push_str(&format!(
            "bench process: {} cpu, rss {}\n",
            opt(self.bench.cpu_percent.map(|v| format!("{v:.1}")), "%"),
            opt(self.bench.rss_bytes.map(mib), "")
        ));
        let h = &self.host;
        s.push_str(&format!(
            "host: {} cpus, {} busy ({} not relay or bench), {} UDP receive-buffer drops\n",
            h.cpus,
            opt(h.cpu_busy_percent.map(|v| format!("{v:.1}")), "%"),
            opt(h.other_cpu_percent.map(|v| format!("{v:.1}")), "%"),
            opt(h.udp_rcvbuf_errors, "")
        ));
        s
    }
}
