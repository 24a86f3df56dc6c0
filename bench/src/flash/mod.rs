//! `banyan-bench flash`: a flash crowd through the control plane. Viewers arrive at a steady
//! rate; each asks control where to watch (`GET /v1/watch/{broadcast}`, as the web client
//! does), connects to the relay it is given with the token it is given, and subscribes to the
//! broadcast's `video` track (the fan-out profile's [`subscriber`](crate::subscriber)). The
//! report counts the viewers that received media, time to first frame from arrival, and each
//! join stage's timings; a poller reads `GET /v1/status` to show every relay's peak load
//! against its capacity and when spawned relays appeared (see `docs/performance.md`,
//! "Flash crowd").
//!
//! # Module map
//! - [`args`]: the command line ([`FlashArgs`]) and the targets it may check.
//! - [`run`]: [`FlashBench`]: the arrivals, each viewer's join, the fleet poller.
//! - [`report`]: [`FlashReport`] (the stable JSON), its summary and the PASS/FAIL verdict.

pub mod args;
pub mod report;
pub mod run;

pub use args::FlashArgs;
pub use report::FlashReport;
pub use run::FlashBench;
