//! Harness for Banyan's workspace integration tests.
//!
//! Module map:
//! - [`impair`]: a userspace UDP impairment proxy (seeded delay, jitter, loss, reordering,
//!   duplication and a rate cap, independently per direction), with counters that prove the
//!   impairment happened. Kernel netem is not available where these tests run.
//!
//! The `banyan-impair` binary (`src/bin/banyan-impair.rs`) wraps [`impair`] for manual use.
//! The integration tests themselves live under `tests/`.

pub mod impair;
