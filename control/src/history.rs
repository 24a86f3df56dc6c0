//! The last minutes of the fleet, for the status page's graphs: one [`Sample`] per interval
//! (relays, spawned relays, egress, and each broadcast's viewers and joins per second) taken
//! from the same [`Status`] snapshot `/v1/status` serves, in a ring of bounded length.
//!
//! Pure, explicit `now`. Memory is bounded: at most `capacity` samples of at most
//! [`MAX_BROADCASTS`] broadcasts each.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::api::{BroadcastSample, HistoryView, Sample, Status};

/// Broadcasts kept per sample (the busiest first); the page draws a handful.
pub const MAX_BROADCASTS: usize = 32;

/// A ring of samples, one per `interval`.
#[derive(Debug)]
pub struct History {
    interval: Duration,
    capacity: usize,
    started: Instant,
    last: Option<Instant>,
    samples: VecDeque<Sample>,
}

impl History {
    /// Keep `span` of history, one sample per `interval` (at least one sample).
    pub fn new(interval: Duration, span: Duration, now: Instant) -> Self {
        let interval = interval.max(Duration::from_millis(1));
        let capacity = usize::try_from(span.as_millis() / interval.as_millis())
            .unwrap_or(usize::MAX)
            .clamp(1, 100_000);
        Self {
            interval,
            capacity,
            started: now,
            last: None,
            samples: VecDeque::with_capacity(capacity.min(1024)),
        }
    }

    /// True when a sample is due at `now` (the first one always is).
    pub fn due(&self, now: Instant) -> bool {
        self.last
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval)
    }

    /// Record `status` as the sample at `now`, dropping the oldest past the capacity.
    pub fn record(&mut self, status: &Status, now: Instant) {
        let mut broadcasts: Vec<BroadcastSample> = status
            .broadcasts
            .iter()
            .map(|b| BroadcastSample {
                broadcast: b.broadcast.clone(),
                viewers: b.viewers,
                join_rate: b.join_rate,
            })
            .collect();
        broadcasts.sort_by(|a, b| {
            b.viewers
                .cmp(&a.viewers)
                .then_with(|| a.broadcast.cmp(&b.broadcast))
        });
        broadcasts.truncate(MAX_BROADCASTS);
        let sample = Sample {
            at_ms: millis(now.saturating_duration_since(self.started)),
            relays: count(status.relays.len()),
            spawned: count(status.relays.iter().filter(|r| r.spawned).count()),
            egress_bps: status.relays.iter().map(|r| r.load.egress_bps).sum(),
            broadcasts,
        };
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
        self.last = Some(now);
    }

    /// What `/v1/history` answers at `now`.
    pub fn view(&self, now: Instant) -> HistoryView {
        HistoryView {
            interval_ms: millis(self.interval),
            now_ms: millis(now.saturating_duration_since(self.started)),
            samples: self.samples.iter().cloned().collect(),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::api::{BroadcastStatus, Capacity, Load, RelayStatus, RelayUrls};

    fn relay(id: &str, spawned: bool, egress_bps: u64) -> RelayStatus {
        RelayStatus {
            relay_id: id.into(),
            region: "eu".into(),
            urls: RelayUrls::default(),
            capacity: Capacity {
                max_viewers: 10,
                egress_bps: 0,
            },
            load: Load {
                egress_bps,
                ..Load::default()
            },
            viewers: 0,
            broadcasts: vec![],
            parents: vec![],
            draining: false,
            spawned,
            last_seen_ms: 0,
        }
    }

    fn broadcast(name: &str, viewers: u64) -> BroadcastStatus {
        BroadcastStatus {
            broadcast: name.into(),
            origin: None,
            viewers,
            join_rate: 1.5,
            relays: vec![],
        }
    }

    #[test]
    fn samples_once_per_interval_and_keeps_only_the_span() {
        let t0 = Instant::now();
        let mut h = History::new(Duration::from_secs(1), Duration::from_secs(3), t0);
        let status = Status {
            relays: vec![relay("a", false, 1000), relay("b", true, 500)],
            broadcasts: vec![broadcast("live/x", 7)],
        };
        for s in 0..5u64 {
            let at = t0 + Duration::from_secs(s);
            assert!(h.due(at));
            h.record(&status, at);
            assert!(!h.due(at + Duration::from_millis(999)));
        }
        let view = h.view(t0 + Duration::from_secs(5));
        assert_eq!(view.interval_ms, 1000);
        assert_eq!(view.now_ms, 5000);
        let at: Vec<u64> = view.samples.iter().map(|s| s.at_ms).collect();
        assert_eq!(at, [2000, 3000, 4000], "the last 3 s, oldest first");
        let last = &view.samples[2];
        assert_eq!((last.relays, last.spawned, last.egress_bps), (2, 1, 1500));
        assert_eq!(last.broadcasts[0].broadcast, "live/x");
        assert_eq!(last.broadcasts[0].viewers, 7);
    }

    #[test]
    fn a_sample_keeps_the_busiest_broadcasts_only() {
        let t0 = Instant::now();
        let mut h = History::new(Duration::from_secs(1), Duration::from_secs(60), t0);
        let broadcasts = (0..MAX_BROADCASTS as u64 + 10)
            .map(|i| broadcast(&format!("live/{i:03}"), i))
            .collect();
        h.record(
            &Status {
                relays: vec![],
                broadcasts,
            },
            t0,
        );
        let kept = &h.view(t0).samples[0].broadcasts;
        assert_eq!(kept.len(), MAX_BROADCASTS);
        assert_eq!(kept[0].viewers, MAX_BROADCASTS as u64 + 9, "busiest first");
        assert!(kept.iter().all(|b| b.viewers >= 10), "the quietest ten left out");
    }
}
