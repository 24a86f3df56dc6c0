//! The relay's configuration: [`RelayConfig`], filled from command-line flags,
//! `BANYAN_RELAY_*` environment variables and an optional TOML file.
//!
//! Precedence, highest first: **flag > environment variable > TOML file > default**.
//!
//! - Every flag `--some-flag` has the variable `BANYAN_RELAY_SOME_FLAG` and the TOML key
//!   `some-flag`. An empty variable counts as unset.
//! - Boolean flags take an optional value: `--dev-cert` means `--dev-cert=true`, and
//!   `--dev-cert=false` (or `BANYAN_RELAY_DEV_CERT=false`) turns off a value set by a lower layer.
//!   `true/false`, `yes/no`, `on/off` and `1/0` are accepted.
//! - `--upstream` is repeatable; its variable holds a comma- or space-separated list and its TOML
//!   key an array. A higher layer's list replaces a lower layer's, it is not appended to.
//! - The TOML file is named by `--config` / `BANYAN_RELAY_CONFIG`; unknown keys are an error.
//!
//! [`RelayConfig`] is a clap and serde struct of sub-configs that live beside the module they
//! configure, flattened so flags and TOML keys stay flat: [`ServerSettings`] (`relay/mod.rs`),
//! [`HeartbeatSettings`] (`heartbeat/mod.rs`), [`UpstreamSettings`] (`upstream/mod.rs`),
//! [`AuthSettings`] (`auth/mod.rs`), [`LimitSettings`] (`request/limits.rs`), [`CacheSettings`]
//! (`track/cache.rs`), [`TrackSettings`] (`track/mod.rs`) and [`InteractSettings`]
//! (`interact/`). The layers are merged by [`banyan_control::layered::load`], the same code as
//! the control plane's.
//!
//! - `mod.rs`: [`RelayConfig`] and its loading.
//! - `validate.rs`: [`RelayConfig::validate`], the range and consistency checks, which run after
//!   the merge so they apply to values from every layer, and [`ConfigError`].
//! - `parse.rs`: the value parsers the sub-configs share (sizes, bit rates, URLs, host names),
//!   for flags and, through the `serde_*` modules, for TOML.
//! - `tests.rs`: how the layers merge (validation and parsing are tested beside their code).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::AuthSettings;
use crate::heartbeat::HeartbeatSettings;
use crate::interact::InteractSettings;
use crate::relay::ServerSettings;
use crate::request::LimitSettings;
use crate::track::cache::CacheSettings;
use crate::track::TrackSettings;
use crate::upstream::UpstreamSettings;

mod parse;
mod validate;

pub(crate) use parse::{deserialize_public_host, serde_bitrate, serde_control, serde_size, serde_urls};
pub use parse::{parse_bitrate, parse_control, parse_public_host, parse_size, parse_upstream};
pub use validate::ConfigError;

/// The prefix of every environment variable the relay reads.
pub const ENV_PREFIX: &str = "BANYAN_RELAY_";

/// The largest control message draft-18 allows (the length field is 16 bits).
pub const MAX_CONTROL_MESSAGE_SIZE: usize = 65535;

