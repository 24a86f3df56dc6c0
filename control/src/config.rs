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
//! [`ControlConfig`] is a clap and serde struct of sub-configs that live beside the module they
//! configure, flattened so flags and TOML keys stay flat: [`TokenSettings`] (token.rs),
//! [`Policy`] (registry.rs, placement), [`AutoscaleSettings`] (autoscale.rs) and
//! [`SpawnerSettings`] (spawner/). The layers are merged by [`crate::layered::load`], the same
//! code as the relay's; a repeated flag's last value wins. [`ControlConfig::validate`] runs
//! after the merge.
//!
//! # Policy numbers and why
//! The defaults assume relays that take a few seconds to boot and register, heartbeats every
//! second and viewers that arrive at up to hundreds per second in a flash crowd:
//! - `heartbeat-interval` 1 s, `heartbeat-expiry` 3.5 s: three missed heartbeats (plus half an
//!   interval of jitter) drop a relay; a restarted control plane hears from every relay within
//!   one interval, well inside the "two intervals" promise.
//! - `join-timeout` 20 s: a viewer told to join a relay counts against it until the relay's
//!   heartbeats show it arrived (their running count of accepted sessions), so neither a burst
//!   between two heartbeats nor a crowd of slow joiners can overfill a relay; one that has not
//!   arrived after 20 s (a phone on a bad link gives up long before) is taken to have gone.
//! - `assignment-grace` 3 s: a chat room assignment, a route or a broadcast newly carried counts
//!   until a heartbeat sent at least this long after it could show it (connect time + one
//!   interval + margin).
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

use serde::{Deserialize, Serialize};

use crate::autoscale::AutoscaleSettings;
use crate::registry::Policy;
use crate::spawner::SpawnerSettings;
use crate::token::TokenSettings;

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
#[derive(Debug, Clone, PartialEq, clap::Parser, Serialize, Deserialize)]
#[command(name = "banyan-control", version, about, long_about = None, args_override_self = true,
          after_help = "Every flag can also be set by BANYAN_CONTROL_<FLAG> (e.g. BANYAN_CONTROL_LISTEN) or by a key in the --config TOML file (e.g. listen = \"0.0.0.0:8080\"). Precedence: flag > environment > file > default.")]
#[serde(rename_all = "kebab-case")]
pub struct ControlConfig {
    /// TCP address of the HTTP API.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// A TOML file with more settings (keys are flag names).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The URL relays use to reach this service (given to spawned relays as --control)
    /// [default: http://<listen address>].
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,

    /// Token signing and lifetimes.
    #[command(flatten)]
    #[serde(flatten)]
    pub token: TokenSettings,

    /// Placement: heartbeats, capacity, tree shape.
    #[command(flatten)]
    #[serde(flatten)]
    pub placement: Policy,

    /// Sustained viewer/publisher assignments per second before 429.
    #[arg(long, value_name = "PER_SEC", default_value_t = 5000)]
    pub watch_rate: u32,

    /// Assignments allowed in a burst above --watch-rate.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub watch_burst: u32,

    /// How often expiry, the autoscaler and the spawner's supervision run.
    #[arg(long, value_name = "DURATION", default_value = "250ms", value_parser = humantime::parse_duration)]
    #[serde(with = "crate::layered::serde_duration")]
    pub tick: Duration,

    /// The autoscaler's timing and limits.
    #[command(flatten)]
    #[serde(flatten)]
    pub autoscaler: AutoscaleSettings,

    /// The spawner and the relays it starts.
    #[command(flatten)]
    #[serde(flatten)]
    pub spawn: SpawnerSettings,

    /// Log filter in tracing's EnvFilter syntax.
    #[arg(long, value_name = "FILTER", default_value = "info")]
    pub log: String,
}

impl ControlConfig {
    /// The configuration from the process's arguments, environment and `--config` file.
    /// `--help`/`--version` print and exit.
    pub fn load() -> anyhow::Result<Self> {
        crate::layered::exit_on_help(Self::load_from(std::env::args_os(), |k| std::env::var(k).ok()))
    }

    /// The configuration from `args` (first item: program name), the variables `env` returns
    /// and the `--config` file, merged (flag > env > file > default) and validated.
    pub fn load_from<I, T, E>(args: I, env: E) -> anyhow::Result<Self>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
        E: Fn(&str) -> Option<String>,
    {
        let config: Self = crate::layered::load(ENV_PREFIX, &[], args, env)?;
        config.validate()?;
        Ok(config)
    }

