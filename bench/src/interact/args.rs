//! The `banyan-bench interactions` command line ([`InteractArgs`]) and the validated profile
//! it describes ([`InteractProfile`]).

use std::time::Duration;

use banyan_certs::ServerVerification;
use banyan_moq::coding::TrackNamespace;
use clap::Parser;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::profile::Access;
use crate::Error;

/// The most viewer or watcher sessions one run may open.
pub const MAX_SESSIONS: u32 = 20_000;

/// `banyan-bench interactions`: viewers send likes and comments to one edge relay, watchers
/// read `likes` and `chat/<room>` on another, and the run measures what became visible when.
#[derive(Parser, Debug, Clone, PartialEq)]
#[command(
    name = "banyan-bench interactions",
    version,
    about = "Send likes and comments through a relay tree and measure like-to-visible and comment latency, conservation, relay CPU and egress"
)]
pub struct InteractArgs {
    /// Relay the viewers PUBLISH their `interact` track to (`moqt://` or `https://`).
    #[arg(long)]
    pub ingest: String,
    /// Relay the watchers SUBSCRIBE to `likes` and `chat/<room>` on. Default: `--ingest`.
    #[arg(long)]
    pub watch: Option<String>,
    /// The broadcast namespace `B` (a `/`-separated path).
    #[arg(long, default_value = "bench/interact")]
    pub broadcast: String,
    /// Viewer sessions (each publishes its own `interact` track).
    #[arg(long, default_value_t = 10)]
    pub viewers: u32,
    /// Likes per second per viewer (one cumulative LIKE datagram per like).
    #[arg(long, default_value_t = 10.0)]
    pub likes_per_s: f64,
    /// Comments per second per viewer (0: none), in room `--room`.
    #[arg(long, default_value_t = 0.0)]
    pub comments_per_s: f64,
    /// The chat room comments go to and watchers read.
    #[arg(long, default_value_t = 0)]
    pub room: u64,
    /// Watcher sessions on the watch relay (each subscribes to `likes`, and to `chat/<room>`
    /// when comments are sent).
    #[arg(long, default_value_t = 1)]
    pub watchers: u32,
    /// Use the like and comment latencies of only this many watchers (0: all).
    #[arg(long, default_value_t = 50)]
    pub latency_watchers: u32,
    /// Sessions connecting at the same time while setting up.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: u32,
    /// How long viewers send (the measurement window).
    #[arg(long, default_value = "8s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// After the window, how long watchers may take to see every like and comment.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// The ingest relay's process id: its CPU gives likes ingested per second per core.
    #[arg(long)]
    pub relay_pid: Option<u32>,
    /// The watch relay's process id (CPU while it serves the watchers).
    #[arg(long)]
    pub watch_relay_pid: Option<u32>,
    /// The ingest relay's Prometheus endpoint (`http://host:port/metrics`): likes it accepted
    /// and refused.
    #[arg(long)]
    pub ingest_metrics: Option<String>,
    /// The watch relay's Prometheus endpoint: objects and bytes it sent.
    #[arg(long)]
    pub watch_metrics: Option<String>,
    /// Print the results as one JSON object on stdout (the human summary stays on stderr).
    #[arg(long)]
    pub json: bool,
    /// How sessions verify the relays (one `--tls-hash` per relay) and authenticate.
    #[command(flatten)]
    pub access: Access,
}

/// A validated interaction profile, serialized into the report.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct InteractProfile {
    /// Where viewers send.
    pub ingest: String,
    /// Where watchers read.
    pub watch: String,
    /// The broadcast namespace.
    pub broadcast: String,
    /// Viewer sessions.
    pub viewers: u32,
    /// Likes per second per viewer.
    pub likes_per_s: f64,
    /// Comments per second per viewer.
    pub comments_per_s: f64,
    /// The chat room.
    pub room: u64,
    /// Watcher sessions.
    pub watchers: u32,
    /// Watchers whose latencies are used (0: all).
    pub latency_watchers: u32,
    /// Sessions connecting at once during setup.
    pub connect_concurrency: u32,
    /// The window in seconds.
    pub duration_s: f64,
    /// The drain timeout in seconds.
    pub drain_timeout_s: f64,
    /// The ingest relay's pid.
    pub relay_pid: Option<u32>,
    /// The watch relay's pid.
    pub watch_relay_pid: Option<u32>,
    /// The ingest relay's metrics URL.
    pub ingest_metrics: Option<String>,
    /// The watch relay's metrics URL.
    pub watch_metrics: Option<String>,
    /// Whether a token was sent (never the token itself).
    pub token: bool,
    /// How server certificates were verified: `sha256`, `ca`, `insecure` or `system`.
    pub tls: String,
}

