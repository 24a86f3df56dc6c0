//! The command line ([`Args`]) and the validated load profile it describes ([`Profile`]);
//! [`Access`], the TLS and token flags both modes share.

use std::path::PathBuf;
use std::time::Duration;

use banyan_certs::ServerVerification;
use banyan_moq::session::{ClientOptions, TransportKind};
use clap::{Parser, ValueEnum};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::Error;

/// The largest object payload a profile may ask for: the session layer's default limit.
pub const MAX_OBJECT_SIZE: u64 = 8 * 1024 * 1024;

/// The most subscriber sessions one run may open.
pub const MAX_SUBSCRIBERS: u64 = 100_000;

/// `banyan-bench`: load a MoQT draft-18 relay with synthetic live video and measure it.
#[derive(Parser, Debug, Clone, PartialEq)]
#[command(
    name = "banyan-bench",
    version,
    about = "Load a MoQT draft-18 relay with synthetic live video and measure delivery, latency and relay cost",
    after_help = "Likes and comments instead of video: `banyan-bench interactions --help`. A flash crowd \
                  through the control plane: `banyan-bench flash --help`."
)]
pub struct Args {
    /// Relay URL: `moqt://host:port[/path]` (raw QUIC) or `https://host:port/path` (WebTransport).
    pub url: String,
    /// Publisher sessions.
    #[arg(long, default_value_t = 1)]
    pub publishers: u32,
    /// Broadcasts (namespaces `bench/<i>`, one `video` track each) per publisher.
    #[arg(long, default_value_t = 1)]
    pub broadcasts: u32,
    /// Subscriber sessions per broadcast.
    #[arg(long, default_value_t = 10)]
    pub subscribers: u32,
    /// Frames (objects) per second per broadcast.
    #[arg(long, default_value_t = 30.0)]
    pub fps: f64,
    /// Object payload size: bytes, or a number with KB/MB (decimal) or KiB/MiB (binary).
    #[arg(long, default_value = "20KB", value_parser = parse_size)]
    pub object_size: u64,
    /// Objects per group (one group per GOP).
    #[arg(long, default_value_t = 30)]
    pub gop: u32,
    /// Subscriber transport; publishers always use the URL as given. Default: the URL's scheme.
    #[arg(long, value_enum)]
    pub transport: Option<TransportChoice>,
    /// Subscribers start evenly spread over this time.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub ramp_up: Duration,
    /// The measurement window, after the ramp-up.
    #[arg(long, default_value = "8s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// After the window, how long subscribers may take to receive the last object.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// The relay's process id: sample its CPU and RSS from /proc (same host only).
    #[arg(long)]
    pub relay_pid: Option<u32>,
    /// Print the results as one JSON object on stdout (the human summary stays on stderr).
    #[arg(long)]
    pub json: bool,
    /// How sessions verify the relay and authenticate.
    #[command(flatten)]
    pub access: Access,
    /// Namespace prefix: broadcasts are `<prefix>/<i>`.
    #[arg(long, default_value = "bench")]
    pub namespace_prefix: String,
}

