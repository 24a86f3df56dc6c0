//! Per-session limits: the request rate and counted slots for subscriptions and namespaces.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use banyan_moq::coding::RequestErrorCode;
use governor::{DefaultDirectRateLimiter, Quota};

use super::SessionHandler;
use crate::metrics::RefuseReason;

/// Limits applied to each session.
#[derive(Clone, Debug)]
pub struct SessionLimits {
    /// Concurrent subscriptions.
    pub subscriptions: usize,
    /// Concurrently published namespaces.
    pub namespaces: usize,
    /// Sustained requests per second.
    pub request_rate: NonZeroU32,
    /// Requests allowed in a burst (a new session may make this many at once).
    pub request_burst: NonZeroU32,
}

impl SessionLimits {
    /// A limiter for one session's request rate: a full burst to start with, refilled at
    /// `request_rate` per second up to `request_burst`.
    pub(super) fn rate_limiter(&self) -> DefaultDirectRateLimiter {
        DefaultDirectRateLimiter::direct(Quota::per_second(self.request_rate).allow_burst(self.request_burst))
    }
}

/// The REQUEST_ERROR code and reason for a request over a per-session limit.
pub(super) type OverLimit = (RequestErrorCode, &'static str);

impl SessionHandler {
    /// A slot in the session's limit on namespaces (PUBLISH_NAMESPACE, SUBSCRIBE_NAMESPACE,
    /// SUBSCRIBE_TRACKS), or, counted, the refusal for one too many.
    pub(super) fn namespace_slot(&self) -> Result<Slot, OverLimit> {
        Slot::take(&self.namespaces, self.shared.limits.namespaces).ok_or_else(|| {
            self.shared.metrics.refuse(RefuseReason::Limit);
            (
                RequestErrorCode::ExcessiveLoad,
                "too many namespaces on this session",
            )
        })
    }

    /// A slot in the session's limit on subscriptions, or, counted, the refusal for one too
    /// many.
    pub(super) fn subscription_slot(&self) -> Result<Slot, OverLimit> {
        Slot::take(&self.subscriptions, self.shared.limits.subscriptions).ok_or_else(|| {
            self.shared.metrics.refuse(RefuseReason::Limit);
            (
                RequestErrorCode::ExcessiveLoad,
                "too many subscriptions on this session",
            )
        })
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
