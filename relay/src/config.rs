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
//! configure, flattened so flags and TOML keys stay flat: [`ServerSettings`] (relay.rs),
//! [`HeartbeatSettings`] (heartbeat.rs), [`UpstreamSettings`] (upstream.rs), [`AuthSettings`]
//! (auth.rs), [`LimitSettings`] (session.rs), [`CacheSettings`] (cache.rs), [`TrackSettings`]
//! (track.rs) and [`InteractSettings`] (interact/). The layers are merged by
//! [`banyan_control::layered::load`], the same code as the control plane's. Range and
//! consistency checks live in [`RelayConfig::validate`], which runs after the merge so they
//! apply to values from every layer; this module also holds the value parsers the sub-configs
//! share (sizes, bit rates, URLs, host names).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::auth::AuthSettings;
use crate::heartbeat::HeartbeatSettings;
use crate::interact::InteractSettings;
use crate::relay::ServerSettings;
use crate::request::LimitSettings;
use crate::track::cache::CacheSettings;
use crate::track::TrackSettings;
use crate::upstream::UpstreamSettings;

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

/// A configuration that cannot be used; returned by [`RelayConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Neither `--tls-cert`/`--tls-key` nor `--dev-cert` was given.
    #[error("no TLS certificate: give --tls-cert PEM and --tls-key PEM, or --dev-cert for a development certificate")]
    NoCertificate,
    /// `--dev-cert` together with `--tls-cert` or `--tls-key`.
    #[error("--dev-cert cannot be combined with --tls-cert/--tls-key: choose one way to get a certificate")]
    BothCertificateModes,
    /// Only one of `--tls-cert` and `--tls-key`.
    #[error("--tls-cert and --tls-key must be given together")]
    IncompleteCertificate,
    /// No `--auth-key` and no `--insecure-no-auth`.
    #[error("refusing to start without authentication: give --auth-key FILE, or --insecure-no-auth to accept every client without a token")]
    NoAuth,
    /// Both `--auth-key` and `--insecure-no-auth`.
    #[error("--auth-key and --insecure-no-auth contradict each other: give one")]
    BothAuthModes,
    /// A file named by a flag does not exist or is not a regular file.
    #[error("{flag} {}: file not found", path.display())]
    FileMissing {
        /// The flag that names the file.
        flag: &'static str,
        /// The path as given.
        path: PathBuf,
    },
    /// A limit outside its allowed range.
    #[error("{flag} = {value} is out of range: {expected}")]
    OutOfRange {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        expected: &'static str,
    },
    /// Both `--upstream-ca` and `--upstream-insecure`.
    #[error("--upstream-ca and --upstream-insecure contradict each other: give one")]
    BothUpstreamVerifications,
    /// `--log` is not a valid tracing filter.
    #[error("--log {filter:?} is not a valid log filter: {reason}")]
    BadLogFilter {
        /// The filter given.
        filter: String,
        /// Why it was refused.
        reason: String,
    },
}

