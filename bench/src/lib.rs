//! `banyan-bench`: a load generator and meter for any MoQT draft-18 relay.
//!
//! Publishers advertise `bench/<i>` and answer SUBSCRIBE for `video` with a synthetic live
//! stream (one group per GOP, one object per frame, each carrying its capture time as the LOC
//! Timestamp property, written and read with `banyan_media::loc`); subscribers ramp up, read everything, and record latency, time to
//! first object and group delivery; the relay's CPU and RSS are sampled from `/proc`.
//!
//! # Module map
//! - [`profile`]: the command line ([`Args`]) and the validated [`Profile`].
//! - [`run`]: [`Bench`]: one run from connect to report.
//! - [`publisher`]: synthetic live broadcasts: one `banyan_moq::track` producer per broadcast,
//!   paced by one task, and a `Fanout` per subscription.
//! - [`subscriber`]: subscribers and what they record.
//! - [`report`]: [`Report`] (the stable JSON), its summary, [`Progress`] lines; latency
//!   distributions are `banyan_media::stats`.
//! - [`procfs`]: `/proc/<pid>/stat` and `/status` parsing and CPU% arithmetic.
//! - [`flash`]: the `flash` mode: a flash crowd of viewers that ask the control plane where
//!   to watch (`GET /v1/watch`) and subscribe there ([`FlashBench`]).
//! - [`interact`]: the `interactions` mode: viewers send likes and comments to one relay,
//!   watchers read the totals and chat on another ([`InteractBench`]).
//!
//! [`Bench::run`] spawns its sessions' tasks on the caller's runtime and joins or aborts all
//! of them before it returns.

pub mod flash;
pub mod interact;
pub mod procfs;
pub mod profile;
pub mod publisher;
pub mod report;
pub mod run;
pub mod subscriber;

pub use flash::{FlashArgs, FlashBench, FlashReport};
pub use interact::{InteractArgs, InteractBench, InteractReport};
pub use profile::{Args, Profile, TransportChoice};
pub use report::{Progress, Report};
pub use run::Bench;

/// Why a run could not start or complete.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The arguments make no sense.
    #[error("{0}")]
    Config(String),
    /// The TLS configuration could not be built (e.g. unreadable `--tls-ca`).
    #[error("TLS configuration")]
    Tls(#[from] banyan_certs::Error),
    /// A client endpoint could not be created.
    #[error("client endpoint: {0}")]
    Client(banyan_moq::session::Error),
    /// A publisher could not connect or advertise its namespaces; the run cannot proceed.
    #[error("publisher {index} could not connect or advertise its namespaces")]
    Publisher {
        /// Which publisher.
        index: usize,
        /// What failed.
        source: banyan_moq::session::Error,
    },
    /// `--relay-pid` names a process whose `/proc` files cannot be read.
    #[error("sampling the relay process")]
    Proc(#[from] procfs::ProcError),
}
