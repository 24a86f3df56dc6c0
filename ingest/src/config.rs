//! The gateway's configuration: [`IngestConfig`], from flags, `BANYAN_INGEST_*` environment
//! variables and an optional TOML file (`--config`), merged by
//! [`banyan_control::layered::load`] like the relay's: **flag > environment > TOML > default**.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// The prefix of every environment variable the gateway reads.
pub const ENV_PREFIX: &str = "BANYAN_INGEST_";

const ABOUT: &str = "\
RTMP and SRT ingest gateway: accepts streams from OBS, ffmpeg and hardware encoders and publishes each one
into a Banyan relay as an ordinary broadcast (MSF catalog, LOC objects with capture timestamps,
one group per GOP), so viewers, the browser player and the relay tree work unchanged.

Point an encoder at rtmp://HOST:1935/live/STREAM_KEY (OBS: Server rtmp://HOST:1935/live,
Stream Key STREAM_KEY), or, with --srt-listen, at srt://HOST:PORT?streamid=STREAM_KEY (MPEG-TS
over SRT, encoder in caller mode; OBS: Service Custom, that URL as Server). The stream key is a
credential:
  - a publish JWT for the broadcast: the gateway presents it to the relay, and the relay's answer
    to PUBLISH_NAMESPACE decides before the encoder's publish is accepted (the broadcast is the
    token's `ns` claim);
  - or a key listed in the --keys TOML file, which names the broadcast and the token to use:
        [keys.\"s3cret-key\"]
        broadcast = \"live/studio\"
        token = \"eyJ...\"      # optional: omit for a relay without auth
A wrong key is refused before any media is taken, counted in /metrics, and logged only as a short
hash. H.264 and AAC are carried (and AV1 and Opus over enhanced RTMP); every other codec is
refused with a clear message.";

const AFTER_HELP: &str = "\
Every flag can also be set by an environment variable BANYAN_INGEST_<FLAG> (e.g.
BANYAN_INGEST_RELAY=moqt://relay:4443) or by a key in the --config TOML file (the flag's name, e.g.
relay = \"moqt://relay:4443\"). Precedence: flag > environment variable > TOML file > default.";

/// Everything the gateway can be told.
#[derive(Debug, Clone, PartialEq, clap::Parser, Serialize, Deserialize)]
#[command(name = "banyan-ingest", version, about = ABOUT, long_about = None, after_help = AFTER_HELP)]
#[serde(rename_all = "kebab-case")]
pub struct IngestConfig {
    /// The relay each stream is published into: `moqt://host:4443`, `https://host:4443/`
    /// (WebTransport) or `wss://host:8443/` (WebSocket). Required (from any layer).
    #[arg(long, value_name = "URL", default_value = "")]
    pub relay: String,

    /// Pin the relay's certificate by its SHA-256 (hex), e.g. a `--dev-cert` relay's hash.
    #[arg(long, value_name = "HEX")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_hash: Option<String>,

    /// Trust the CA certificates in this PEM file instead of the system roots.
    #[arg(long, value_name = "PEM")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,

    /// Accept any relay certificate. Only for loopback tests.
    #[arg(long, value_name = "BOOL", default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub tls_insecure: bool,

    /// Where encoders connect with RTMP.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:1935")]
    pub rtmp_listen: SocketAddr,

    /// Where encoders call with SRT (`srt://HOST:PORT?streamid=KEY`, MPEG-TS); off unless set.
    #[arg(long, value_name = "ADDR")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srt_listen: Option<SocketAddr>,

    /// The SRT receive latency (the retransmission window); the larger of this and the caller's
    /// is used. 120ms is SRT's default; raise it on lossy long paths.
    #[arg(long, value_name = "DURATION", default_value = "120ms", value_parser = humantime::parse_duration)]
    #[serde(with = "banyan_control::layered::serde_duration")]
    pub srt_latency: Duration,

    /// The HTTP listener for /metrics and /health.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9935")]
    pub http_listen: SocketAddr,

    /// A TOML file with a `[keys]` table mapping stream keys to a broadcast (and token).
    #[arg(long, value_name = "FILE")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<PathBuf>,

    /// Encoder connections open at once (RTMP); more are closed at once.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_connections: usize,

    /// How long a connection has from its first byte to an accepted `publish` (handshake,
    /// `connect`, key check by the relay); slower ones are closed.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    #[serde(with = "banyan_control::layered::serde_duration")]
    pub handshake_timeout: Duration,

    /// A publishing encoder silent this long is dropped (its broadcast waits for it for
    /// `--reconnect-grace`).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    #[serde(with = "banyan_control::layered::serde_duration")]
    pub idle_timeout: Duration,

    /// How long a broadcast whose encoder dropped (without unpublishing) waits for the same key
    /// to come back: a reconnect within it resumes the same broadcast, with no relay reconnect.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    #[serde(with = "banyan_control::layered::serde_duration")]
    pub reconnect_grace: Duration,

    /// How long connecting to the relay (QUIC + SETUP) may take.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    #[serde(with = "banyan_control::layered::serde_duration")]
    pub connect_timeout: Duration,

    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, value_name = "FILTER", default_value = "info")]
    pub log: String,

    /// A TOML file with any of the settings above (keys named like the flags).
    #[arg(long, value_name = "FILE")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<PathBuf>,
}

