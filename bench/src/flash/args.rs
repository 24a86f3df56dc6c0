//! The command line of `banyan-bench flash`.

use std::time::Duration;

use clap::Parser;
use url::Url;

use crate::profile::{Access, TransportChoice};
use crate::Error;

/// `banyan-bench flash`: a flash crowd of viewers through the control plane.
#[derive(Parser, Debug, Clone, PartialEq)]
#[command(
    name = "banyan-bench flash",
    version,
    about = "A flash crowd: viewers arrive at a steady rate, each asks the control plane where to \
             watch (GET /v1/watch/BROADCAST, as the web client does), connects to that relay with \
             the token it was given and subscribes to the broadcast's video track",
    long_about = None,
    after_help = "Reports viewers with media / total, time to first frame (from arrival: control \
                  answer, QUIC+TLS handshake, SETUP, SUBSCRIBE_OK, first object) and each stage's \
                  percentiles, and every relay's peak sessions against its capacity from \
                  GET /v1/status. With --expect-* it prints PASS or FAIL and exits 1 on FAIL.\n\n\
                  Example: banyan-bench flash http://127.0.0.1:8080 --broadcast bench/0 \
                  --viewers 5000 --arrival 10s --expect-media 99 --expect-ttff-p95 1.5s"
)]
pub struct FlashArgs {
    /// The control plane's base URL (`http://host:port`).
    pub control: Url,
    /// The broadcast to watch (its `/`-separated name); a publisher must already publish it.
    #[arg(long, default_value = "bench/0")]
    pub broadcast: String,
    /// Viewers in the crowd.
    #[arg(long, default_value_t = 1000)]
    pub viewers: u64,
    /// They arrive evenly spread over this time.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub arrival: Duration,
    /// After the last arrival everyone keeps watching this long, then leaves; a viewer
    /// without media by then counts as without media.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub watch: Duration,
    /// `?region=` of every request (default: let control choose).
    #[arg(long)]
    pub region: Option<String>,
    /// Which of the answer's URLs viewers use: `quic` (`moqt`), `webtransport` or
    /// `websocket`; `mixed` alternates raw QUIC and WebTransport.
    #[arg(long, value_enum, default_value = "quic")]
    pub transport: TransportChoice,
    /// Client UDP sockets per relay certificate that viewers share (a browser has one each;
    /// a few dozen sessions per socket keep the bench from being the bottleneck).
    #[arg(long, default_value_t = 32)]
    pub endpoints: usize,
    /// How often to read `GET /v1/status` for relay load and spawns (`0s`: never).
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    pub status_every: Duration,
    /// Target: at least this percentage of viewers receive media (prints PASS/FAIL).
    #[arg(long, value_name = "PERCENT")]
    pub expect_media: Option<f64>,
    /// Target: time to first frame p95 at most this (prints PASS/FAIL).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub expect_ttff_p95: Option<Duration>,
    /// How viewers verify relays. Without any of these flags each viewer pins the relay's
    /// `cert_sha256` from control's answer (as a browser does), or uses the system roots when
    /// the answer has none. Control's token replaces `--token`.
    #[command(flatten)]
    pub access: Access,
    /// Print the results as one JSON object on stdout (the summary stays on stderr).
    #[arg(long)]
    pub json: bool,
}

impl FlashArgs {
    /// Check the numbers make sense.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |what: &str| Err(Error::Config(what.into()));
        if self.viewers == 0 || self.viewers > crate::profile::MAX_SUBSCRIBERS {
            return bad("--viewers must be in 1..=100000");
        }
        if self.endpoints == 0 {
            return bad("--endpoints must be at least 1");
        }
        if !matches!(self.control.scheme(), "http" | "https") {
            return bad("the control URL must be http:// or https://");
        }
        if self.expect_media.is_some_and(|p| !(0.0..=100.0).contains(&p)) {
            return bad("--expect-media is a percentage (0-100)");
        }
        Ok(())
    }

    /// Whether any target was given (then the run ends with a verdict).
    pub fn has_targets(&self) -> bool {
        self.expect_media.is_some() || self.expect_ttff_p95.is_some()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let a = FlashArgs::try_parse_from([
            "banyan-bench flash",
            "http://127.0.0.1:8080",
            "--viewers",
            "5000",
            "--arrival",
            "10s",
            "--expect-media",
            "99",
            "--expect-ttff-p95",
            "1.5s",
        ])
        .unwrap();
        assert_eq!(a.viewers, 5000);
        assert_eq!(a.arrival, Duration::from_secs(10));
        assert_eq!(a.expect_ttff_p95, Some(Duration::from_millis(1500)));
        assert!(a.validate().is_ok() && a.has_targets());
        let zero = FlashArgs::try_parse_from(["flash", "http://h:1", "--viewers", "0"]).unwrap();
        assert!(zero.validate().is_err());
        let scheme = FlashArgs::try_parse_from(["flash", "moqt://h:1"]).unwrap();
        assert!(scheme.validate().is_err());
    }
}
