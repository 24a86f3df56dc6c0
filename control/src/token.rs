//! Minting relay tokens: JWTs the relay's `auth` module accepts (HS256 shared secret or ES256
//! P-256 key; claims [`Claims`], shared with the relay through [`api`](crate::api)).
//!
//! Key files use the relay's `--auth-key` format: a PEM file (`PRIVATE KEY`, PKCS#8, P-256)
//! selects ES256; anything else is an HS256 secret, surrounding ASCII whitespace trimmed, at
//! least 32 bytes. (A SEC1 `EC PRIVATE KEY` is refused here: convert it with
//! `openssl pkcs8 -topk8 -nocrypt`.)

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

use crate::api::Claims;

/// The signing key and token lifetimes (part of [`ControlConfig`](crate::config::ControlConfig)).
#[derive(Debug, Clone, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TokenSettings {
    /// Key for minting viewer and publisher tokens: an HS256 secret (≥ 32 bytes, whitespace
    /// trimmed) or an ES256 P-256 PKCS#8 PEM private key; the relays' --auth-key must match.
    /// Without it tokens are empty (relays must run --insecure-no-auth).
    #[arg(long, value_name = "FILE")]
    pub auth_key: Option<std::path::PathBuf>,

    /// Lifetime of a viewer token. Relays end a session 5 s after its token's exp, so viewers
    /// that stay longer refresh it (POST /v1/refresh) ahead of time: shorter means revocation
    /// sooner, longer means fewer refreshes (100k viewers at 10 min: about 170 per second).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
    #[serde(with = "crate::layered::serde_duration")]
    pub token_ttl: std::time::Duration,

    /// Lifetime of a publisher token (refreshed like a viewer's, or the session ends with it).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    #[serde(with = "crate::layered::serde_duration")]
    pub publish_token_ttl: std::time::Duration,

    /// A moderator the broadcaster names, as BROADCAST=USER (repeatable; TOML
    /// `moderator = ["live/demo=alice"]`): a viewer asking `/v1/watch/BROADCAST?user=USER` gets a
    /// token with the `mod` claim. Control has no login: put it behind a proxy that sets `user`.
    #[arg(long, value_name = "BROADCAST=USER", action = clap::ArgAction::Append)]
    #[serde(default)]
    pub moderator: Vec<String>,
}

/// The moderators named in [`TokenSettings::moderator`]: (broadcast, user) pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Moderators(Vec<(String, String)>);

impl Moderators {
    /// Parse `BROADCAST=USER` entries (each part non-empty, the user a valid viewer name).
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut named = Vec::new();
        for entry in entries {
            let Some((broadcast, user)) = entry.split_once('=') else {
                return Err(format!("--moderator {entry:?}: expected BROADCAST=USER"));
            };
            let broadcast = broadcast.trim().trim_matches('/');
            if broadcast.is_empty() || !valid_user(user.trim()) {
                return Err(format!(
                    "--moderator {entry:?}: expected BROADCAST=USER (USER: 1-64 of A-Z a-z 0-9 _ . -)"
                ));
            }
            named.push((broadcast.to_owned(), user.trim().to_owned()));
        }
        Ok(Self(named))
    }

    /// Whether `user` moderates `broadcast`.
    pub fn allows(&self, broadcast: &str, user: &str) -> bool {
        let broadcast = broadcast.trim_matches('/');
        self.0.iter().any(|(b, u)| b == broadcast && u == user)
    }
}

/// Whether `user` may be a viewer's name (`sub`): 1-64 ASCII letters, digits, `_`, `.`, `-`.
pub fn valid_user(user: &str) -> bool {
    (1..=64).contains(&user.len())
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The smallest HS256 secret accepted, in bytes (as the relay).
pub const MIN_HS256_SECRET_LEN: usize = 32;

/// Why a key could not be loaded or a token minted.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The key file could not be read.
    #[error("reading key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// An HS256 secret that is too short.
    #[error("HS256 secret is {0} bytes; at least 32 are required")]
    ShortSecret(usize),
    /// A PEM key jsonwebtoken cannot use for ES256.
    #[error("unsupported PEM key (need a PKCS#8 P-256 `PRIVATE KEY`): {0}")]
    Pem(String),
    /// Signing failed.
    #[error("signing the token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
    /// A token offered for refresh that this key did not sign, that is malformed, or that
    /// has run out (past `exp` plus the relays' allowance).
    #[error("token refused: {0}")]
    Refused(String),
}

