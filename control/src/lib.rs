//! `banyan-control`: Banyan's control plane.
//!
//! Relays report themselves by heartbeat; the control plane keeps that soft state, assigns
//! viewers and publishers to relays, answers relays' route lookups, and grows or shrinks the
//! relay tree when a flash crowd comes and goes.
//!
//! # Module map
//! - [`api`]: the HTTP/JSON contract (request and response types of every endpoint). With
//!   `default-features = false` this is the whole crate and depends on `serde` only.
//! - [`layered`] (feature `layered`, also used by `banyan-relay`): filling a clap struct from
//!   flags, prefixed environment variables and a TOML file, in that precedence (`load`), and
//!   the `--help`/`--version` exit a binary wants around it (`exit_on_help`).
//! - [`binary`] (feature `binary`, also used by `banyan-relay` and `banyan-publisher`): a
//!   service's `main` (config error → exit 2, stderr logging, run error → exit 1), the log
//!   set-up, and the SIGTERM/Ctrl-C future that ends a run.
//!
//! With the `server` feature (default):
//! - [`config`]: [`ControlConfig`](config::ControlConfig), one struct for flags,
//!   `BANYAN_CONTROL_*` variables and TOML; the policy numbers and why.
//! - [`registry`]: the fleet from heartbeats (soft state, expiry) and placement over it:
//!   viewer assignment, route lookup, origin choice. Pure, explicit `now`.
//! - [`rooms`]: chat room choice: the lowest room with space over reported and pending
//!   occupancy, a returning viewer's own room while it has space.
//! - [`autoscale`]: the flash-crowd autoscaler. Pure, explicit `now`: join velocity,
//!   replicate ahead, time-to-full, spawn ahead, cool-down and drain.
//! - [`spawner`]: the [`Spawner`](spawner::Spawner) trait; [`spawner::process`] (child
//!   `banyan-relay` processes) and, with feature `kubernetes`, `spawner::kubernetes`.
//! - [`token`]: minting viewer and publisher JWTs the relay accepts.
//! - [`http`]: the axum router: handlers, CORS, rate limiting, status page.
//! - [`history`]: the last minutes of the fleet, a bounded ring of samples for the status
//!   page's graphs (`/v1/history`).
//! - [`metrics`]: counters as `prometheus-client` metrics and their OpenMetrics text, with
//!   gauges computed from a status snapshot at scrape time.
//! - [`service`]: [`Control`](service::Control): binds, serves and runs the control loop.

pub mod api;
#[cfg(feature = "binary")]
pub mod binary;
#[cfg(feature = "layered")]
pub mod layered;

#[cfg(feature = "server")]
pub mod autoscale;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod history;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod registry;
#[cfg(feature = "server")]
pub mod rooms;
#[cfg(feature = "server")]
pub mod service;
#[cfg(feature = "server")]
pub mod spawner;
#[cfg(feature = "server")]
pub mod token;

#[cfg(feature = "server")]
pub use service::Control;