impl RelayConfig {
    /// The configuration from the process's arguments, environment and `--config` file, validated.
    ///
    /// `--help` and `--version` print and exit the process (status 0), like any clap program.
    pub fn load() -> anyhow::Result<Self> {
        let result = Self::load_from(std::env::args_os(), |key| {
            std::env::var_os(key).map(|v| v.to_string_lossy().into_owned())
        });
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

    /// Check ranges and consistency: exactly one certificate mode, an auth key or an explicit
    /// `--insecure-no-auth`, files that exist, limits in range, a parseable log filter.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match (self.server.dev_cert, &self.server.tls_cert, &self.server.tls_key) {
            (true, None, None) => {}
            (true, _, _) => return Err(ConfigError::BothCertificateModes),
            (false, None, None) => return Err(ConfigError::NoCertificate),
            (false, Some(cert), Some(key)) => {
                check_file("--tls-cert", cert)?;
                check_file("--tls-key", key)?;
            }
            (false, _, _) => return Err(ConfigError::IncompleteCertificate),
        }
        match (&self.auth.auth_key, self.auth.insecure_no_auth) {
            (Some(_), true) => return Err(ConfigError::BothAuthModes),
            (None, false) => return Err(ConfigError::NoAuth),
            (Some(key), false) => check_file("--auth-key", key)?,
            (None, true) => {}
        }
        check_range(
            "--max-message-size",
            self.limits.max_message_size,
            16..=MAX_CONTROL_MESSAGE_SIZE,
            "16 to 65535 bytes",
        )?;
        let positive = 1..=usize::MAX;
        check_range(
            "--max-sessions",
            self.limits.max_sessions,
            positive.clone(),
            "at least 1",
        )?;
        check_range(
            "--max-subscriptions-per-session",
            self.limits.max_subscriptions_per_session,
            positive.clone(),
            "at least 1",
        )?;
        check_range(
            "--max-namespaces-per-session",
            self.limits.max_namespaces_per_session,
            positive.clone(),
            "at least 1",
        )?;
        check_range(
            "--max-object-size",
            self.limits.max_object_size,
            positive.clone(),
            "at least 1 byte",
        )?;
        check_range("--cache-groups", self.cache.cache_groups, positive, "at least 1")?;
        if let Some(viewers) = self.heartbeat.capacity_viewers {
            check_range("--capacity-viewers", viewers, 1..=u32::MAX, "at least 1")?;
        }
        if self.heartbeat.region.len() > banyan_control::api::MAX_NAME_LEN
            || self.heartbeat.region.chars().any(char::is_control)
        {
            return Err(ConfigError::OutOfRange {
                flag: "--region",
                value: self.heartbeat.region.clone(),
                expected: "at most 1024 bytes, no control characters",
            });
        }
        check_range(
            "--max-depth",
            self.upstream.max_depth,
            1..=banyan_moq::message::hop_path::MAX_HOPS,
            "1 to 32",
        )?;
        let (ms, secs) = (Duration::from_millis, Duration::from_secs);
        check_duration(
            "--upstream-timeout",
            self.upstream.upstream_timeout,
            ms(100)..=secs(60),
            "100ms to 60s",
        )?;
        check_duration(
            "--like-window",
            self.interact.like_window,
            ms(10)..=secs(10),
            "10ms to 10s",
        )?;
        check_duration(
            "--interact-idle",
            self.interact.interact_idle,
            secs(1)..=secs(86_400),
            "1s to 24h",
        )?;
        if self.upstream.upstream_insecure && self.upstream.upstream_ca.is_some() {
            return Err(ConfigError::BothUpstreamVerifications);
        }
        if let Some(ca) = &self.upstream.upstream_ca {
            check_file("--upstream-ca", ca)?;
        }
        check_range(
            "--request-rate",
            self.limits.request_rate,
            1..=u32::MAX,
            "at least 1 per second",
        )?;
        check_range(
            "--request-burst",
            self.limits.request_burst,
            self.limits.request_rate.max(1)..=u32::MAX,
            "at least --request-rate",
        )?;
        check_range(
            "--cache-bytes",
            self.cache.cache_bytes,
            self.limits.max_object_size..=usize::MAX,
            "at least --max-object-size",
        )?;
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log) {
            return Err(ConfigError::BadLogFilter {
                filter: self.log.clone(),
                reason: e.to_string(),
            });
        }
        Ok(())
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