/// How every session verifies relays and authenticates: the same flags in every mode.
#[derive(clap::Args, Debug, Clone, PartialEq, Default)]
pub struct Access {
    /// Trust a server certificate by the hex SHA-256 of its DER (as `banyan-relay --dev-cert`
    /// prints); repeat it to trust several relays.
    #[arg(long, conflicts_with_all = ["tls_ca", "tls_insecure"])]
    pub tls_hash: Vec<String>,
    /// Trust server certificates issued by the CA certificates in this PEM file.
    #[arg(long, conflicts_with = "tls_insecure")]
    pub tls_ca: Option<PathBuf>,
    /// Accept any server certificate (local testing only).
    #[arg(long)]
    pub tls_insecure: bool,
    /// JWT sent as the AUTHORIZATION TOKEN setup option by every session.
    #[arg(long, env = "BANYAN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl Access {
    /// The certificate check the flags ask for, and its name in reports: `sha256`, `ca`,
    /// `insecure` or `system` (the system's root store).
    pub fn verification(&self) -> Result<(ServerVerification, &'static str), Error> {
        if !self.tls_hash.is_empty() {
            let hashes = self
                .tls_hash
                .iter()
                .map(|h| {
                    banyan_certs::parse_sha256_hex(h).map_err(|e| Error::Config(format!("--tls-hash: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((ServerVerification::PinnedSha256(hashes), "sha256"))
        } else if let Some(ca) = &self.tls_ca {
            Ok((ServerVerification::CaFile(ca.clone()), "ca"))
        } else if self.tls_insecure {
            Ok((ServerVerification::InsecureSkipVerify, "insecure"))
        } else {
            Ok((ServerVerification::SystemRoots, "system"))
        }
    }

    /// What every session sends in SETUP: the token (USE_VALUE, type 0), if any.
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions::with_token(self.token.as_deref())
    }
}

/// Which transport subscribers use.
#[derive(ValueEnum, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TransportChoice {
    /// Raw QUIC (`moqt://`, ALPN `moqt-18`).
    Quic,
    /// WebTransport over HTTP/3 (`https://`).
    Webtransport,
    /// QMux over WebSocket (`ws://`, `wss://`): the URL must be the relay's WebSocket URL
    /// (its `--ws-listen` port), which publishers then use too.
    Websocket,
    /// Alternate: even subscribers raw QUIC, odd ones WebTransport.
    Mixed,
}

impl TransportChoice {
    /// The transport of subscriber number `index`.
    pub fn for_subscriber(self, index: u64) -> TransportKind {
        match self {
            Self::Quic => TransportKind::Quic,
            Self::Webtransport => TransportKind::WebTransport,
            Self::Websocket => TransportKind::WebSocket,
            Self::Mixed if index % 2 == 0 => TransportKind::Quic,
            Self::Mixed => TransportKind::WebTransport,
        }
    }
}

/// A validated load profile. Serialized into the report so results say what produced them.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Profile {
    /// The relay URL as given.
    pub url: String,
    /// Publisher sessions.
    pub publishers: u32,
    /// Broadcasts per publisher.
    pub broadcasts_per_publisher: u32,
    /// Broadcasts in total (`publishers × broadcasts_per_publisher`).
    pub broadcasts: u64,
    /// Subscribers per broadcast.
    pub subscribers_per_broadcast: u32,
    /// Subscribers in total.
    pub subscribers: u64,
    /// Objects per second per broadcast.
    pub fps: f64,
    /// Object payload bytes.
    pub object_size: u64,
    /// Objects per group.
    pub gop: u32,
    /// Subscriber transport.
    pub transport: TransportChoice,
    /// Ramp-up in seconds.
    pub ramp_up_s: f64,
    /// Measurement window in seconds.
    pub duration_s: f64,
    /// Drain timeout in seconds.
    pub drain_timeout_s: f64,
    /// The relay process sampled, if any.
    pub relay_pid: Option<u32>,
    /// Namespace prefix.
    pub namespace_prefix: String,
    /// Whether a token was sent (never the token itself).
    pub token: bool,
    /// How the server certificate was verified: `sha256`, `ca`, `insecure` or `system`.
    pub tls: String,
}

impl Profile {
    /// Check the arguments and derive the profile.
    pub fn from_args(args: &Args) -> Result<Self, Error> {
        let url = Url::parse(&args.url).map_err(|e| Error::Config(format!("URL {:?}: {e}", args.url)))?;
        let url_transport = match url.scheme() {
            "moqt" => TransportChoice::Quic,
            "https" => TransportChoice::Webtransport,
            "ws" | "wss" => TransportChoice::Websocket,
            other => {
                return Err(Error::Config(format!(
                    "unsupported URL scheme {other:?} (use moqt://, https://, ws:// or wss://)"
                )))
            }
        };
        // QUIC and WebTransport share the relay's UDP port; its WebSocket port is another one.
        let websocket_url = url_transport == TransportChoice::Websocket;
        match args.transport {
            Some(TransportChoice::Websocket) if !websocket_url => {
                return Err(Error::Config(format!(
                    "--transport websocket needs the relay's ws:// or wss:// URL (its --ws-listen port), not {url}"
                )))
            }
            Some(TransportChoice::Quic | TransportChoice::Webtransport | TransportChoice::Mixed)
                if websocket_url =>
            {
                return Err(Error::Config(format!(
                    "{url} is a WebSocket URL: QUIC and WebTransport need the relay's moqt:// or https:// URL"
                )))
            }
            _ => {}
        }
        if url.host_str().is_none() {
            return Err(Error::Config(format!("URL {url} has no host")));
        }
        if args.publishers == 0 || args.broadcasts == 0 {
            return Err(Error::Config(
                "--publishers and --broadcasts must be at least 1".into(),
            ));
        }
        if !(args.fps.is_finite() && args.fps > 0.0 && args.fps <= 1000.0) {
            return Err(Error::Config(format!("--fps {} is outside (0, 1000]", args.fps)));
        }
        if args.object_size == 0 || args.object_size > MAX_OBJECT_SIZE {
            return Err(Error::Config(format!(
                "--object-size {} is outside 1..={MAX_OBJECT_SIZE} bytes",
                args.object_size
            )));
        }
        if args.gop == 0 {
            return Err(Error::Config("--gop must be at least 1".into()));
        }
        if args.duration.is_zero() {
            return Err(Error::Config("--duration must be more than 0".into()));
        }
        if args.namespace_prefix.is_empty() || args.namespace_prefix.contains('/') {
            return Err(Error::Config(
                "--namespace-prefix must be one non-empty namespace field".into(),
            ));
        }
        let broadcasts = u64::from(args.publishers) * u64::from(args.broadcasts);
        let subscribers = broadcasts * u64::from(args.subscribers);
        if subscribers > MAX_SUBSCRIBERS {
            return Err(Error::Config(format!(
                "{subscribers} subscribers in total exceeds {MAX_SUBSCRIBERS}"
            )));
        }
        let (_, tls) = args.access.verification()?;
        Ok(Self {
            url: args.url.clone(),
            publishers: args.publishers,
            broadcasts_per_publisher: args.broadcasts,
            broadcasts,
            subscribers_per_broadcast: args.subscribers,
            subscribers,
            fps: args.fps,
            object_size: args.object_size,
            gop: args.gop,
            transport: args.transport.unwrap_or(url_transport),
            ramp_up_s: args.ramp_up.as_secs_f64(),
            duration_s: args.duration.as_secs_f64(),
            drain_timeout_s: args.drain_timeout.as_secs_f64(),
            relay_pid: args.relay_pid,
            namespace_prefix: args.namespace_prefix.clone(),
            token: args.access.token.is_some(),
            tls: tls.to_string(),
        })
    }

    /// The time between two objects of one broadcast.
    pub fn frame_interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.fps)
    }

