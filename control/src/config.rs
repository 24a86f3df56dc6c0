//! The control plane's configuration: one struct, [`ControlConfig`], filled from command-line
//! flags, `BANYAN_CONTROL_*` environment variables and an optional TOML file.
//!
//! Precedence, highest first: **flag > environment variable > TOML file > default**.
//!
//! - Every flag `--some-flag` has the variable `BANYAN_CONTROL_SOME_FLAG` and the TOML key
//!   `some-flag`. An empty variable counts as unset.
//! - The TOML file is named by `--config` / `BANYAN_CONTROL_CONFIG`; unknown keys are an error.
//! - `--spawn-relay-arg` is repeatable; in TOML it is an array of strings.
//!
//! How: each variable becomes a `--flag=value` placed before the real arguments and clap parses
//! both with `args_override_self`, so a real flag wins and both use the same value parsers.
//! Values clap saw on its command line are explicit; the file's keys replace every other value
//! in a TOML rendering of the parsed struct, which is then deserialized (`deny_unknown_fields`)
//! and [validated](ControlConfig::validate).
//!
//! # Policy numbers and why
//! The defaults assume relays that take a few seconds to boot and register, heartbeats every
//! second and viewers that arrive at up to hundreds per second in a flash crowd:
//! - `heartbeat-interval` 1 s, `heartbeat-expiry` 3.5 s: three missed heartbeats (plus half an
//!   interval of jitter) drop a relay; a restarted control plane hears from every relay within
//!   one interval, well inside the "two intervals" promise.
//! - `assignment-grace` 3 s: a viewer told to join a relay counts against it until a heartbeat
//!   sent at least this long after the assignment could show it (connect time + one interval +
//!   margin), so a burst between two heartbeats cannot overfill a relay.
//! - `high-water` 0.8: new viewers go to relays below 80 % of capacity; the last 20 % absorbs
//!   assignments in flight and viewers reconnecting after a GOAWAY elsewhere.
//! - `max-children` 8, `max-depth` 4: a parent's egress for a broadcast is bounded to 8 copies;
//!   with ~5–15 ms per relay hop (forwarding + loopback/LAN RTT) 4 hops stay far inside the
//!   250 ms glass-to-glass budget, and 8⁴ = 4096 edges is more than any fleet here.
//! - `join-rate-halflife` 2 s: smooths the per-second join counts so one burst does not look
//!   like a trend, yet a real surge shows within a couple of ticks.
//! - `replicate-lead` 5 s: a broadcast is replicated onto another relay when its relays would
//!   reach high-water within 5 s at the current join rate — the time for a new edge to resolve
//!   its parent and pull the first group, with margin.
//! - `spawn-lead` 15 s: the fleet spawns when it would be full within 15 s — relay boot, first
//!   heartbeat (1 s) and the replicate lead; spawning later leaves viewers without a relay.
//! - `idle-cooldown` 30 s: a spawned relay with no sessions for 30 s (and no join pressure) is
//!   drained and stopped; long enough that a crowd's second wave reuses it, short enough that
//!   idle capacity is not kept for minutes.
//! - `watch-rate` 5000/s with `watch-burst` 10000: far above a real flash crowd's arrival rate,
//!   far below what the service handles (see the benchmark), so a flood is refused with 429
//!   instead of starving heartbeats.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use serde::{Deserialize, Serialize};

/// The prefix of every environment variable the control plane reads.
pub const ENV_PREFIX: &str = "BANYAN_CONTROL_";

/// Which spawner backend grows the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SpawnerKind {
    /// Child `banyan-relay` processes on this host.
    Process,
    /// Scale a relay StatefulSet through the Kubernetes API (feature `kubernetes`).
    Kubernetes,
    /// Never spawn; only assign to relays that register themselves.
    None,
}