/// Parse and check an upstream URL: `moqt://` (raw QUIC) or `https://` (WebTransport), with a host.
pub fn parse_upstream(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    match url.scheme() {
        "moqt" | "https" => {}
        other => {
            return Err(format!(
                "{text:?}: scheme {other:?} is not supported (use moqt://host:port for raw QUIC or https://host:port/path for WebTransport)"
            ))
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{text:?} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{text:?}: credentials in the URL are not supported"));
    }
    Ok(url)
}

/// Parse the control plane's base URL: `http://host[:port][/path]`.
pub fn parse_control(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!(
            "{text:?}: the control plane URL must be http://host:port (scheme {:?} is not supported)",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{text:?} has no host"));
    }
    Ok(url)
}

/// Parse `--public-host`: a DNS name or an IP address (IPv6 with or without brackets), no
/// port, scheme or path.
pub fn parse_public_host(text: &str) -> Result<String, String> {
    let host = text.trim();
    let bracketed = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let bad = || {
        format!(
            "{text:?} is not a host name or IP address (e.g. relay.example.com, 198.51.100.7, [2001:db8::7])"
        )
    };
    if host.is_empty() || host.contains(['/', '@', '?', '#']) || host.chars().any(char::is_whitespace) {
        return Err(bad());
    }
    let url = Url::parse(&format!("moqt://{bracketed}:1")).map_err(|_| bad())?;
    // A port in the text would make the URL's port differ from the probe's.
    if url.port() != Some(1) || url.host_str().is_none_or(str::is_empty) {
        return Err(bad());
    }
    Ok(bracketed)
}

/// Parse a bit rate in bits per second: a plain number, or a number with a decimal unit:
/// `Kbps`, `Mbps`, `Gbps`, `Tbps` (also `K`, `M`, `G`, `T`; `bps` alone is 1); e.g. `1Gbps`,
/// `500 Mbps`, `0`.
pub fn parse_bitrate(text: &str) -> Result<u64, String> {
    let (n, unit) = number_and_unit(text)
        .ok_or_else(|| format!("{text:?} is not a bit rate (e.g. 0, 500Mbps, 10Gbps)"))?;
    let unit = unit.strip_suffix("bps").unwrap_or(unit);
    let mult: u64 = match unit {
        "" => 1,
        "K" | "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "{text:?}: unknown rate unit {other:?} (use Kbps, Mbps or Gbps)"
            ))
        }
    };
    // TOML integers are signed 64-bit; larger rates could not be merged with a config file.
    n.checked_mul(mult)
        .filter(|bps| i64::try_from(*bps).is_ok())
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Parse a byte size: a plain number of bytes, or a number with a unit: `KiB`, `MiB`, `GiB`
/// (also written `K`, `M`, `G`), or decimal `KB`, `MB`, `GB`; e.g. `8MiB`, `256 MiB`, `65535`.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let (n, unit) =
        number_and_unit(text).ok_or_else(|| format!("{text:?} is not a size (e.g. 65535, 8MiB, 256MiB)"))?;
    let mult: u64 = match unit {
        "" | "B" => 1,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "{text:?}: unknown size unit {other:?} (use KiB, MiB or GiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// The leading integer of `text` and the (trimmed) unit after it: `"256 MiB"` → `(256, "MiB")`.
fn number_and_unit(text: &str) -> Option<(u64, &str)> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    Some((digits.parse().ok()?, unit.trim()))
}

fn check_file(flag: &'static str, path: &Path) -> Result<(), ConfigError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(ConfigError::FileMissing {
            flag,
            path: path.to_owned(),
        })
    }
}

fn check_range<T: PartialOrd + ToString>(
    flag: &'static str,
    value: T,
    range: std::ops::RangeInclusive<T>,
    expected: &'static str,
) -> Result<(), ConfigError> {
    check_within(flag, value, range, expected, T::to_string)
}

fn check_duration(
    flag: &'static str,
    value: Duration,
    range: std::ops::RangeInclusive<Duration>,
    expected: &'static str,
) -> Result<(), ConfigError> {
    check_within(flag, value, range, expected, |d| {
        humantime::format_duration(*d).to_string()
    })
}

/// `value` must be in `range`; else an error showing it with `show`.
fn check_within<T: PartialOrd>(
    flag: &'static str,
    value: T,
    range: std::ops::RangeInclusive<T>,
    expected: &'static str,
    show: impl Fn(&T) -> String,
) -> Result<(), ConfigError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            flag,
            value: show(&value),
            expected,
        })
    }
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