impl InteractProfile {
    /// Check the arguments and derive the profile and how to verify the relays.
    pub fn from_args(args: &InteractArgs) -> Result<(Self, ServerVerification), Error> {
        let watch = args.watch.clone().unwrap_or_else(|| args.ingest.clone());
        for (flag, url) in [("--ingest", &args.ingest), ("--watch", &watch)] {
            let parsed = Url::parse(url).map_err(|e| Error::Config(format!("{flag} {url:?}: {e}")))?;
            if !matches!(parsed.scheme(), "moqt" | "https" | "ws" | "wss") || parsed.host_str().is_none() {
                return Err(Error::Config(format!(
                    "{flag} {url:?}: use moqt://host:port, https://host:port/path or ws[s]://host:port/path"
                )));
            }
        }
        for (flag, url) in [
            ("--ingest-metrics", &args.ingest_metrics),
            ("--watch-metrics", &args.watch_metrics),
        ] {
            if let Some(url) = url {
                let parsed = Url::parse(url).map_err(|e| Error::Config(format!("{flag} {url:?}: {e}")))?;
                if parsed.scheme() != "http" {
                    return Err(Error::Config(format!(
                        "{flag} {url:?}: use http://host:port/metrics"
                    )));
                }
            }
        }
        if args.broadcast.is_empty() {
            return Err(Error::Config("--broadcast must not be empty".into()));
        }
        TrackNamespace::from_path(&args.broadcast)
            .map_err(|e| Error::Config(format!("--broadcast {:?}: {e}", args.broadcast)))?;
        if args.viewers == 0
            || args.viewers > MAX_SESSIONS
            || args.watchers == 0
            || args.watchers > MAX_SESSIONS
        {
            return Err(Error::Config(format!(
                "--viewers and --watchers must be within 1..={MAX_SESSIONS}"
            )));
        }
        if !(args.likes_per_s.is_finite() && (0.0..=10_000.0).contains(&args.likes_per_s)) {
            return Err(Error::Config(format!(
                "--likes-per-s {} is outside [0, 10000]",
                args.likes_per_s
            )));
        }
        if !(args.comments_per_s.is_finite() && (0.0..=1_000.0).contains(&args.comments_per_s)) {
            return Err(Error::Config(format!(
                "--comments-per-s {} is outside [0, 1000]",
                args.comments_per_s
            )));
        }
        if args.likes_per_s == 0.0 && args.comments_per_s == 0.0 {
            return Err(Error::Config(
                "nothing to send: --likes-per-s and --comments-per-s are 0".into(),
            ));
        }
        if args.duration.is_zero() {
            return Err(Error::Config("--duration must be more than 0".into()));
        }
        if args.connect_concurrency == 0 {
            return Err(Error::Config("--connect-concurrency must be at least 1".into()));
        }
        let (verification, tls) = args.access.verification()?;
        let profile = Self {
            ingest: args.ingest.clone(),
            watch,
            broadcast: args.broadcast.clone(),
            viewers: args.viewers,
            likes_per_s: args.likes_per_s,
            comments_per_s: args.comments_per_s,
            room: args.room,
            watchers: args.watchers,
            latency_watchers: args.latency_watchers,
            connect_concurrency: args.connect_concurrency,
            duration_s: args.duration.as_secs_f64(),
            drain_timeout_s: args.drain_timeout.as_secs_f64(),
            relay_pid: args.relay_pid,
            watch_relay_pid: args.watch_relay_pid,
            ingest_metrics: args.ingest_metrics.clone(),
            watch_metrics: args.watch_metrics.clone(),
            token: args.access.token.is_some(),
            tls: tls.to_string(),
        };
        Ok((profile, verification))
    }

    /// The window as a duration.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration_s)
    }

    /// The drain timeout as a duration.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.drain_timeout_s)
    }

    /// Likes per second offered by all viewers together.
    pub fn offered_likes_per_s(&self) -> f64 {
        self.likes_per_s * f64::from(self.viewers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &[&str]) -> Result<InteractArgs, clap::Error> {
        InteractArgs::try_parse_from(std::iter::once("interactions").chain(line.iter().copied()))
    }

    #[test]
    fn the_scripted_call_parses() {
        let a = args(&[
            "--ingest=moqt://127.0.0.1:1/",
            "--watch=moqt://127.0.0.1:2/",
            "--viewers=100",
            "--likes-per-s=10",
            "--comments-per-s=0.5",
            "--watchers=1000",
            "--duration=10s",
            "--relay-pid=12",
            "--watch-metrics=http://127.0.0.1:9090/metrics",
            "--tls-hash",
            &"ab".repeat(32),
            "--tls-hash",
            &"cd".repeat(32),
            "--json",
        ])
        .unwrap();
        let (p, verification) = InteractProfile::from_args(&a).unwrap();
        assert_eq!(p.offered_likes_per_s(), 1000.0);
        assert_eq!(p.watchers, 1000);
        assert_eq!(p.tls, "sha256");
        assert!(matches!(verification, ServerVerification::PinnedSha256(h) if h.len() == 2));
        let same = args(&["--ingest=https://h:1/x"]).unwrap();
        assert_eq!(
            InteractProfile::from_args(&same).unwrap().0.watch,
            "https://h:1/x"
        );
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(args(&[]).is_err(), "--ingest is required");
        let profile = |line: &[&str]| InteractProfile::from_args(&args(line).unwrap());
        assert!(profile(&["--ingest=http://h:1"]).is_err());
        assert!(profile(&["--ingest=moqt://h:1", "--watch=nope"]).is_err());
        assert!(profile(&["--ingest=moqt://h:1", "--viewers=0"]).is_err());
        assert!(profile(&["--ingest=moqt://h:1", "--likes-per-s=-1"]).is_err());
        assert!(profile(&["--ingest=moqt://h:1", "--likes-per-s=0"]).is_err());
        assert!(profile(&["--ingest=moqt://h:1", "--duration=0s"]).is_err());
        assert!(profile(&["--ingest=moqt://h:1", "--broadcast="]).is_err());
        assert!(profile(&["--ingest=moqt://h:1", "--watch-metrics=https://h/metrics"]).is_err());
    }
}