/// Everything `banyan-control` can be told.
#[derive(Debug, Clone, PartialEq, Parser, Serialize, Deserialize)]
#[command(name = "banyan-control", version, about, long_about = None,
          after_help = "Every flag can also be set by BANYAN_CONTROL_<FLAG> (e.g. BANYAN_CONTROL_LISTEN) or by a key in the --config TOML file (e.g. listen = \"0.0.0.0:8080\"). Precedence: flag > environment > file > default.")]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ControlConfig {
    /// TCP address of the HTTP API.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// A TOML file with more settings (keys are flag names).
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// The URL relays use to reach this service (given to spawned relays as --control)
    /// [default: http://<listen address>].
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,

    /// Key for minting viewer and publisher tokens: an HS256 secret (≥ 32 bytes, whitespace
    /// trimmed) or an ES256 P-256 PKCS#8 PEM private key; the relays' --auth-key must match.
    /// Without it tokens are empty (relays must run --insecure-no-auth).
    #[arg(long, value_name = "FILE")]
    pub auth_key: Option<PathBuf>,

    /// Lifetime of a viewer token (it only has to last until the viewer connects).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    #[serde(with = "serde_duration")]
    pub token_ttl: Duration,

    /// Lifetime of a publisher token.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    #[serde(with = "serde_duration")]
    pub publish_token_ttl: Duration,

    /// How often relays send heartbeats (told to them in every heartbeat response).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    #[serde(with = "serde_duration")]
    pub heartbeat_interval: Duration,

    /// A relay not heard from for this long is dropped.
    #[arg(long, value_name = "DURATION", default_value = "3500ms", value_parser = humantime::parse_duration)]
    #[serde(with = "serde_duration")]
    pub heartbeat_expiry: Duration,

    /// How long an assignment counts against a relay before heartbeats are trusted to show it.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = humantime::parse_duration)]
    #[serde(with = "serde_duration")]
    pub assignment_grace: Duration,

    /// Fraction of a relay's capacity above which it gets no new viewers while others have room.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.8)]
    pub high_water: f64,

    /// Most child relays one parent feeds for one namespace.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub max_children: u32,

    /// Most relay hops below a namespace's origin.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub max_depth: u32,

    /// How many parent URLs a route lookup returns (the first is preferred).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub route_alternatives: usize,

    /// Viewers per chat room.
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub chat_room_size: u64,

    /// Sustained viewer/publisher assignments per second before 429.
    #[arg(long, value_name = "PER_SEC", default_value_t = 5000)]
    pub watch_rate: u32,

    /// Assignments allowed in a burst above --watch-rate.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub watch_burst: u32,

    /// How often expiry, the autoscaler and the spawner's supervision run.
    #[arg(long, value_name = "DURATION", default_value = "250ms", value_parser = humantime::parse_duration)]
    #[serde(with = "serde_duration")]
    pub tick: Duration,

    /// Half-life of the smoothed join rate per broadcast.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    #[serde(with = "serde_duration")]
    pub join_rate_halflife: Duration,

    /// Replicate a broadcast onto another relay when its relays would reach high-water within this.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    #[serde(with = "serde_duration")]
    pub replicate_lead: Duration,

    /// Spawn relays when the fleet would be full within this.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    #[serde(with = "serde_duration")]
    pub spawn_lead: Duration,

    /// A spawned relay that has not registered within this is written off (and stopped).
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = humantime::parse_duration)]
    #[serde(with = "serde_duration")]
    pub spawn_timeout: Duration,

    /// Drain and stop a spawned relay after it has been idle this long.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    #[serde(with = "serde_duration")]
    pub idle_cooldown: Duration,

    /// Stop a draining spawned relay after this even if sessions remain.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    #[serde(with = "serde_duration")]
    pub drain_timeout: Duration,

    /// Most relays alive at once that this control plane spawned.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub max_spawned: u32,

    /// Most relays spawned in one tick.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub max_spawn_per_tick: u32,

    /// Spawner backend.
    #[arg(long, value_enum, default_value = "process")]
    pub spawner: SpawnerKind,

    /// The banyan-relay binary for the process spawner [default: beside this executable].
    #[arg(long, value_name = "PATH")]
    pub relay_binary: Option<PathBuf>,

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
    pub spawn_dir: Option<PathBuf>,

    /// Kubernetes namespace of the relay StatefulSet.
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub k8s_namespace: String,

    /// Name of the relay StatefulSet (its pods are relay ids `<name>-<ordinal>`).
    #[arg(long, value_name = "NAME", default_value = "banyan-relay")]
    pub k8s_statefulset: String,

    /// Log filter in tracing's EnvFilter syntax.
    #[arg(long, value_name = "FILTER", default_value = "info")]
    pub log: String,
}

