//! Spawners grow and shrink the relay fleet; relays they start register themselves by
//! heartbeat like any other.
//!
//! - [`process`]: child `banyan-relay` processes on this host (the default).
//! - `kubernetes` (feature `kubernetes`): scales a relay StatefulSet through the Kubernetes API.

use std::future::Future;
use std::pin::Pin;

pub mod process;

#[cfg(feature = "kubernetes")]
pub mod kubernetes;

/// Which spawner grows the fleet and what it gives the relays it starts (part of
/// [`ControlConfig`](crate::config::ControlConfig)).
#[derive(Debug, Clone, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SpawnerSettings {
    /// Spawner backend.
    #[arg(long, value_enum, default_value = "process")]
    pub spawner: crate::config::SpawnerKind,

    /// The banyan-relay binary for the process spawner [default: beside this executable].
    #[arg(long, value_name = "PATH")]
    pub relay_binary: Option<std::path::PathBuf>,

    /// Region given to spawned relays.
    #[arg(long, value_name = "REGION", default_value = "local")]
    pub spawn_region: String,

    /// Viewer capacity given to spawned relays (--capacity-viewers); also the capacity the
    /// autoscaler expects from a relay it has spawned but not heard from yet.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub spawn_capacity_viewers: u32,

    /// Host spawned relays bind to and advertise.
    #[arg(long, value_name = "HOST", default_value = "127.0.0.1")]
    pub spawn_host: String,

    /// An extra argument for every spawned relay (repeatable), e.g. --spawn-relay-arg=--dev-cert.
    #[arg(long = "spawn-relay-arg", value_name = "ARG", allow_hyphen_values = true)]
    #[serde(default)]
    pub spawn_relay_arg: Vec<String>,

    /// Directory for spawned relays' generated configs and logs [default: a new temp directory].
    #[arg(long, value_name = "DIR")]
    pub spawn_dir: Option<std::path::PathBuf>,

    /// Kubernetes namespace of the relay StatefulSet.
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub k8s_namespace: String,

    /// Name of the relay StatefulSet (its pods are relay ids `<name>-<ordinal>`).
    #[arg(long, value_name = "NAME", default_value = "banyan-relay")]
    pub k8s_statefulset: String,
}

/// A boxed future, so [`Spawner`] is object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a spawner operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// Starting or signalling a process failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The relay binary does not exist or cannot run.
    #[error("relay binary {0}: not found or not executable (build it with `cargo build -p banyan-relay` or give --relay-binary)")]
    NoBinary(String),
    /// The relay id is not one this spawner started.
    #[error("relay {0:?} was not spawned here")]
    Unknown(String),
    /// The fleet backend (e.g. the Kubernetes API) refused or failed.
    #[error("backend: {0}")]
    Backend(String),
}

/// Starts and stops relays.
pub trait Spawner: Send + Sync + std::fmt::Debug {
    /// The backend's name for logs and metrics.
    fn name(&self) -> &'static str;

    /// Start one relay; returns the relay id it will register with.
    fn spawn(&self) -> BoxFuture<'_, Result<String, SpawnError>>;

    /// Stop a relay this spawner started (it should already be drained).
    fn stop(&self, relay_id: String) -> BoxFuture<'_, Result<(), SpawnError>>;

    /// The relay was ordered to drain and will exit by itself: do not restart it when it does.
    fn expect_exit(&self, _relay_id: &str) {}

    /// Housekeeping, called every tick: restart crashed relays, reap stopped ones.
    fn supervise(&self) -> BoxFuture<'_, Result<(), SpawnError>>;

    /// Relays started and not yet reaped.
    fn running(&self) -> Vec<String>;
}
