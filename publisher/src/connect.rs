//! The relay connection options both binaries share (TLS and auth), and dialling with a
//! bounded handshake so a dead relay is noticed quickly.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use banyan_certs::ServerVerification;
use banyan_moq::session::{Client, ClientOptions, Session, SessionConfig, SessionDriver, TransportConfig};
use url::Url;

/// Where and how to connect: `moqt://` (raw QUIC), `https://` (WebTransport) or `ws://`/`wss://`
/// (QMux over WebSocket, the relay's `--ws-listen` port).
#[derive(clap::Args, Debug, Clone)]
pub struct ConnectArgs {
    /// The relay URL, e.g. `moqt://relay.example:4443`, `https://relay.example:4443/` or
    /// `wss://relay.example:8443/` (WebSocket).
    pub url: Url,
    /// Pin the relay's certificate by its SHA-256 (hex), e.g. a `--dev-cert` relay's hash.
    #[arg(long, value_name = "HEX", conflicts_with_all = ["tls_ca", "tls_insecure"])]
    pub tls_hash: Option<String>,
    /// Trust the CA certificates in this PEM file instead of the system roots.
    #[arg(long, value_name = "PEM", conflicts_with = "tls_insecure")]
    pub tls_ca: Option<PathBuf>,
    /// Accept any certificate. Only for loopback tests.
    #[arg(long)]
    pub tls_insecure: bool,
    /// An authorization token (JWT) sent in SETUP.
    #[arg(long, value_name = "JWT", env = "BANYAN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// How long connecting (QUIC + SETUP) may take before it counts as failed.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
}

/// A ready client endpoint for [`ConnectArgs`].
#[derive(Debug, Clone)]
pub struct Connector {
    client: Client,
    url: Url,
    options: ClientOptions,
    timeout: Duration,
}

impl ConnectArgs {
    /// Build the TLS configuration and client endpoint.
    pub fn connector(&self) -> anyhow::Result<Connector> {
        let verification = if let Some(hash) = &self.tls_hash {
            let hash = banyan_certs::parse_sha256_hex(hash).context("--tls-hash")?;
            ServerVerification::PinnedSha256(vec![hash])
        } else if let Some(ca) = &self.tls_ca {
            ServerVerification::CaFile(ca.clone())
        } else if self.tls_insecure {
            ServerVerification::InsecureSkipVerify
        } else {
            ServerVerification::SystemRoots
        };
        let tls = banyan_certs::client_config(&verification, &[]).context("TLS configuration")?;
        // A relay that disappears without closing is noticed within seconds, not the
        // 30 s default, so reconnection starts promptly.
        let transport = TransportConfig {
            idle_timeout: Duration::from_secs(5),
            keep_alive: Duration::from_secs(1),
            ..Default::default()
        };
        let client = Client::new(tls, &transport, SessionConfig::default()).context("client endpoint")?;
        let options = ClientOptions::with_token(self.token.as_deref());
        Ok(Connector {
            client,
            url: self.url.clone(),
            options,
            timeout: self.connect_timeout,
        })
    }
}

impl Connector {
    /// The URL dialled.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Connect (bounded by the connect timeout) to `url`, or the configured URL.
    pub async fn connect(&self, url: Option<&Url>) -> anyhow::Result<(Session, SessionDriver)> {
        let url = url.unwrap_or(&self.url);
        match tokio::time::timeout(self.timeout, self.client.connect(url, self.options.clone())).await {
            Ok(result) => result.with_context(|| format!("connecting to {url}")),
            Err(_) => anyhow::bail!("connecting to {url}: no answer within {:?}", self.timeout),
        }
    }
}

/// Exponential backoff for reconnection: 100 ms doubling to 5 s; reset after a good session.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    /// The delay before the next attempt (and double the one after).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }

    /// Start again from the shortest delay.
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_and_resets() {
        let mut b = Backoff::default();
        let delays: Vec<u128> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay().as_millis(), 100);
    }
}
