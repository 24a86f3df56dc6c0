//! `banyan-bench interactions`: likes and comments through a relay tree (see
//! `docs/interactions.md` for the tracks and payloads, `docs/performance.md` for the method).
//!
//! # Module map
//! - [`args`]: the command line ([`InteractArgs`]) and the validated [`InteractProfile`].
//! - [`run`]: [`InteractBench`]: one run from connect to report, and the like-to-visible method.
//! - [`report`]: [`InteractReport`] (the stable JSON) and its summary.
//! - [`wire`]: the LIKE and COMMENT payloads viewers send, the `likes` and `chat/<room>`
//!   objects watchers read.
//! - [`metrics`]: reading a relay's Prometheus counters over HTTP.

pub mod args;
pub mod metrics;
pub mod report;
pub mod run;
pub mod wire;

pub use args::{InteractArgs, InteractProfile};
pub use report::InteractReport;
pub use run::InteractBench;
