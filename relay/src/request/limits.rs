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

/// Limits on sessions and what each may ask (part of [`RelayConfig`](crate::config::RelayConfig)).
#[derive(Debug, Clone, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LimitSettings {
    /// Most concurrent sessions (raw QUIC and WebTransport together); more are refused.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_sessions: usize,

    /// Most concurrent subscriptions (SUBSCRIBE, FETCH, TRACK_STATUS) on one session.
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    pub max_subscriptions_per_session: usize,

    /// Most namespaces (PUBLISH_NAMESPACE and SUBSCRIBE_NAMESPACE) on one session.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_namespaces_per_session: usize,

    /// Largest control message accepted, in bytes (at most 65535, the draft-18 limit).
    #[arg(long, value_name = "BYTES", default_value = "65535", value_parser = crate::config::parse_size)]
    #[serde(with = "crate::config::serde_size")]
    pub max_message_size: usize,

    /// Largest object payload accepted, in bytes (suffixes KiB, MiB, GiB accepted).
    #[arg(long, value_name = "BYTES", default_value = "8MiB", value_parser = crate::config::parse_size)]
    #[serde(with = "crate::config::serde_size")]
    pub max_object_size: usize,

    /// Sustained control requests per second allowed on one session (token bucket rate).
    #[arg(long, value_name = "PER_SEC", default_value_t = 200)]
    pub request_rate: u32,

    /// Requests one session may make in a burst above --request-rate (token bucket size).
    #[arg(long, value_name = "N", default_value_t = 400)]
    pub request_burst: u32,
}

impl From<&LimitSettings> for SessionLimits {
    fn from(s: &LimitSettings) -> Self {
        Self {
            subscriptions: s.max_subscriptions_per_session,
            namespaces: s.max_namespaces_per_session,
            // The configuration checks both are at least 1.
            request_rate: NonZeroU32::new(s.request_rate).unwrap_or(NonZeroU32::MIN),
            request_burst: NonZeroU32::new(s.request_burst).unwrap_or(NonZeroU32::MIN),
        }
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
