//! The relay connection options both binaries share (TLS and auth), and dialling with a
//! bounded handshake so a dead relay is noticed quickly.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use banyan_certs::ServerVerification;
use banyan_moq::coding::SessionErrorCode;
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
    /// An authorization token (JWT) sent in SETUP. The relay ends the session at the token's
    /// `exp` (plus 5 s); a static token cannot be refreshed, so the program then exits non-zero.
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
    /// The `exp` of the token presented, if it is a JWT.
    token_exp: Option<u64>,
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
            token_exp: self.token_expiry(),
            url: self.url.clone(),
            options,
            timeout: self.connect_timeout,
        })
    }
}

impl ConnectArgs {
    /// The `exp` of `--token` (seconds since the Unix epoch), read without verifying it (the
    /// relay does that); `None` without a token or when it is not a JWT with `exp`.
    pub fn token_expiry(&self) -> Option<u64> {
        self.token.as_deref().and_then(jwt_expiry)
    }

    /// Say on stderr when `--token` runs out: the relay ends the session then.
    pub fn announce_token_expiry(&self, program: &str) {
        let Some(exp) = self.token_expiry() else { return };
        let now = unix_now();
        let end = exp.saturating_add(TOKEN_LEEWAY_SECS);
        if end <= now {
            eprintln!(
                "{program}: warning: --token expired {} s ago (exp {exp}); the relay will refuse it",
                now - exp
            );
        } else {
            eprintln!(
                "{program}: --token expires in {} s (exp {exp}); a static token cannot be refreshed, so the relay ends the session then (5 s later)",
                exp.saturating_sub(now)
            );
        }
    }
}

/// Seconds after `exp` during which the relay still accepts a token.
const TOKEN_LEEWAY_SECS: u64 = 5;

/// The `exp` claim of a JWT, decoded without verifying the signature.
pub fn jwt_expiry(jwt: &str) -> Option<u64> {
    use base64::Engine as _;
    #[derive(serde::Deserialize)]
    struct Exp {
        exp: u64,
    }
    let payload = jwt.trim().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Exp>(&bytes).ok().map(|e| e.exp)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Connector {
    /// When the relay ended the session (or refused the connection) because the token
    /// expired, the error to exit with; `None` for any other cause.
    pub fn token_expired(&self, program: &str, error: &anyhow::Error) -> Option<anyhow::Error> {
        let code = error
            .chain()
            .find_map(|e| match e.downcast_ref::<banyan_moq::session::Error>()? {
                banyan_moq::session::Error::Closed { code, .. } => Some(*code),
                _ => None,
            })?;
        (code == SessionErrorCode::ExpiredAuthToken).then(|| {
            let exp = self
                .token_exp
                .map_or(String::new(), |exp| format!(" (exp {exp})"));
            anyhow::anyhow!(
                "{program}: the relay closed the session with EXPIRED_AUTH_TOKEN: the token{exp} has expired \
                 and a static token cannot be refreshed; get a fresh one (the control plane's /v1/watch, \
                 /v1/publish or /v1/refresh) and run again"
            )
        })
    }

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
    fn jwt_expiry_reads_exp_without_verifying() {
        // {"alg":"HS256","typ":"JWT"} . {"ns":"live/a","subs":true,"exp":1767225600} . junk
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJucyI6ImxpdmUvYSIsInN1YnMiOnRydWUsImV4cCI6MTc2NzIyNTYwMH0.c2ln";
        assert_eq!(jwt_expiry(jwt), Some(1_767_225_600));
        assert_eq!(jwt_expiry("not a jwt"), None);
        assert_eq!(jwt_expiry("a.!!!.c"), None);
    }

    #[test]
    fn backoff_doubles_to_a_cap_and_resets() {
        let mut b = Backoff::default();
        let delays: Vec<u128> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay().as_millis(), 100);
    }
}