impl ControlConfig {
    /// The configuration from the process's arguments, environment and `--config` file.
    /// `--help`/`--version` print and exit.
    pub fn load() -> anyhow::Result<Self> {
        let result = Self::load_from(std::env::args_os(), |k| std::env::var(k).ok());
        if let Err(err) = &result {
            if let Some(clap_err) = err.downcast_ref::<clap::Error>() {
                if matches!(
                    clap_err.kind(),
                    clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
                ) {
                    clap_err.exit();
                }
            }
        }
        result
    }

    /// The configuration from `args` (first item: program name), the variables `env` returns
    /// and the `--config` file, merged (flag > env > file > default) and validated.
    pub fn load_from<I, T, E>(args: I, env: E) -> anyhow::Result<Self>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
        E: Fn(&str) -> Option<String>,
    {
        let mut args = args.into_iter().map(Into::into);
        let program = args.next().unwrap_or_else(|| "banyan-control".into());
        let command = Self::command().args_override_self(true);
        let mut full: Vec<OsString> = vec![program];
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            let var = env_var_name(arg.get_id().as_str());
            if let Some(value) = env(&var).filter(|v| !v.is_empty()) {
                full.push(format!("--{long}={value}").into());
            }
        }
        full.extend(args);
        let matches = command.try_get_matches_from(full)?;
        let mut config = Self::from_arg_matches(&matches)?;
        if let Some(path) = config.config.clone() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading config file {}", path.display()))?;
            let file: toml::Table =
                toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))?;
            let mut merged = toml::Table::try_from(&config).context("rendering the configuration")?;
            let ids: Vec<String> = Self::command()
                .get_arguments()
                .map(|a| a.get_id().as_str().to_owned())
                .collect();
            for (key, value) in file {
                let id = key.replace('-', "_");
                // Unknown keys go through to deserialization, which names them.
                let explicit =
                    ids.contains(&id) && matches.value_source(&id) == Some(ValueSource::CommandLine);
                if !explicit {
                    merged.insert(key, value);
                }
            }
            config = merged
                .try_into()
                .with_context(|| format!("in config file {}", path.display()))?;
            config.config = Some(path);
        }
        config.validate()?;
        Ok(config)
    }

    /// Check ranges and consistency.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.high_water > 0.0 && self.high_water <= 1.0,
            "high-water must be in (0, 1], got {}",
            self.high_water
        );
        anyhow::ensure!(self.max_children >= 1, "max-children must be at least 1");
        anyhow::ensure!(self.max_depth >= 1, "max-depth must be at least 1");
        anyhow::ensure!(
            self.route_alternatives >= 1,
            "route-alternatives must be at least 1"
        );
        anyhow::ensure!(self.chat_room_size >= 1, "chat-room-size must be at least 1");
        anyhow::ensure!(self.watch_rate >= 1, "watch-rate must be at least 1");
        anyhow::ensure!(
            self.spawn_capacity_viewers >= 1,
            "spawn-capacity-viewers must be at least 1"
        );
        anyhow::ensure!(
            self.heartbeat_expiry > self.heartbeat_interval,
            "heartbeat-expiry ({:?}) must exceed heartbeat-interval ({:?})",
            self.heartbeat_expiry,
            self.heartbeat_interval
        );
        anyhow::ensure!(!self.tick.is_zero(), "tick must be positive");
        anyhow::ensure!(
            !self.join_rate_halflife.is_zero(),
            "join-rate-halflife must be positive"
        );
        if self.spawner == SpawnerKind::Kubernetes && !cfg!(feature = "kubernetes") {
            anyhow::bail!("--spawner kubernetes needs banyan-control built with the `kubernetes` feature");
        }
        Ok(())
    }

    /// The URL relays reach this service at.
    pub fn control_url(&self, bound: SocketAddr) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"))
            .trim_end_matches('/')
            .to_owned()
    }

    /// The registry and placement policy.
    pub fn policy(&self) -> crate::registry::Policy {
        crate::registry::Policy {
            heartbeat_interval: self.heartbeat_interval,
            heartbeat_expiry: self.heartbeat_expiry,
            assignment_grace: self.assignment_grace,
            high_water: self.high_water,
            max_children: self.max_children,
            max_depth: self.max_depth,
            route_alternatives: self.route_alternatives,
            chat_room_size: self.chat_room_size,
        }
    }

    /// The autoscaler policy.
    pub fn autoscale(&self) -> crate::autoscale::AutoscalePolicy {
        crate::autoscale::AutoscalePolicy {
            high_water: self.high_water,
            join_rate_halflife: self.join_rate_halflife,
            replicate_lead: self.replicate_lead,
            spawn_lead: self.spawn_lead,
            spawn_timeout: self.spawn_timeout,
            idle_cooldown: self.idle_cooldown,
            drain_timeout: self.drain_timeout,
            max_spawned: if self.spawner == SpawnerKind::None {
                0
            } else {
                self.max_spawned
            },
            max_spawn_per_tick: self.max_spawn_per_tick,
            spawn_capacity: self.spawn_capacity_viewers,
        }
    }
}

