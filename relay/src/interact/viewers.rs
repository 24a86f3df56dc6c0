//! The live viewer count. Each relay counts its own viewers of a broadcast (sessions
//! subscribed to its media, never a child relay), adds the latest count each child relay
//! reported, and reports the sum to its parent; the origin publishes the total on the
//! `viewers` track. Unlike likes a count goes down, so it is a gauge, not a running total:
//! the parent keeps each child's latest report, forgets it when the child's publication ends,
//! and stops counting a report that was not refreshed within [`REPORT_EXPIRY`].
//!
//! Pure logic: callers feed reports and `now`, and ask what to send.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::Refusal;

/// A relay repeats its count to its parent at least this often, even unchanged (a lost
/// datagram is repaired by the next), and sends it sooner, at most once per window, when it
/// changes.
pub const REPORT_REFRESH: Duration = Duration::from_secs(1);

/// A child's report not refreshed for this long is no longer counted (the child went silent
/// without ending its publication).
pub const REPORT_EXPIRY: Duration = Duration::from_secs(3);

/// Most child relays whose counts one broadcast keeps; a report from one more is refused.
pub const MAX_CHILDREN: usize = 1024;

/// The latest viewer counts the child relays of one broadcast reported, keyed by the
/// publication each came on (one per child relay and broadcast).
#[derive(Debug, Default)]
pub struct ChildCounts {
    children: HashMap<u64, Report>,
}

#[derive(Debug, Clone, Copy)]
struct Report {
    count: u64,
    at: Instant,
}

impl ChildCounts {
    /// No children yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// `child` (its publication) reports `count` viewers in its subtree at `now`. A new child
    /// beyond [`MAX_CHILDREN`] is refused (as rate limited) after dropping expired reports.
    pub fn report(&mut self, child: u64, count: u64, now: Instant) -> Result<(), Refusal> {
        if !self.children.contains_key(&child) && self.children.len() >= MAX_CHILDREN {
            self.expire(now);
            if self.children.len() >= MAX_CHILDREN {
                return Err(Refusal::RateLimited);
            }
        }
        self.children.insert(child, Report { count, at: now });
        Ok(())
    }

    /// `child`'s publication ended: it no longer counts.
    pub fn forget(&mut self, child: u64) {
        self.children.remove(&child);
    }

    /// The sum of the children's reports still fresh at `now` (older ones are dropped).
    pub fn sum(&mut self, now: Instant) -> u64 {
        self.expire(now);
        self.children
            .values()
            .fold(0u64, |sum, report| sum.saturating_add(report.count))
    }

    /// Children with a report kept.
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// Whether no child has a report kept.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        self.children
            .retain(|_, report| now.saturating_duration_since(report.at) < REPORT_EXPIRY);
    }
}

/// When a count goes out (to the parent): on a change, and at least every `refresh`.
#[derive(Debug, Clone)]
pub struct Reporter {
    refresh: Duration,
    last: Option<(u64, Instant)>,
}

impl Reporter {
    /// Nothing sent yet: the first count goes out at once.
    pub fn new(refresh: Duration) -> Self {
        Self { refresh, last: None }
    }

    /// Whether `count` should go out at `now`; if so it is taken as sent.
    pub fn due(&mut self, count: u64, now: Instant) -> bool {
        let due = match self.last {
            None => true,
            Some((sent, at)) => sent != count || now.saturating_duration_since(at) >= self.refresh,
        };
        if due {
            self.last = Some((count, now));
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_are_summed_forgotten_and_expire() {
        let start = Instant::now();
        let mut counts = ChildCounts::new();
        counts.report(1, 20, start).unwrap();
        counts.report(2, 30, start).unwrap();
        assert_eq!(counts.sum(start), 50);
        // A later report replaces the earlier one: a gauge, not a running total.
        counts.report(1, 5, start + Duration::from_secs(1)).unwrap();
        assert_eq!(counts.sum(start + Duration::from_secs(1)), 35);
        counts.forget(1);
        assert_eq!(counts.sum(start + Duration::from_secs(1)), 30);
        // Child 2 went silent: its report stops counting after the expiry.
        assert_eq!(counts.sum(start + REPORT_EXPIRY), 0);
        assert!(counts.is_empty());
    }

    #[test]
    fn the_children_table_is_capped() {
        let start = Instant::now();
        let mut counts = ChildCounts::new();
        for child in 0..MAX_CHILDREN as u64 {
            counts.report(child, 1, start).unwrap();
        }
        assert_eq!(counts.report(u64::MAX, 1, start), Err(Refusal::RateLimited));
        // A known child may still report, and expired ones make room.
        counts.report(0, 7, start).unwrap();
        assert_eq!(counts.sum(start), MAX_CHILDREN as u64 + 6);
        let later = start + REPORT_EXPIRY;
        counts.report(u64::MAX, 1, later).unwrap();
        assert_eq!(counts.len(), 1);
        // Huge reports saturate instead of overflowing.
        counts.report(1, u64::MAX, later).unwrap();
        assert_eq!(counts.sum(later), u64::MAX);
    }

    #[test]
    fn a_count_goes_out_on_change_and_every_refresh() {
        let start = Instant::now();
        let mut reporter = Reporter::new(REPORT_REFRESH);
        assert!(reporter.due(0, start), "the first count goes out at once, even 0");
        assert!(!reporter.due(0, start + Duration::from_millis(100)));
        assert!(
            reporter.due(3, start + Duration::from_millis(200)),
            "a change goes out"
        );
        assert!(!reporter.due(3, start + Duration::from_millis(1100)));
        assert!(reporter.due(3, start + Duration::from_millis(1200)), "refreshed");
        assert!(
            reporter.due(2, start + Duration::from_millis(1300)),
            "a drop goes out too"
        );
    }
}