impl IngestConfig {
    /// The configuration from the process's arguments, environment and `--config` file.
    /// `--help` and `--version` print and exit (status 0).
    pub fn load() -> anyhow::Result<Self> {
        banyan_control::layered::exit_on_help(Self::load_from(std::env::args_os(), |key| {
            std::env::var_os(key).map(|v| v.to_string_lossy().into_owned())
        }))
    }

    /// The configuration from `args`, the variables `env` returns and the `--config` file.
    pub fn load_from<I, T, E>(args: I, env: E) -> anyhow::Result<Self>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
        E: Fn(&str) -> Option<String>,
    {
        let config: Self = banyan_control::layered::load(ENV_PREFIX, &[','], args, env)?;
        anyhow::ensure!(
            !config.relay.is_empty(),
            "--relay is required (or {ENV_PREFIX}RELAY, or relay = \"...\" in the --config file)"
        );
        config.relay_url()?;
        anyhow::ensure!(config.max_connections > 0, "--max-connections must be at least 1");
        Ok(config)
    }

    /// `--relay` as a URL.
    pub fn relay_url(&self) -> anyhow::Result<url::Url> {
        url::Url::parse(&self.relay).with_context(|| format!("--relay {:?}", self.relay))
    }

    /// The relay connection options for a stream presenting `token`.
    pub fn connect_args(
        &self,
        token: Option<String>,
    ) -> anyhow::Result<banyan_publisher::connect::ConnectArgs> {
        Ok(banyan_publisher::connect::ConnectArgs {
            url: self.relay_url()?,
            tls_hash: self.tls_hash.clone(),
            tls_ca: self.tls_ca.clone(),
            tls_insecure: self.tls_insecure,
            token,
            connect_timeout: self.connect_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn flags_env_and_defaults_merge() {
        let config = IngestConfig::load_from(["banyan-ingest", "--relay", "moqt://127.0.0.1:4443"], |k| {
            (k == "BANYAN_INGEST_RECONNECT_GRACE").then(|| "3s".to_string())
        })
        .unwrap();
        assert_eq!(config.reconnect_grace, Duration::from_secs(3));
        assert_eq!(config.rtmp_listen.port(), 1935);
        assert_eq!(config.srt_listen, None);
        let config = IngestConfig::load_from(["banyan-ingest", "--relay", "moqt://r:4443"], |k| {
            (k == "BANYAN_INGEST_SRT_LISTEN").then(|| "127.0.0.1:9000".to_string())
        })
        .unwrap();
        assert_eq!(config.srt_listen, Some(SocketAddr::from(([127, 0, 0, 1], 9000))));
        assert_eq!(config.srt_latency, Duration::from_millis(120));
        assert!(IngestConfig::load_from(["banyan-ingest", "--relay", "not a url"], |_| None).is_err());
        let missing = IngestConfig::load_from(["banyan-ingest"], |_| None).unwrap_err();
        assert!(
            format!("{missing:#}").contains("--relay is required"),
            "{missing:#}"
        );
        // The relay from the environment alone.
        let config = IngestConfig::load_from(["banyan-ingest"], |k| {
            (k == "BANYAN_INGEST_RELAY").then(|| "moqt://r:4443".to_string())
        })
        .unwrap();
        assert_eq!(config.relay, "moqt://r:4443");
    }
}
