//! Cumulative like counters. Every sender (a viewer, or a child relay summing its own
//! subtree) sends its running total under a stable source id; the receiver keeps the largest
//! total seen per source and sums them. Totals only grow, so a lost or reordered datagram
//! is made good by the next one, and a duplicate changes nothing.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// The sum of the latest totals of many sources.
#[derive(Debug, Default)]
pub struct LikeSum {
    sources: HashMap<u64, Source>,
    /// Totals of sources that finished longer ago than the retention and were forgotten.
    retired: u64,
    /// The total last returned by [`LikeSum::flush`].
    flushed: u64,
}

#[derive(Debug)]
struct Source {
    total: u64,
    /// Publications currently sending for this source.
    live: usize,
    /// When the last publication for it ended, while `live == 0`.
    ended: Option<Instant>,
}

impl LikeSum {
    /// An empty sum.
    pub fn new() -> Self {
        Self::default()
    }

    /// A publication starts sending for `source` (a child relay may reconnect and keep its id).
    pub fn attach(&mut self, source: u64) {
        let entry = self.sources.entry(source).or_insert(Source {
            total: 0,
            live: 0,
            ended: None,
        });
        entry.live += 1;
        entry.ended = None;
    }

    /// Record `total` for `source`; smaller totals than one already seen are ignored.
    /// Returns whether the sum grew.
    pub fn update(&mut self, source: u64, total: u64) -> bool {
        match self.sources.get_mut(&source) {
            Some(entry) if total > entry.total => {
                entry.total = total;
                true
            }
            Some(_) => false,
            None => {
                self.sources.insert(
                    source,
                    Source {
                        total,
                        live: 0,
                        ended: None,
                    },
                );
                total > 0
            }
        }
    }

    /// A publication for `source` ended at `now`; its total stays in the sum.
    pub fn detach(&mut self, source: u64, now: Instant) {
        if let Some(entry) = self.sources.get_mut(&source) {
            entry.live = entry.live.saturating_sub(1);
            if entry.live == 0 {
                entry.ended = Some(now);
            }
        }
    }

    /// Forget sources that ended more than `retention` before `now`, keeping their totals in
    /// the sum. Bounds memory by the sources seen within the retention.
    pub fn expire(&mut self, now: Instant, retention: Duration) {
        let mut retired = 0u64;
        self.sources.retain(|_, entry| match entry.ended {
            Some(ended) if now.saturating_duration_since(ended) >= retention => {
                retired = retired.saturating_add(entry.total);
                false
            }
            _ => true,
        });
        self.retired = self.retired.saturating_add(retired);
    }

    /// The sum of every source's latest total.
    pub fn total(&self) -> u64 {
        self.sources
            .values()
            .fold(self.retired, |sum, entry| sum.saturating_add(entry.total))
    }

    /// The total if it changed since the last flush: called once per aggregation window, it
    /// yields at most one new cumulative total per window however many likes arrived.
    pub fn flush(&mut self) -> Option<u64> {
        let total = self.total();
        (total != self.flushed).then(|| {
            self.flushed = total;
            total
        })
    }

    /// Sources currently remembered.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_reordered_and_duplicated_totals_conserve_the_sum() {
        // Two viewers send 1..=1000 likes as running totals; the receiver sees a lossy,
        // reordered, duplicated subset that always includes each sender's last total
        // (the final, reliably sent object).
        let mut sum = LikeSum::new();
        let mut seed = 42u64;
        let mut sent = Vec::new();
        for source in [1u64, 2] {
            for total in 1..=1000u64 {
                sent.push((source, total));
            }
        }
        let mut delivered: Vec<(u64, u64)> = Vec::new();
        for &(source, total) in &sent {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            match seed >> 60 {
                0 => {}                                                    // lost
                1 => delivered.extend([(source, total), (source, total)]), // duplicated
                _ => delivered.push((source, total)),
            }
        }
        // Reorder: reverse every run of 7.
        for chunk in delivered.chunks_mut(7) {
            chunk.reverse();
        }
        delivered.push((1, 1000));
        delivered.push((2, 1000));
        for (source, total) in delivered {
            sum.update(source, total);
        }
        assert_eq!(sum.total(), 2000);
    }

    #[test]
    fn a_reconnecting_source_is_not_counted_twice() {
        let start = Instant::now();
        let retention = Duration::from_secs(60);
        let mut sum = LikeSum::new();
        sum.attach(9);
        sum.update(9, 500);
        sum.detach(9, start);
        sum.expire(start + Duration::from_secs(30), retention);
        // The child relay comes back within the retention with its running total.
        sum.attach(9);
        sum.update(9, 700);
        assert_eq!(sum.total(), 700);
        sum.detach(9, start + Duration::from_secs(40));
        sum.expire(start + Duration::from_secs(100), retention);
        assert_eq!(sum.sources(), 0);
        assert_eq!(sum.total(), 700, "a forgotten source keeps its likes in the sum");
    }

    #[test]
    fn a_live_source_is_never_expired() {
        let start = Instant::now();
        let mut sum = LikeSum::new();
        sum.attach(1);
        sum.attach(1);
        sum.update(1, 10);
        sum.detach(1, start);
        sum.expire(start + Duration::from_secs(3600), Duration::from_secs(1));
        assert_eq!(sum.sources(), 1);
    }

    #[test]
    fn flush_yields_each_change_once() {
        let mut sum = LikeSum::new();
        assert_eq!(sum.flush(), None);
        for total in 1..=50 {
            sum.update(3, total);
        }
        assert_eq!(sum.flush(), Some(50));
        assert_eq!(sum.flush(), None);
        sum.update(3, 49);
        assert_eq!(sum.flush(), None);
        sum.update(4, 1);
        assert_eq!(sum.flush(), Some(51));
    }
}
