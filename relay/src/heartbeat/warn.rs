//! Rate-limited warnings while heartbeats keep failing.

use tokio::time::Instant;

use super::WARN_EVERY;

/// Rate-limits the warning for failing heartbeats.
#[derive(Debug, Default)]
pub(super) struct WarnLimiter {
    last_warning: Option<Instant>,
    suppressed: u32,
    failing: bool,
}

impl WarnLimiter {
    /// A heartbeat failed at `now`: `Some(failures not warned about since the last warning)`
    /// when this one should be a warning.
    pub(super) fn failed(&mut self, now: Instant) -> Option<u32> {
        self.failing = true;
        match self.last_warning {
            Some(at) if now.saturating_duration_since(at) < WARN_EVERY => {
                self.suppressed = self.suppressed.saturating_add(1);
                None
            }
            _ => {
                self.last_warning = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }

    /// A heartbeat succeeded: true when it follows failures (worth an info line).
    pub(super) fn succeeded(&mut self) -> bool {
        self.last_warning = None;
        self.suppressed = 0;
        std::mem::take(&mut self.failing)
    }
}
