//! [`InteractReport`]: what an interaction run measured, as stable JSON and a human summary.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::args::InteractProfile;
use banyan_media::stats::Distribution;

/// The report's schema version; bumped when a field changes meaning or disappears.
pub const INTERACT_SCHEMA_VERSION: u32 = 1;

/// Everything one interaction run measured.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct InteractReport {
    /// [`INTERACT_SCHEMA_VERSION`].
    pub schema: u32,
    /// Always `interactions`.
    pub mode: String,
    /// What produced these numbers.
    pub profile: InteractProfile,
    /// Seconds from the first viewer's first like to the last viewer's last.
    pub window_s: f64,
    /// Likes sent and seen.
    pub likes: Likes,
    /// Time from a like being sent until the `likes` total on the watch relay covers it.
    pub like_to_visible_ms: Distribution,
    /// Comments sent and delivered.
    pub comments: Comments,
    /// Time from a comment being sent until a watcher received it on `chat/<room>`.
    pub comment_latency_ms: Distribution,
    /// Sessions that connected.
    pub sessions: Sessions,
    /// What the watchers received during the window.
    pub watch: WatchEgress,
    /// The ingest relay (where likes arrive).
    pub ingest_relay: RelaySide,
    /// The watch relay (what it sends to the watchers).
    pub watch_relay: RelaySide,
    /// The machine everything ran on, over the window.
    pub host: Host,
}

/// The machine over the window: on one host the relays, the bench and anything else compete
/// for the same cores.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Host {
    /// Online CPUs.
    pub cpus: usize,
    /// Busy time of all CPUs, % of one core (at most `100 × cpus`).
    pub cpu_busy_percent: Option<f64>,
    /// This bench process, % of one core.
    pub bench_cpu_percent: Option<f64>,
    /// Bytes per second sent over loopback (`lo` transmit in `/proc/net/dev`, IP packets): every
    /// relay, viewer and watcher on the host, both directions, QUIC and IP/UDP overhead included.
    pub loopback_bytes_per_s: Option<f64>,
    /// Packets per second sent over loopback.
    pub loopback_packets_per_s: Option<f64>,
    /// UDP datagrams dropped for a full socket receive buffer (all sockets on the host).
    pub udp_rcvbuf_errors: Option<u64>,
}

/// Likes sent and seen.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Likes {
    /// Likes sent by all viewers (each viewer's final total, summed).
    pub sent: u64,
    /// Likes sent per second over the window.
    pub sent_per_s: f64,
    /// The smallest final total a watcher saw.
    pub final_total_min: Option<u64>,
    /// The largest final total a watcher saw.
    pub final_total_max: Option<u64>,
    /// Watchers whose final total equals `sent`.
    pub watchers_complete: u64,
    /// Every watcher's final total equals `sent`.
    pub conserved: bool,
    /// `likes` objects (totals) the latency watchers received.
    pub totals_seen: u64,
}

/// Comments sent and delivered.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Comments {
    /// Comments written by all viewers.
    pub sent: u64,
    /// Comments sent per second over the window.
    pub sent_per_s: f64,
    /// The fewest comments one watcher received.
    pub delivered_min: Option<u64>,
    /// Watchers that received every comment.
    pub watchers_complete: u64,
    /// Every watcher received every comment.
    pub all_delivered: bool,
}

/// Sessions that connected.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Sessions {
    /// Viewers whose PUBLISH of `interact` was accepted.
    pub viewers: u64,
    /// Watchers subscribed to every track they asked for.
    pub watchers: u64,
    /// Sessions that failed to connect, PUBLISH or SUBSCRIBE.
    pub failed: u64,
}

/// Objects and payload bytes the watchers received over the window.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct WatchEgress {
    /// `likes` objects per second, all watchers.
    pub likes_objects_per_s: f64,
    /// `chat/<room>` objects per second, all watchers.
    pub chat_objects_per_s: f64,
    /// Payload bytes per second, all watchers.
    pub payload_bytes_per_s: f64,
    /// `likes` objects per second per watcher.
    pub likes_objects_per_s_per_watcher: f64,
}

