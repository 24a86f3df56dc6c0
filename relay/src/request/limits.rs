//! Per-session limits: the request rate and counted slots for subscriptions and namespaces.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Limits applied to each session.
#[derive(Clone, Debug)]
pub struct SessionLimits {
    /// Concurrent subscriptions.
    pub subscriptions: usize,
    /// Concurrently published namespaces.
    pub namespaces: usize,
    /// Sustained requests per second.
    pub request_rate: f64,
    /// Requests allowed in a burst.
    pub request_burst: f64,
}

/// A token bucket for the session's request rate.
#[derive(Debug)]
pub(super) struct RateLimit {
    pub(super) tokens: f64,
    pub(super) last: Instant,
    pub(super) rate: f64,
    pub(super) burst: f64,
}

impl RateLimit {
    pub(super) fn allow(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A counted slot in a per-session limit, released on drop.
pub(super) struct Slot(Arc<AtomicUsize>);

impl Slot {
    pub(super) fn take(counter: &Arc<AtomicUsize>, limit: usize) -> Option<Slot> {
        let taken = counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < limit).then_some(n + 1)
        });
        taken.ok().map(|_| Slot(counter.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
