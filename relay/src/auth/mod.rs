//! JWT authorization: tokens scoped to a namespace prefix and to publish and/or subscribe.
//!
//! # Tokens
//! A token is a JWT signed with HS256 (shared secret) or ES256 (ECDSA P-256). Its claims are
//! [`Claims`] (JSON names and meaning there), defined in `banyan_control::api` beside the
//! control plane that mints them; [`ClaimsExt`] is what the relay reads from them. `ns` and
//! `exp` are required; `sub` is optional (logged, and a refresh must keep it).
//!
//! Prefix matching is by namespace field, not by string: `ns = "live/a"` covers
//! `live/a` and `live/a/video` but not `live/ab`.
//!
//! Expiry: a token is accepted while `now < exp + 5 s` ([`EXP_LEEWAY_SECS`], for clock skew
//! between the minting host and the relay). `nbf`, `iat`, `iss` and `aud` are not checked.
//!
//! A session lasts as long as its token ([`Grant`], `grant.rs`): at `exp + 5 s` [`expire`]
//! closes it with EXPIRED_AUTH_TOKEN through [`end_session`], unless a fresh token for the same
//! subject and at least the same scope arrived first (REQUEST_UPDATE with AUTHORIZATION TOKEN
//! on an open subscription, or a new request carrying one; see `relay/README.md`).
//!
//! # Keys ([`Authenticator::from_key`])
//! - A file starting with `-----BEGIN` is PEM and selects ES256:
//!   `PUBLIC KEY` (SubjectPublicKeyInfo, verify only), `PRIVATE KEY` (PKCS#8) or
//!   `EC PRIVATE KEY` (SEC1); a private key both verifies and [mints](Authenticator::mint).
//!   The curve must be P-256.
//! - Anything else is an HS256 shared secret: the file's bytes with surrounding ASCII whitespace
//!   trimmed, at least 32 bytes (RFC 7518 §3.2).
//!
//! # Carrying tokens
//! The relay reads a token from the draft-18 AUTHORIZATION TOKEN setup option or message
//! parameter ([`jwt_from_tokens`]; the Token Value bytes are the JWT text) or, for browsers
//! that cannot set either before the session exists, from the `jwt` query parameter of the
//! WebTransport URL ([`token_from_url`]).

mod claims;
mod grant;
mod key;
#[cfg(test)]
mod tests;
mod token;

pub use claims::{Action, AuthError, ClaimsExt};
pub use grant::{end_session, expire, Grant, Refreshed};
pub use key::{mint_es256, mint_hs256, Authenticator, KeyError};
pub use token::{jwt_from_tokens, token_from_url};

/// How clients are authorized (part of [`RelayConfig`](crate::config::RelayConfig)).
#[derive(Debug, Clone, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AuthSettings {
    /// JWT verification key: an HS256 shared secret (at least 32 bytes, surrounding whitespace
    /// trimmed) or an ES256 P-256 PEM key (PUBLIC KEY, PRIVATE KEY or EC PRIVATE KEY). See README.
    #[arg(long, value_name = "FILE")]
    pub auth_key: Option<std::path::PathBuf>,

    /// Accept every client without a token. Without --auth-key the relay refuses to start unless
    /// this is given.
    #[arg(long, value_name = "BOOL", default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub insecure_no_auth: bool,
}

/// Seconds after `exp` during which a token is still accepted (clock skew allowance).
pub const EXP_LEEWAY_SECS: u64 = 5;

/// The longest token text accepted; longer ones are [`AuthError::Malformed`] without parsing.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The smallest HS256 secret accepted, in bytes (the hash size, RFC 7518 §3.2).
pub const MIN_HS256_SECRET_LEN: usize = 32;

/// The claims of a Banyan token, shared with the control plane that mints them (the JSON
/// names are in the module documentation).
pub use banyan_control::api::Claims;