    /// The ramp-up as a duration.
    pub fn ramp_up(&self) -> Duration {
        Duration::from_secs_f64(self.ramp_up_s)
    }

    /// The measurement window as a duration.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration_s)
    }

    /// The drain timeout as a duration.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.drain_timeout_s)
    }
}

/// The URL a session of `kind` dials: `url` with its scheme set to `moqt` or `https` (which
/// share the relay's UDP port); a WebSocket session dials `url` as given (`ws://`, `wss://`).
pub fn url_for(url: &str, kind: TransportKind) -> Result<Url, Error> {
    let (_, rest) = url
        .split_once("://")
        .ok_or_else(|| Error::Config(format!("URL {url:?} has no scheme")))?;
    let scheme = match kind {
        TransportKind::Quic => "moqt",
        TransportKind::WebTransport => "https",
        TransportKind::WebSocket => {
            return Url::parse(url).map_err(|e| Error::Config(format!("URL {url:?}: {e}")));
        }
    };
    Url::parse(&format!("{scheme}://{rest}")).map_err(|e| Error::Config(format!("URL {url:?}: {e}")))
}

/// Parse a byte size: `20000`, `20KB` (decimal), `20KiB` or `20K` (binary), likewise `MB`/`MiB`/`M`
/// and `GB`/`GiB`/`G`; `B` is allowed. Case-insensitive; spaces between number and unit allowed.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 20000, 20KB, 16KiB)"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "k" | "kib" => 1 << 10,
        "mb" => 1_000_000,
        "m" | "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "g" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} in {text:?}")),
    };
    let bytes = (number * multiplier as f64).round();
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("banyan-bench").chain(line.iter().copied()))
    }

    #[test]
    fn the_scripted_call_parses() {
        let a = args(&[
            "moqt://127.0.0.1:4443/",
            "--publishers",
            "1",
            "--subscribers",
            "50",
            "--duration",
            "8s",
            "--relay-pid",
            "1234",
            "--json",
        ])
        .unwrap();
        assert_eq!(a.publishers, 1);
        assert_eq!(a.subscribers, 50);
        assert_eq!(a.duration, Duration::from_secs(8));
        assert_eq!(a.relay_pid, Some(1234));
        assert!(a.json);
        let p = Profile::from_args(&a).unwrap();
        assert_eq!(p.subscribers, 50);
        assert_eq!(p.transport, TransportChoice::Quic);
        assert_eq!(p.object_size, 20_000);
        assert_eq!(p.gop, 30);
        assert_eq!(p.fps, 30.0);
        assert_eq!(p.ramp_up_s, 2.0);
        assert_eq!(p.tls, "system");
    }

    #[test]
    fn every_option_parses() {
        let hash = "ab".repeat(32);
        let a = args(&[
            "https://relay.example:4443/live",
            "--publishers=2",
            "--broadcasts=3",
            "--subscribers=4",
            "--fps=60",
            "--object-size=1MiB",
            "--gop=60",
            "--transport=mixed",
            "--ramp-up=500ms",
            "--duration=1m",
            "--drain-timeout=1s",
            "--tls-hash",
            &hash,
            "--token=abc.def.ghi",
        ])
        .unwrap();
        let p = Profile::from_args(&a).unwrap();
        assert_eq!(p.broadcasts, 6);
        assert_eq!(p.subscribers, 24);
        assert_eq!(p.object_size, 1 << 20);
        assert_eq!(p.transport, TransportChoice::Mixed);
        assert_eq!(p.ramp_up_s, 0.5);
        assert_eq!(p.duration_s, 60.0);
        assert_eq!(p.tls, "sha256");
        assert!(p.token);
    }

    #[test]
    fn webtransport_url_defaults_to_webtransport_subscribers() {
        let p = Profile::from_args(&args(&["https://localhost:4443/"]).unwrap()).unwrap();
        assert_eq!(p.transport, TransportChoice::Webtransport);
    }

    #[test]
    fn bad_arguments_are_errors_not_panics() {
        assert!(args(&[]).is_err(), "URL is required");
        assert!(args(&["moqt://h:1", "--object-size", "lots"]).is_err());
        assert!(args(&["moqt://h:1", "--duration", "soon"]).is_err());
        assert!(args(&["moqt://h:1", "--transport", "carrier-pigeon"]).is_err());
        assert!(args(&["moqt://h:1", "--tls-insecure", "--tls-hash", "00"]).is_err());
        let profile = |line: &[&str]| Profile::from_args(&args(line).unwrap());
        assert!(profile(&["http://h:1"]).is_err(), "scheme");
        assert!(profile(&["not a url"]).is_err());
        assert!(profile(&["moqt://h:1", "--fps", "0"]).is_err());
        assert!(profile(&["moqt://h:1", "--fps", "NaN"]).is_err());
        assert!(profile(&["moqt://h:1", "--gop", "0"]).is_err());
        assert!(profile(&["moqt://h:1", "--publishers", "0"]).is_err());
        assert!(profile(&["moqt://h:1", "--object-size", "0"]).is_err());
        assert!(profile(&["moqt://h:1", "--object-size", "9MiB"]).is_err());
        assert!(profile(&["moqt://h:1", "--duration", "0s"]).is_err());
        assert!(profile(&["moqt://h:1", "--tls-hash", "zz"]).is_err());
        assert!(profile(&["moqt://h:1", "--namespace-prefix", "a/b"]).is_err());
        assert!(profile(&["moqt://h:1", "--publishers=1000", "--subscribers=1000"]).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("20000"), Ok(20_000));
        assert_eq!(parse_size("20KB"), Ok(20_000));
        assert_eq!(parse_size("20kb"), Ok(20_000));
        assert_eq!(parse_size("20 KiB"), Ok(20_480));
        assert_eq!(parse_size("20K"), Ok(20_480));
        assert_eq!(parse_size("1.5MB"), Ok(1_500_000));
        assert_eq!(parse_size("2M"), Ok(2 << 20));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("7B"), Ok(7));
        assert!(parse_size("").is_err());
        assert!(parse_size("KB").is_err());
        assert!(parse_size("12 furlongs").is_err());
        assert!(parse_size("1.2.3").is_err());
        assert!(parse_size("99999999999999999999999GB").is_err());
    }

    #[test]
    fn urls_switch_transport() {
        let quic = url_for("https://localhost:4443/x?y=1", TransportKind::Quic).unwrap();
        assert_eq!(quic.as_str(), "moqt://localhost:4443/x?y=1");
        let wt = url_for("moqt://[::1]:4443/", TransportKind::WebTransport).unwrap();
        assert_eq!(wt.as_str(), "https://[::1]:4443/");
        assert!(url_for("nothing", TransportKind::Quic).is_err());
        let ws = url_for("wss://relay.example:8443/?jwt=t", TransportKind::WebSocket).unwrap();
        assert_eq!(ws.as_str(), "wss://relay.example:8443/?jwt=t");
    }

    #[test]
    fn websocket_needs_a_websocket_url() {
        let p = Profile::from_args(&args(&["ws://h:8080/"]).unwrap()).unwrap();
        assert_eq!(p.transport, TransportChoice::Websocket);
        let err =
            Profile::from_args(&args(&["moqt://h:1", "--transport", "websocket"]).unwrap()).unwrap_err();
        assert!(err.to_string().contains("--ws-listen"), "{err}");
        let err = Profile::from_args(&args(&["ws://h:1", "--transport", "quic"]).unwrap()).unwrap_err();
        assert!(err.to_string().contains("WebSocket URL"), "{err}");
    }

    #[test]
    fn mixed_alternates() {
        assert_eq!(TransportChoice::Mixed.for_subscriber(0), TransportKind::Quic);
        assert_eq!(
            TransportChoice::Mixed.for_subscriber(1),
            TransportKind::WebTransport
        );
        assert_eq!(TransportChoice::Quic.for_subscriber(1), TransportKind::Quic);
    }
}