    /// Check ranges and consistency.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.placement.high_water > 0.0 && self.placement.high_water <= 1.0,
            "high-water must be in (0, 1], got {}",
            self.placement.high_water
        );
        anyhow::ensure!(
            self.placement.max_children >= 1,
            "max-children must be at least 1"
        );
        anyhow::ensure!(self.placement.max_depth >= 1, "max-depth must be at least 1");
        anyhow::ensure!(
            self.placement.route_alternatives >= 1,
            "route-alternatives must be at least 1"
        );
        anyhow::ensure!(
            self.placement.chat_room_size >= 1,
            "chat-room-size must be at least 1"
        );
        anyhow::ensure!(self.watch_rate >= 1, "watch-rate must be at least 1");
        anyhow::ensure!(
            self.spawn.spawn_capacity_viewers >= 1,
            "spawn-capacity-viewers must be at least 1"
        );
        anyhow::ensure!(
            self.placement.heartbeat_expiry > self.placement.heartbeat_interval,
            "heartbeat-expiry ({:?}) must exceed heartbeat-interval ({:?})",
            self.placement.heartbeat_expiry,
            self.placement.heartbeat_interval
        );
        anyhow::ensure!(!self.tick.is_zero(), "tick must be positive");
        anyhow::ensure!(
            !self.autoscaler.join_rate_halflife.is_zero(),
            "join-rate-halflife must be positive"
        );
        if self.spawn.spawner == SpawnerKind::Kubernetes && !cfg!(feature = "kubernetes") {
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

    /// The autoscaler policy.
    pub fn autoscale(&self) -> crate::autoscale::AutoscalePolicy {
        let a = &self.autoscaler;
        crate::autoscale::AutoscalePolicy {
            high_water: self.placement.high_water,
            join_rate_halflife: a.join_rate_halflife,
            replicate_lead: a.replicate_lead,
            spawn_lead: a.spawn_lead,
            spawn_timeout: a.spawn_timeout,
            idle_cooldown: a.idle_cooldown,
            drain_timeout: a.drain_timeout,
            max_spawned: if self.spawn.spawner == SpawnerKind::None {
                0
            } else {
                a.max_spawned
            },
            max_spawn_per_tick: a.max_spawn_per_tick,
            spawn_capacity: self.spawn.spawn_capacity_viewers,
        }
    }
}

/// The environment variable for a flag id: `heartbeat_interval` → `BANYAN_CONTROL_HEARTBEAT_INTERVAL`.
pub fn env_var_name(id: &str) -> String {
    crate::layered::env_var_name(ENV_PREFIX, id)
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
        assert_eq!(c.placement.heartbeat_interval, Duration::from_secs(1));
        assert_eq!(c.placement.heartbeat_expiry, Duration::from_millis(3500));
        assert_eq!(c.spawn.spawner, SpawnerKind::Process);
        assert_eq!(c.placement.max_children, 8);
        assert!(c.spawn.spawn_relay_arg.is_empty());
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
        assert_eq!(c.placement.max_children, 5, "flag beats env and file");
        assert_eq!(c.placement.max_depth, 7, "env beats file");
        assert_eq!(c.placement.high_water, 0.5, "file beats default");
        assert_eq!(c.token.token_ttl, Duration::from_secs(120));
        assert_eq!(c.listen.port(), 9999, "env beats default");
        assert_eq!(c.placement.route_alternatives, 2, "empty variable is unset");
        assert_eq!(c.spawn.spawn_relay_arg, vec!["--dev-cert".to_owned()]);
        assert_eq!(c.spawn.spawner, SpawnerKind::None);
        assert_eq!(c.config.as_deref(), Some(file.as_path()));
    }

    #[test]
    fn each_kind_of_setting_layers_flag_over_env_over_file_over_default() {
        use crate::layered::{check_layering, Layering};
        let settings: &[Layering<ControlConfig>] = &[
            ("max-children", ["3", "5", "6"], ["8", "3", "5", "6"], |c| {
                c.placement.max_children.to_string()
            }),
            (
                "high-water",
                ["0.5", "0.6", "0.7"],
                ["0.8", "0.5", "0.6", "0.7"],
                |c| c.placement.high_water.to_string(),
            ),
            (
                "token-ttl",
                ["\"2m\"", "3m", "4m"],
                ["600s", "120s", "180s", "240s"],
                |c| format!("{:?}", c.token.token_ttl),
            ),
            (
                "spawner",
                ["\"none\"", "process", "none"],
                ["Process", "None", "Process", "None"],
                |c| format!("{:?}", c.spawn.spawner),
            ),
            (
                "spawn-region",
                ["\"f\"", "e", "g"],
                ["local", "f", "e", "g"],
                |c| c.spawn.spawn_region.clone(),
            ),
            (
                "public-url",
                ["\"http://f\"", "http://e", "http://g"],
                [
                    "None",
                    "Some(\"http://f\")",
                    "Some(\"http://e\")",
                    "Some(\"http://g\")",
                ],
                |c| format!("{:?}", c.public_url),
            ),
            (
                "spawn-relay-arg",
                ["[\"--f\"]", "--e", "--g"],
                ["", "--f", "--e", "--g"],
                |c| c.spawn.spawn_relay_arg.join(" "),
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("control.toml");
        check_layering(load, ENV_PREFIX, &[], &file, settings).unwrap();
    }

    #[test]
    fn env_reaches_the_config_file_flag() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "max-depth = 2\n").unwrap();
        let c = load(&[], &[("BANYAN_CONTROL_CONFIG", file.to_str().unwrap())]).unwrap();
        assert_eq!(c.placement.max_depth, 2);
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