/// Seconds after `exp` during which relays still accept a token (as the relay's
/// `EXP_LEEWAY_SECS`); a token may be refreshed until then.
pub const EXP_LEEWAY_SECS: u64 = 5;

/// Signs tokens with one key.
pub struct Minter {
    algorithm: Algorithm,
    key: EncodingKey,
    /// Verifies tokens offered for refresh (the public half for ES256).
    decoding: DecodingKey,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minter")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl Minter {
    /// Load a key file (format in the module docs).
    pub fn from_file(path: &Path) -> Result<Self, TokenError> {
        let bytes = std::fs::read(path).map_err(|source| TokenError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_key(&bytes)
    }

    /// A minter from a key file's contents.
    pub fn from_key(bytes: &[u8]) -> Result<Self, TokenError> {
        let trimmed = bytes.trim_ascii();
        if trimmed.starts_with(b"-----BEGIN") {
            let key = EncodingKey::from_ec_pem(trimmed).map_err(|e| TokenError::Pem(e.to_string()))?;
            Ok(Self {
                algorithm: Algorithm::ES256,
                key,
                decoding: es256_public(trimmed)?,
            })
        } else if trimmed.len() < MIN_HS256_SECRET_LEN {
            Err(TokenError::ShortSecret(trimmed.len()))
        } else {
            Ok(Self {
                algorithm: Algorithm::HS256,
                key: EncodingKey::from_secret(trimmed),
                decoding: DecodingKey::from_secret(trimmed),
            })
        }
    }

    /// Sign `claims`.
    pub fn mint(&self, claims: &Claims) -> Result<String, TokenError> {
        Ok(jsonwebtoken::encode(
            &Header::new(self.algorithm),
            claims,
            &self.key,
        )?)
    }

    /// A subscribe-only token for viewer `sub` of `broadcast`, expiring at `exp`, in chat
    /// `room`; with the `mod` claim when `moderator`.
    pub fn viewer(
        &self,
        broadcast: &str,
        sub: &str,
        room: &str,
        exp: u64,
        moderator: bool,
    ) -> Result<String, TokenError> {
        self.mint(&Claims {
            sub: Some(sub.to_owned()),
            moderator,
            ns: broadcast.trim_matches('/').to_owned(),
            publish: false,
            subscribe: true,
            exp,
            room: Some(room.to_owned()),
            ..Claims::default()
        })
    }

    /// A publish-only token for `broadcast`, expiring at `exp`, with its own subject
    /// (`publisher-` and 16 random hex digits).
    pub fn publisher(&self, broadcast: &str, exp: u64) -> Result<String, TokenError> {
        self.mint(&Claims {
            sub: Some(subject("publisher")?),
            ns: broadcast.trim_matches('/').to_owned(),
            publish: true,
            subscribe: false,
            exp,
            room: None,
            ..Claims::default()
        })
    }
}

impl Minter {
    /// Verify a token this key signed, as of `now` (seconds since the Unix epoch): the
    /// signature and algorithm, the claims, and that `now < exp + EXP_LEEWAY_SECS`.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(self.algorithm);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Claims>(token.trim(), &self.decoding, &validation)
            .map_err(|e| TokenError::Refused(e.to_string()))?
            .claims;
        if now >= claims.exp.saturating_add(EXP_LEEWAY_SECS) {
            return Err(TokenError::Refused("the token has expired".into()));
        }
        Ok(claims)
    }

    /// A fresh token for the holder of `token` (verified with [`verify`](Self::verify)):
    /// the same claims (subject, namespace, actions, room), ending at `exp`.
    pub fn refresh(&self, token: &str, now: u64, exp: u64) -> Result<(String, Claims), TokenError> {
        let claims = Claims {
            exp,
            ..self.verify(token, now)?
        };
        Ok((self.mint(&claims)?, claims))
    }
}

/// A subject no other token has: `kind-` and 16 random hex digits (`anon-…` for a viewer who
/// gave no name, `publisher-…`).
pub(crate) fn subject(kind: &str) -> Result<String, TokenError> {
    let mut bytes = [0u8; 8];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| TokenError::Refused("no randomness".into()))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{kind}-{hex}"))
}

/// The public half of a PKCS#8 P-256 private key, to verify what it signs.
fn es256_public(pem_text: &[u8]) -> Result<DecodingKey, TokenError> {
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
    let block = pem::parse(pem_text).map_err(|e| TokenError::Pem(e.to_string()))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, block.contents())
        .map_err(|e| TokenError::Pem(format!("not a P-256 PKCS#8 key: {e}")))?;
    Ok(DecodingKey::from_ec_der(pair.public_key().as_ref()))
}