/// One relay's cost, from `/proc` and its `/metrics`.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct RelaySide {
    /// The process sampled.
    pub pid: Option<u32>,
    /// CPU over the window, % of one core.
    pub cpu_percent: Option<f64>,
    /// Likes sent per second ÷ (CPU% / 100) (ingest relay only).
    pub likes_per_s_per_core: Option<f64>,
    /// `likes_in_total` growth per second (likes the relay accepted into its sum).
    pub likes_in_per_s: Option<f64>,
    /// `interactions_refused_total` growth over the window, all reasons.
    pub refused: Option<f64>,
    /// `objects_out_total` growth per second (every track, every subscriber).
    pub objects_out_per_s: Option<f64>,
    /// `bytes_out_total` growth per second (object payload bytes).
    pub bytes_out_per_s: Option<f64>,
}

impl InteractReport {
    /// A human summary, several lines.
    pub fn summary(&self) -> String {
        let p = &self.profile;
        let mut s = String::new();
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        let count = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        let ms = |d: &Distribution| {
            format!(
                "p50 {} ms, p99 {} ms, max {} ms ({} samples)",
                opt(d.p50),
                opt(d.p99),
                opt(d.max),
                d.samples
            )
        };
        let _ = writeln!(
            s,
            "interactions: {} viewers x {} likes/s + {} comments/s -> {} ; {} watchers on {}; window {:.2} s",
            p.viewers, p.likes_per_s, p.comments_per_s, p.ingest, p.watchers, p.watch, self.window_s
        );
        let _ = writeln!(
            s,
            "sessions: {} viewers, {} watchers, {} failed",
            self.sessions.viewers, self.sessions.watchers, self.sessions.failed
        );
        let l = &self.likes;
        let _ = writeln!(
            s,
            "likes: {} sent ({:.1}/s); final total seen {}..{}; {} of {} watchers complete; conserved: {}",
            l.sent,
            l.sent_per_s,
            count(l.final_total_min),
            count(l.final_total_max),
            l.watchers_complete,
            self.sessions.watchers,
            l.conserved
        );
        let _ = writeln!(s, "like-to-visible: {}", ms(&self.like_to_visible_ms));
        let c = &self.comments;
        if c.sent > 0 {
            let _ = writeln!(
                s,
                "comments: {} sent ({:.1}/s); fewest delivered to one watcher {}; all delivered: {}",
                c.sent,
                c.sent_per_s,
                count(c.delivered_min),
                c.all_delivered
            );
            let _ = writeln!(s, "comment latency: {}", ms(&self.comment_latency_ms));
        }
        let w = &self.watch;
        let _ = writeln!(
            s,
            "watchers received: {:.1} likes objects/s ({:.2} per watcher), {:.1} chat objects/s, {:.0} payload B/s",
            w.likes_objects_per_s, w.likes_objects_per_s_per_watcher, w.chat_objects_per_s, w.payload_bytes_per_s
        );
        let i = &self.ingest_relay;
        let _ = writeln!(
            s,
            "ingest relay: cpu {} %, {} likes/s per core, likes_in {}/s, refused {}",
            opt(i.cpu_percent),
            opt(i.likes_per_s_per_core),
            opt(i.likes_in_per_s),
            opt(i.refused)
        );
        let r = &self.watch_relay;
        let _ = writeln!(
            s,
            "watch relay: cpu {} %, egress {} objects/s, {} payload bytes/s",
            opt(r.cpu_percent),
            opt(r.objects_out_per_s),
            opt(r.bytes_out_per_s)
        );
        let h = &self.host;
        let _ = writeln!(
            s,
            "host: {} cpus, busy {} % of one core, bench {} %, loopback {} bytes/s in {} packets/s, UDP receive-buffer drops {}",
            h.cpus,
            opt(h.cpu_busy_percent),
            opt(h.bench_cpu_percent),
            opt(h.loopback_bytes_per_s),
            opt(h.loopback_packets_per_s),
            count(h.udp_rcvbuf_errors)
        );
        s
    }
}