/// The environment variable for a flag id: `heartbeat_interval` → `BANYAN_CONTROL_HEARTBEAT_INTERVAL`.
pub fn env_var_name(id: &str) -> String {
    format!("{ENV_PREFIX}{}", id.replace('-', "_").to_ascii_uppercase())
}

mod serde_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::HashMap;

    use super::*;

    fn load(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<ControlConfig> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        ControlConfig::load_from(
            std::iter::once("banyan-control").chain(args.iter().copied()),
            |k| env.get(k).cloned(),
        )
    }

    #[test]
    fn defaults() {
        let c = load(&[], &[]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.heartbeat_interval, Duration::from_secs(1));
        assert_eq!(c.heartbeat_expiry, Duration::from_millis(3500));
        assert_eq!(c.spawner, SpawnerKind::Process);
        assert_eq!(c.max_children, 8);
        assert!(c.spawn_relay_arg.is_empty());
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("control.toml");
        std::fs::write(
            &file,
            "max-children = 3\nmax-depth = 6\nhigh-water = 0.5\ntoken-ttl = \"2m\"\nspawn-relay-arg = [\"--dev-cert\"]\nspawner = \"none\"\n",
        )
        .unwrap();
        let c = load(
            &["--config", file.to_str().unwrap(), "--max-children", "5"],
            &[
                ("BANYAN_CONTROL_MAX_CHILDREN", "4"),
                ("BANYAN_CONTROL_MAX_DEPTH", "7"),
                ("BANYAN_CONTROL_LISTEN", "127.0.0.1:9999"),
                ("BANYAN_CONTROL_ROUTE_ALTERNATIVES", ""),
            ],
        )
        .unwrap();
        assert_eq!(c.max_children, 5, "flag beats env and file");
        assert_eq!(c.max_depth, 7, "env beats file");
        assert_eq!(c.high_water, 0.5, "file beats default");
        assert_eq!(c.token_ttl, Duration::from_secs(120));
        assert_eq!(c.listen.port(), 9999, "env beats default");
        assert_eq!(c.route_alternatives, 2, "empty variable is unset");
        assert_eq!(c.spawn_relay_arg, vec!["--dev-cert".to_owned()]);
        assert_eq!(c.spawner, SpawnerKind::None);
        assert_eq!(c.config.as_deref(), Some(file.as_path()));
    }

    #[test]
    fn env_reaches_the_config_file_flag() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "max-depth = 2\n").unwrap();
        let c = load(&[], &[("BANYAN_CONTROL_CONFIG", file.to_str().unwrap())]).unwrap();
        assert_eq!(c.max_depth, 2);
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "no-such-key = 1\n").unwrap();
        let err = load(&["--config", file.to_str().unwrap()], &[]).unwrap_err();
        assert!(format!("{err:#}").contains("no-such-key"), "{err:#}");
        let err = load(&["--high-water", "1.5"], &[]).unwrap_err();
        assert!(err.to_string().contains("high-water"), "{err}");
        let err = load(&["--heartbeat-expiry", "500ms"], &[]).unwrap_err();
        assert!(err.to_string().contains("heartbeat-expiry"), "{err}");
        assert!(load(&["--max-depth", "x"], &[]).is_err());
    }
}
