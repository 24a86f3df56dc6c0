//! The relay's memory of its tracks: each track is a [`banyan_moq::track`] producer kept to
//! the newest `--cache-groups` groups, all of them within one `--cache-bytes` budget, read by
//! one forwarder per downstream subscriber. This file holds those settings and what the cache
//! reports to the relay's metrics.

use std::sync::Arc;

use banyan_moq::track::Observer;
use tokio::time::Instant;

use crate::metrics::Metrics;

/// How much the cache keeps (part of [`RelayConfig`](crate::config::RelayConfig)).
#[derive(Debug, Clone, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CacheSettings {
    /// Most recent groups kept in memory per track, so new subscribers start at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub cache_groups: usize,

    /// Most bytes of cached objects across all tracks (suffixes KiB, MiB, GiB accepted).
    #[arg(long, value_name = "BYTES", default_value = "256MiB", value_parser = crate::config::parse_size)]
    #[serde(with = "crate::config::serde_size")]
    pub cache_bytes: usize,
}

/// Counts what the relay's tracks do in the relay's metrics.
#[derive(Debug)]
pub struct CacheObserver(pub Arc<Metrics>);

impl Observer for CacheObserver {
    fn kept(&self, bytes: usize) {
        self.0.cache_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    fn evicted(&self) {
        self.0.cache_evictions.inc();
    }

    fn lookup(&self, hit: bool) {
        let counter = if hit {
            &self.0.cache_hits
        } else {
            &self.0.cache_misses
        };
        counter.inc();
    }

    fn sent(&self, bytes: usize, received: Instant) {
        self.0.objects_out.inc();
        self.0.bytes_out.inc_by(bytes as u64);
        self.0.forward_delay.observe(received.elapsed().as_secs_f64());
    }
}