const AFTER_HELP: &str = "\
Every flag can also be set by an environment variable BANYAN_RELAY_<FLAG> (the flag's name in
SCREAMING_SNAKE_CASE, e.g. BANYAN_RELAY_MAX_SESSIONS=500; lists comma-separated) or by a key in
the --config TOML file (the flag's name, e.g. max-sessions = 500).
Precedence: flag > environment variable > TOML file > default.";

/// Everything the relay binary can be told, from flags, `BANYAN_RELAY_*` variables and TOML.
///
/// Build one with [`RelayConfig::load`] (process arguments and environment) or
/// [`RelayConfig::load_from`] (tests); both merge the layers and [`validate`](Self::validate).
#[derive(Debug, Clone, PartialEq, clap::Parser, Serialize, Deserialize)]
#[command(name = "banyan-relay", version, about, long_about = None, after_help = AFTER_HELP)]
#[serde(rename_all = "kebab-case")]
pub struct RelayConfig {
    /// Listening addresses and the certificate.
    #[command(flatten)]
    #[serde(flatten)]
    pub server: ServerSettings,

    /// The control plane and what heartbeats report.
    #[command(flatten)]
    #[serde(flatten)]
    pub heartbeat: HeartbeatSettings,

    /// Parent relays.
    #[command(flatten)]
    #[serde(flatten)]
    pub upstream: UpstreamSettings,

    /// Client authorization.
    #[command(flatten)]
    #[serde(flatten)]
    pub auth: AuthSettings,

    /// A TOML file with more settings (keys are flag names, e.g. max-sessions = 500).
    /// Flags and environment variables override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// This relay's name in logs, metrics, /health and loop detection
    /// [default: <hostname>:<port of --listen>].
    #[arg(long, value_name = "ID", default_value = "", hide_default_value = true)]
    pub relay_id: String,

    /// Session limits.
    #[command(flatten)]
    #[serde(flatten)]
    pub limits: LimitSettings,

    /// The group cache.
    #[command(flatten)]
    #[serde(flatten)]
    pub cache: CacheSettings,

    /// Lagging and waiting subscribers.
    #[command(flatten)]
    #[serde(flatten)]
    pub track: TrackSettings,

    /// Likes, comments and gifts.
    #[command(flatten)]
    #[serde(flatten)]
    pub interact: InteractSettings,

    /// A new session allowed to publish a live namespace takes it over at once (a restarted
    /// encoder is back on air without waiting for its dead session to time out): the old
    /// session's PUBLISH_NAMESPACE ends and subscribers move to the new publisher at its next
    /// group. `false` refuses the newcomer while the first session lives.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub publisher_takeover: bool,

    /// On SIGTERM, how long to wait for sessions to leave after GOAWAY before closing them.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    #[serde(with = "banyan_control::layered::serde_duration")]
    pub drain_timeout: Duration,

    /// Log filter in tracing's EnvFilter syntax (e.g. info, banyan_relay=debug,info).
    #[arg(long, value_name = "FILTER", default_value = "info")]
    pub log: String,
}

impl RelayConfig {
    /// The configuration from the process's arguments, environment and `--config` file, validated.
    ///
    /// `--help` and `--version` print and exit the process (status 0), like any clap program.
    pub fn load() -> anyhow::Result<Self> {
        banyan_control::layered::exit_on_help(Self::load_from(std::env::args_os(), |key| {
            std::env::var_os(key).map(|v| v.to_string_lossy().into_owned())
        }))
    }

    /// The configuration from `args` (the first item is the program name), the variables that
    /// `env` returns (called with names like `BANYAN_RELAY_LISTEN`) and the `--config` file,
    /// merged (flag > env > file > default) and validated.
    ///
    /// A `--help`/`--version` request comes back as an error holding a [`clap::Error`].
    pub fn load_from<I, T, E>(args: I, env: E) -> anyhow::Result<Self>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
        E: Fn(&str) -> Option<String>,
    {
        let mut config: Self = banyan_control::layered::load(ENV_PREFIX, &[',', ' ', '\t', '\n'], args, env)?;
        if config.relay_id.is_empty() {
            config.relay_id = format!("{}:{}", hostname(), config.server.listen.port());
        }
        config.validate()?;
        Ok(config)
    }

    /// The viewer capacity reported to the control plane: `--capacity-viewers`, or
    /// `--max-sessions` when not given.
    pub fn capacity_viewers(&self) -> u32 {
        self.heartbeat
            .capacity_viewers
            .unwrap_or_else(|| u32::try_from(self.limits.max_sessions).unwrap_or(u32::MAX))
    }
}

/// The environment variable for a flag's argument id: `max_sessions` → `BANYAN_RELAY_MAX_SESSIONS`.
pub fn env_var_name(id: &str) -> String {
    banyan_control::layered::env_var_name(ENV_PREFIX, id)
}

/// This host's name, for the default relay id.
fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .find(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "relay".to_owned())
}

#[cfg(test)]
mod tests;