/// Byte sizes as an integer or a string with a unit (see [`super::parse_size`]).
pub(crate) mod serde_size {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Int(u64),
        Text(String),
    }

    pub fn serialize<S: Serializer>(n: &usize, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*n as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
        match Size::deserialize(d)? {
            Size::Int(n) => usize::try_from(n).map_err(|_| serde::de::Error::custom("size too large")),
            Size::Text(t) => super::parse_size(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// `--public-host` from TOML, checked (and an IPv6 address bracketed) like the flag.
pub(crate) fn deserialize_public_host<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    parse_public_host(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// Bit rates as an integer or a string with a unit (see [`super::parse_bitrate`]).
pub(crate) mod serde_bitrate {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Rate {
        Int(u64),
        Text(String),
    }

    pub fn serialize<S: Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*n)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match Rate::deserialize(d)? {
            Rate::Int(n) => Ok(n),
            Rate::Text(t) => super::parse_bitrate(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// The control URL as a string, checked by [`super::parse_control`].
pub(crate) mod serde_control {
    use serde::{Deserialize, Deserializer, Serializer};
    use url::Url;

    pub fn serialize<S: Serializer>(url: &Option<Url>, s: S) -> Result<S::Ok, S::Error> {
        match url {
            Some(url) => s.serialize_some(url.as_str()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Url>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| super::parse_control(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Upstream URLs as an array of strings, each checked by [`super::parse_upstream`].
pub(crate) mod serde_urls {
    use serde::{Deserialize, Deserializer, Serializer};
    use url::Url;

    pub fn serialize<S: Serializer>(urls: &[Url], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(urls.iter().map(Url::as_str))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Url>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|t| super::parse_upstream(t).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Write as _;

    use clap::CommandFactory as _;

    use super::*;

    /// A directory with an auth key and a TOML file, removed on drop.
    struct Fixture {
        dir: PathBuf,
    }

    impl Fixture {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("banyan-relay-config-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self { dir }
        }

        fn file(&self, name: &str, text: &str) -> PathBuf {
            let path = self.dir.join(name);
            std::fs::File::create(&path)
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            path
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn load(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<RelayConfig> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        RelayConfig::load_from(std::iter::once("banyan-relay").chain(args.iter().copied()), |k| {
            env.get(k).cloned()
        })
    }

    const MINIMAL: &[&str] = &["--dev-cert", "--insecure-no-auth"];

    #[test]
    fn defaults() {
        let c = load(MINIMAL, &[]).unwrap();
        assert_eq!(c.server.listen, "[::]:4443".parse().unwrap());
        assert_eq!(c.server.http_listen, "127.0.0.1:9090".parse().unwrap());
        assert!(c.server.dev_cert && c.auth.insecure_no_auth && c.publisher_takeover);
        assert_eq!(c.limits.max_sessions, 10_000);
        assert_eq!(c.limits.max_subscriptions_per_session, 1_000);
        assert_eq!(c.limits.max_namespaces_per_session, 64);
        assert_eq!(c.limits.max_message_size, 65535);
        assert_eq!(c.limits.max_object_size, 8 << 20);
        assert_eq!((c.limits.request_rate, c.limits.request_burst), (200, 400));
        assert_eq!((c.cache.cache_groups, c.cache.cache_bytes), (4, 256 << 20));
        assert_eq!(c.track.max_lag_groups, 2);
        assert_eq!(c.track.rendezvous_max, Duration::from_secs(5));
        assert_eq!(
            (
                c.interact.like_window,
                c.interact.like_rate,
                c.interact.comment_rate,
                c.interact.interact_idle
            ),
            (Duration::from_millis(100), 20, 1, Duration::from_secs(60))
        );
        assert_eq!(c.drain_timeout, Duration::from_secs(10));
        assert_eq!(c.log, "info");
        assert!(c.upstream.upstream.is_empty());
        assert!(c.relay_id.ends_with(":4443"), "{}", c.relay_id);
        assert_eq!(c.heartbeat.public_host, "localhost");
        assert_eq!(c.heartbeat.region, "");
        assert_eq!(c.heartbeat.capacity_viewers, None);
        assert_eq!(c.capacity_viewers(), 10_000, "follows --max-sessions");
        assert_eq!(c.heartbeat.capacity_egress, 0);
        let c = load(&["--dev-cert", "--insecure-no-auth", "--max-sessions", "50"], &[]).unwrap();
        assert_eq!(c.capacity_viewers(), 50);
    }

    #[test]
    fn flags() {
        let c = load(
            &[
                "--listen",
                "127.0.0.1:5000",
                "--dev-cert",
                "--insecure-no-auth",
                "--upstream",
                "moqt://origin.example:4443/relay",
                "--upstream=https://other.example/moq",
                "--max-object-size",
                "1MiB",
                "--rendezvous-max=250ms",
                "--publisher-takeover=false",
                "--relay-id",
                "edge-1",
                "--public-host",
                "2001:db8::7",
                "--region=eu-west",
                "--capacity-viewers",
                "300",
                "--capacity-egress",
                "10Gbps",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.heartbeat.public_host, "[2001:db8::7]");
        assert_eq!(c.heartbeat.region, "eu-west");
        assert_eq!(c.capacity_viewers(), 300);
        assert_eq!(c.heartbeat.capacity_egress, 10_000_000_000);
        assert_eq!(c.server.listen.port(), 5000);
        assert_eq!(c.upstream.upstream.len(), 2);
        assert_eq!(c.upstream.upstream[0].scheme(), "moqt");
        assert_eq!(c.upstream.upstream[1].as_str(), "https://other.example/moq");
        assert_eq!(c.limits.max_object_size, 1 << 20);
        assert_eq!(c.track.rendezvous_max, Duration::from_millis(250));
        assert!(!c.publisher_takeover);
        assert_eq!(c.relay_id, "edge-1");
    }

    #[test]
    fn toml_only() {
        let fx = Fixture::new("toml-only");
        let key = fx.file("hs.key", "0123456789abcdef0123456789abcdef");
        let toml = fx.file(
            "relay.toml",
            &format!(
                r#"
listen = "127.0.0.1:7000"
dev-cert = true
auth-key = "{}"
upstream = ["moqt://parent:4443"]
max-sessions = 5
cache-bytes = "1GiB"
max-object-size = 1048576
rendezvous-max = "2s"
publisher-takeover = false
log = "debug"
public-host = "relay.example"
region = "us-east"
capacity-viewers = 250
capacity-egress = "2Gbps"
"#,
                key.display()
            ),
        );
        let c = load(&["--config", toml.to_str().unwrap()], &[]).unwrap();
        assert_eq!(c.server.listen.port(), 7000);
        assert!(c.server.dev_cert);
        assert_eq!(c.auth.auth_key.as_deref(), Some(key.as_path()));
        assert_eq!(c.upstream.upstream[0].as_str(), "moqt://parent:4443");
        assert_eq!(c.limits.max_sessions, 5);
        assert_eq!(c.cache.cache_bytes, 1 << 30);
        assert_eq!(c.limits.max_object_size, 1 << 20);
        assert_eq!(c.track.rendezvous_max, Duration::from_secs(2));
        assert!(!c.publisher_takeover);
        assert_eq!(c.log, "debug");
        assert_eq!(c.heartbeat.public_host, "relay.example");
        assert_eq!(c.heartbeat.region, "us-east");
        assert_eq!(c.capacity_viewers(), 250);
        assert_eq!(c.heartbeat.capacity_egress, 2_000_000_000);
        assert_eq!(c.config.as_deref(), Some(toml.as_path()));
        // Untouched keys keep their defaults.
        assert_eq!(c.track.max_lag_groups, 2);
        assert_eq!(c.server.http_listen.port(), 9090);
    }

    #[test]
    fn env_overrides_toml_and_flag_overrides_env() {
        let fx = Fixture::new("layers");
        let toml = fx.file(
            "relay.toml",
            r#"
dev-cert = true
insecure-no-auth = true
max-sessions = 5
max-lag-groups = 7
cache-groups = 9
upstream = ["moqt://from-file:1"]
publisher-takeover = true
region = "from-file"
capacity-viewers = 10
capacity-egress = 1000
"#,
        );
        let path = toml.to_str().unwrap();
        let env = [
            ("BANYAN_RELAY_CONFIG", path),
            ("BANYAN_RELAY_MAX_SESSIONS", "6"),
            ("BANYAN_RELAY_MAX_LAG_GROUPS", "8"),
            ("BANYAN_RELAY_UPSTREAM", "moqt://from-env:1, https://from-env:2/x"),
            ("BANYAN_RELAY_PUBLISHER_TAKEOVER", "false"),
            ("BANYAN_RELAY_LOG", ""), // empty = unset
            ("BANYAN_RELAY_REGION", "from-env"),
            ("BANYAN_RELAY_CAPACITY_EGRESS", "5Mbps"),
        ];
        let c = load(&[], &env).unwrap();
        assert_eq!(c.heartbeat.region, "from-env", "env over file");
        assert_eq!(c.heartbeat.capacity_egress, 5_000_000, "env over file");
        assert_eq!(c.capacity_viewers(), 10, "file over default");
        assert_eq!(c.limits.max_sessions, 6, "env over file");
        assert_eq!(c.track.max_lag_groups, 8, "env over file");
        assert_eq!(c.cache.cache_groups, 9, "file over default");
        assert!(!c.publisher_takeover, "env false over file true");
        assert_eq!(c.log, "info");
        let ups: Vec<&str> = c.upstream.upstream.iter().map(Url::as_str).collect();
        assert_eq!(
            ups,
            ["moqt://from-env:1", "https://from-env:2/x"],
            "env list replaces file list"
        );

        let c = load(
            &[
                "--max-sessions",
                "7",
                "--upstream",
                "moqt://from-flag:1",
                "--region",
                "from-flag",
            ],
            &env,
        )
        .unwrap();
        assert_eq!(c.limits.max_sessions, 7, "flag over env");
        assert_eq!(c.heartbeat.region, "from-flag", "flag over env");
        assert_eq!(c.track.max_lag_groups, 8);
        assert_eq!(c.cache.cache_groups, 9);
        assert_eq!(c.upstream.upstream.len(), 1);
        assert_eq!(c.upstream.upstream[0].as_str(), "moqt://from-flag:1");

        // A flag that sets a bool back to false beats the file.
        let c = load(
            &[
                "--config",
                path,
                "--dev-cert=false",
                "--tls-cert",
                path,
                "--tls-key",
                path,
            ],
            &[],
        )
        .unwrap();
        assert!(!c.server.dev_cert);
        assert!(c.server.tls_files().is_some());
    }

    #[test]
    fn each_kind_of_setting_layers_flag_over_env_over_file_over_default() {
        use banyan_control::layered::{check_layering, Layering};
        let settings: &[Layering<RelayConfig>] = &[
            ("max-sessions", ["5", "6", "7"], ["10000", "5", "6", "7"], |c| {
                c.limits.max_sessions.to_string()
            }),
            (
                "rendezvous-max",
                ["\"2s\"", "3s", "4s"],
                ["5s", "2s", "3s", "4s"],
                |c| format!("{:?}", c.track.rendezvous_max),
            ),
            (
                "cache-bytes",
                ["\"1GiB\"", "2GiB", "3GiB"],
                ["268435456", "1073741824", "2147483648", "3221225472"],
                |c| c.cache.cache_bytes.to_string(),
            ),
            (
                "capacity-egress",
                ["\"1Gbps\"", "2Gbps", "3Gbps"],
                ["0", "1000000000", "2000000000", "3000000000"],
                |c| c.heartbeat.capacity_egress.to_string(),
            ),
            (
                "publisher-takeover",
                ["false", "yes", "false"],
                ["true", "false", "true", "false"],
                |c| c.publisher_takeover.to_string(),
            ),
            ("region", ["\"f\"", "e", "g"], ["", "f", "e", "g"], |c| {
                c.heartbeat.region.clone()
            }),
            (
                "capacity-viewers",
                ["10", "11", "12"],
                ["None", "Some(10)", "Some(11)", "Some(12)"],
                |c| format!("{:?}", c.heartbeat.capacity_viewers),
            ),
            (
                "upstream",
                ["[\"moqt://f:1\"]", "moqt://e:1, moqt://e:2", "moqt://g:1"],
                ["", "moqt://f:1", "moqt://e:1 moqt://e:2", "moqt://g:1"],
                |c| {
                    c.upstream
                        .upstream
                        .iter()
                        .map(Url::as_str)
                        .collect::<Vec<_>>()
                        .join(" ")
                },
            ),
        ];
        let fx = Fixture::new("kinds");
        let file = fx.dir.join("relay.toml");
        check_layering(load, ENV_PREFIX, MINIMAL, &file, settings).unwrap();
    }

    #[test]
    fn unknown_toml_key_is_an_error() {
        let fx = Fixture::new("unknown");
        let toml = fx.file("relay.toml", "dev-cert = true\nmax-sesions = 5\n");
        let err = load(&["--insecure-no-auth", "--config", toml.to_str().unwrap()], &[]).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("max-sesions"), "{text}");

        let toml = fx.file("relay2.toml", "config = \"other.toml\"\n");
        assert!(load(&["--config", toml.to_str().unwrap()], &[]).is_err());

        let toml = fx.file("relay3.toml", "max-sessions = \"many\"\n");
        let err = load(&["--config", toml.to_str().unwrap()], &[]).unwrap_err();
        assert!(format!("{err:#}").contains("key `max-sessions`"), "{err:#}");

        let toml = fx.file("relay4.toml", "public-host = \"h:1\"\n");
        let err = load(
            &[
                "--dev-cert",
                "--insecure-no-auth",
                "--config",
                toml.to_str().unwrap(),
            ],
            &[],
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("h:1"), "{err:#}");
    }

    #[test]
    fn interaction_durations_out_of_range_are_errors() {
        for (flag, value) in [
            ("--like-window", "0s"),
            ("--like-window", "1m"),
            ("--interact-idle", "0s"),
            ("--interact-idle", "2days"),
        ] {
            let err = load(&["--dev-cert", "--insecure-no-auth", flag, value], &[]).unwrap_err();
            let text = format!("{err:#}");
            assert!(text.contains(flag), "{flag} {value}: {text}");
        }
    }

    #[test]
    fn missing_config_file_is_an_error() {
        let err = load(
            &[
                "--dev-cert",
                "--insecure-no-auth",
                "--config",
                "/nonexistent/relay.toml",
            ],
            &[],
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/relay.toml"));
    }

    #[test]
    fn invalid_urls_are_errors() {
        for bad in [
            "http://x:1",
            "moqt://",
            "not a url",
            "quic://x:1",
            "https://user:pw@x/",
        ] {
            assert!(
                load(&["--dev-cert", "--insecure-no-auth", "--upstream", bad], &[]).is_err(),
                "{bad}"
            );
        }
        let err = load(MINIMAL, &[("BANYAN_RELAY_UPSTREAM", "ftp://x")]).unwrap_err();
        assert!(format!("{err:#}").contains("BANYAN_RELAY_UPSTREAM"), "{err:#}");

        let fx = Fixture::new("badurl");
        let toml = fx.file("relay.toml", "upstream = [\"gopher://x\"]\n");
        assert!(load(
            &[
                "--dev-cert",
                "--insecure-no-auth",
                "--config",
                toml.to_str().unwrap()
            ],
            &[]
        )
        .is_err());
    }

    #[test]
    fn certificate_modes() {
        let err = load(&["--insecure-no-auth"], &[]).unwrap_err();
        assert_eq!(
            err.downcast_ref::<ConfigError>(),
            Some(&ConfigError::NoCertificate)
        );

        let fx = Fixture::new("certs");
        let pem = fx.file("cert.pem", "x");
        let pem = pem.to_str().unwrap();
        let err = load(
            &[
                "--insecure-no-auth",
                "--dev-cert",
                "--tls-cert",
                pem,
                "--tls-key",
                pem,
            ],
            &[],
        )
        .unwrap_err();
        assert_eq!(
            err.downcast_ref::<ConfigError>(),
            Some(&ConfigError::BothCertificateModes)
        );

        let err = load(&["--insecure-no-auth", "--tls-cert", pem], &[]).unwrap_err();
        assert_eq!(
            err.downcast_ref::<ConfigError>(),
            Some(&ConfigError::IncompleteCertificate)
        );

        let err = load(
            &[
                "--insecure-no-auth",
                "--tls-cert",
                pem,
                "--tls-key",
                "/nonexistent.pem",
            ],
            &[],
        )
        .unwrap_err();
        assert!(matches!(
            err.downcast_ref::<ConfigError>(),
            Some(ConfigError::FileMissing {
                flag: "--tls-key",
                ..
            })
        ));

        let c = load(&["--insecure-no-auth", "--tls-cert", pem, "--tls-key", pem], &[]).unwrap();
        assert_eq!(c.server.tls_files(), Some((Path::new(pem), Path::new(pem))));
    }

    #[test]
    fn auth_is_required_unless_insecure() {
        let err = load(&["--dev-cert"], &[]).unwrap_err();
        assert_eq!(err.downcast_ref::<ConfigError>(), Some(&ConfigError::NoAuth));
        assert!(err.to_string().contains("--insecure-no-auth"));

        let err = load(&["--dev-cert", "--auth-key", "/nonexistent.key"], &[]).unwrap_err();
        assert!(matches!(
            err.downcast_ref::<ConfigError>(),
            Some(ConfigError::FileMissing {
                flag: "--auth-key",
                ..
            })
        ));

        let fx = Fixture::new("auth");
        let key = fx.file("k", "secret");
        let key = key.to_str().unwrap();
        assert!(load(&["--dev-cert", "--auth-key", key], &[]).is_ok());
        let err = load(&["--dev-cert", "--auth-key", key, "--insecure-no-auth"], &[]).unwrap_err();
        assert_eq!(
            err.downcast_ref::<ConfigError>(),
            Some(&ConfigError::BothAuthModes)
        );
    }

    #[test]
    fn limits_are_checked() {
        for (flag, value) in [
            ("--max-message-size", "65536"),
            ("--max-message-size", "0"),
            ("--max-sessions", "0"),
            ("--cache-groups", "0"),
            ("--request-rate", "0"),
            ("--request-burst", "10"),
            ("--cache-bytes", "1KiB"),
            ("--log", "foo=bar=baz"),
            ("--capacity-viewers", "0"),
            ("--region", "a\u{7}b"),
        ] {
            let err = load(&["--dev-cert", "--insecure-no-auth", flag, value], &[]).unwrap_err();
            assert!(
                err.downcast_ref::<ConfigError>().is_some(),
                "{flag} {value}: {err:#}"
            );
        }
        for (flag, value) in [
            ("--max-sessions", "-1"),
            ("--rendezvous-max", "soon"),
            ("--listen", "nowhere"),
            ("--public-host", "relay.example:4443"),
            ("--public-host", "moqt://relay.example"),
            ("--public-host", ""),
            ("--capacity-egress", "fast"),
            ("--capacity-viewers", "-1"),
        ] {
            assert!(
                load(&["--dev-cert", "--insecure-no-auth", flag, value], &[]).is_err(),
                "{flag}"
            );
        }
        let err = load(MINIMAL, &[("BANYAN_RELAY_MAX_SESSIONS", "lots")]).unwrap_err();
        assert!(format!("{err:#}").contains("BANYAN_RELAY_MAX_SESSIONS"));
    }

    #[test]
    fn bitrates_and_hosts_parse() {
        assert_eq!(parse_bitrate("0"), Ok(0));
        assert_eq!(parse_bitrate("1500"), Ok(1500));
        assert_eq!(parse_bitrate("1500bps"), Ok(1500));
        assert_eq!(parse_bitrate("10Kbps"), Ok(10_000));
        assert_eq!(parse_bitrate("500 Mbps"), Ok(500_000_000));
        assert_eq!(parse_bitrate("1G"), Ok(1_000_000_000));
        assert_eq!(parse_bitrate("2Tbps"), Ok(2_000_000_000_000));
        assert!(parse_bitrate("").is_err());
        assert!(parse_bitrate("Gbps").is_err());
        assert!(parse_bitrate("1 GiB").is_err());
        assert!(parse_bitrate("99999999999Tbps").is_err());
        assert_eq!(parse_public_host("relay.example"), Ok("relay.example".into()));
        assert_eq!(parse_public_host("198.51.100.7"), Ok("198.51.100.7".into()));
        assert_eq!(parse_public_host("::1"), Ok("[::1]".into()));
        assert_eq!(parse_public_host("[::1]"), Ok("[::1]".into()));
        for bad in ["", "a b", "h:1", "[::1]:1", "h/p", "u@h", "moqt://h"] {
            assert!(parse_public_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("65535"), Ok(65535));
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("256 MiB"), Ok(256 << 20));
        assert_eq!(parse_size("2K"), Ok(2048));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert!(parse_size("").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("1 parsec").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }

    #[test]
    fn help_mentions_every_flag_and_env_rule() {
        let help = RelayConfig::command().render_long_help().to_string();
        for arg in RelayConfig::command().get_arguments() {
            if let Some(long) = arg.get_long() {
                assert!(help.contains(&format!("--{long}")), "{long}");
                assert!(arg.get_help().is_some(), "{long} has no help");
            }
        }
        assert!(help.contains("BANYAN_RELAY_"));
        let err = load(&["--help"], &[]).unwrap_err();
        assert_eq!(
            err.downcast_ref::<clap::Error>().map(clap::Error::kind),
            Some(clap::error::ErrorKind::DisplayHelp)
        );
    }

    #[test]
    fn clap_definition_is_consistent() {
        RelayConfig::command().debug_assert();
        assert_eq!(env_var_name("max_lag_groups"), "BANYAN_RELAY_MAX_LAG_GROUPS");
    }
}
