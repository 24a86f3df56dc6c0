//! Stream keys are credentials: what a key publishes, and how it is logged.
//!
//! A key is either listed in the `--keys` TOML table (`[keys."KEY"] broadcast = "live/x"`,
//! optional `token`), or is itself a publish JWT: then the broadcast is the token's `ns` claim
//! (read without verifying: the relay verifies the token when the gateway presents it, and its
//! answer to PUBLISH_NAMESPACE decides). Anything else is refused here, before the relay is
//! asked. Keys never reach a log: [`key_hash`] names them.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// What a stream key publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The broadcast's namespace, `/`-separated.
    pub broadcast: String,
    /// The token presented to the relay, if any.
    pub token: Option<String>,
}

/// One entry of the `[keys]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// The broadcast namespace, e.g. `live/studio`.
    pub broadcast: String,
    /// The publish token for the relay (omit for a relay without auth).
    #[serde(default)]
    pub token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(default)]
    keys: BTreeMap<String, KeyEntry>,
}

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not in the table, and not a token naming a broadcast.
    #[error("unknown stream key")]
    Unknown,
    /// Reading the key file failed.
    #[error("key file: {0}")]
    File(String),
}

/// The `[keys]` table (empty without `--keys`).
#[derive(Debug, Clone, Default)]
pub struct KeyTable {
    keys: BTreeMap<String, KeyEntry>,
}

/// The longest stream key looked at (a JWT is far shorter).
pub const MAX_KEY_LEN: usize = 8 * 1024;

impl KeyTable {
    /// Read the table from a TOML file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| KeyError::File(format!("{}: {e}", path.display())))?;
        Self::parse(&text)
    }

    /// Parse the table from TOML text.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let file: KeyFile = toml::from_str(text).map_err(|e| KeyError::File(e.to_string()))?;
        for (key, entry) in &file.keys {
            if entry.broadcast.trim_matches('/').is_empty() {
                return Err(KeyError::File(format!(
                    "key {} has an empty broadcast",
                    key_hash(key)
                )));
            }
        }
        Ok(Self { keys: file.keys })
    }

    /// How many keys are listed.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is listed.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// What `key` publishes: a listed key's entry, else the broadcast a JWT names.
    pub fn resolve(&self, key: &str) -> Result<Target, KeyError> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(KeyError::Unknown);
        }
        if let Some(entry) = self.keys.get(key) {
            return Ok(Target {
                broadcast: entry.broadcast.trim_matches('/').to_string(),
                token: entry.token.clone(),
            });
        }
        let broadcast = jwt_namespace(key).ok_or(KeyError::Unknown)?;
        Ok(Target {
            broadcast,
            token: Some(key.to_string()),
        })
    }
}

/// The `ns` claim of a publish JWT (unverified), if `key` is one naming a broadcast.
fn jwt_namespace(key: &str) -> Option<String> {
    let mut parts = key.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: banyan_control::api::Claims = serde_json::from_slice(&json).ok()?;
    let ns = claims.ns.trim_matches('/');
    (claims.publish && !ns.is_empty()).then(|| ns.to_string())
}

/// A short, stable, non-reversible name for a key in logs: the first 8 hex digits of its SHA-256.
pub fn key_hash(key: &str) -> String {
    key_digest(key)[..8].to_string()
}

/// A key's full SHA-256 (hex): how the gateway remembers which key a broadcast was claimed
/// with, without keeping the key itself.
pub fn key_digest(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn jwt(claims: &str) -> String {
        let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", b(r#"{"alg":"HS256"}"#), b(claims))
    }

    #[test]
    fn table_keys_and_jwts_resolve_and_others_are_refused() {
        let table = KeyTable::parse("[keys.abc]\nbroadcast = \"/live/studio/\"\ntoken = \"t\"\n").unwrap();
        assert_eq!(
            table.resolve("abc").unwrap(),
            Target {
                broadcast: "live/studio".into(),
                token: Some("t".into())
            }
        );
        let token = jwt(r#"{"ns":"live/cam","pub":true,"exp":1}"#);
        assert_eq!(table.resolve(&token).unwrap().broadcast, "live/cam");
        assert_eq!(
            table.resolve(&token).unwrap().token.as_deref(),
            Some(token.as_str())
        );
        // Subscribe-only tokens, tokens for everything, garbage and unknown keys are refused.
        assert_eq!(
            table.resolve(&jwt(r#"{"ns":"live/cam","subs":true,"exp":1}"#)),
            Err(KeyError::Unknown)
        );
        assert_eq!(
            table.resolve(&jwt(r#"{"ns":"","pub":true,"exp":1}"#)),
            Err(KeyError::Unknown)
        );
        assert_eq!(table.resolve("a.b.c"), Err(KeyError::Unknown));
        assert_eq!(table.resolve("nope"), Err(KeyError::Unknown));
        assert_eq!(table.resolve(""), Err(KeyError::Unknown));
        assert!(KeyTable::parse("[keys.x]\nbroadcast = \"\"\n").is_err());
        assert!(KeyTable::parse("[keys.x]\nbroadcast = \"a\"\nextra = 1\n").is_err());
    }

    #[test]
    fn key_hash_is_short_and_hides_the_key() {
        let h = key_hash("secret-key");
        assert_eq!(h.len(), 8);
        assert!(!h.contains("secret"));
        assert_eq!(h, key_hash("secret-key"));
    }
}
