//! JWT authorization: tokens scoped to a namespace prefix and to publish and/or subscribe.
//!
//! # Tokens
//! A token is a JWT signed with HS256 (shared secret) or ES256 (ECDSA P-256). Its claims are
//! [`Claims`] (JSON names and meaning there), defined in `banyan_control::api` beside the
//! control plane that mints them; [`ClaimsExt`] is what the relay reads from them. `ns` and
//! `exp` are required; `sub` is optional and only logged.
//!
//! Prefix matching is by namespace field, not by string: `ns = "live/a"` covers
//! `live/a` and `live/a/video` but not `live/ab`.
//!
//! Expiry: a token is accepted while `now < exp + 5 s` ([`EXP_LEEWAY_SECS`], for clock skew
//! between the minting host and the relay). `nbf`, `iat`, `iss` and `aud` are not checked.
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

use std::path::Path;

use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use banyan_moq::coding::{RequestErrorCode, SessionErrorCode, TrackNamespace};
use banyan_moq::message::Token;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use url::Url;

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

/// What a token may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// PUBLISH_NAMESPACE and PUBLISH.
    Publish,
    /// SUBSCRIBE, FETCH, TRACK_STATUS and SUBSCRIBE_NAMESPACE.
    Subscribe,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Publish => "publish",
            Action::Subscribe => "subscribe",
        })
    }
}

/// The claims of a Banyan token, shared with the control plane that mints them (the JSON
/// names are in the module documentation).
pub use banyan_control::api::Claims;

/// What a relay reads from [`Claims`]: the namespace prefix and what it grants.
pub trait ClaimsExt {
    /// The namespace prefix as a [`TrackNamespace`]; leading and trailing `/` are ignored.
    /// `None` when `ns` is not a valid namespace (e.g. `"a//b"`).
    fn prefix(&self) -> Option<TrackNamespace>;

    /// True when the token grants `action` (regardless of namespace).
    fn grants(&self, action: Action) -> bool;

    /// True when the token grants `action` on `namespace` (field-wise prefix match).
    fn allows(&self, action: Action, namespace: &TrackNamespace) -> bool {
        self.check(action, namespace).is_ok()
    }

    /// Like [`allows`](Self::allows), with the reason for a refusal:
    /// [`AuthError::NotAllowed`] when the action is not granted at all,
    /// [`AuthError::WrongNamespace`] when `namespace` is outside the prefix.
    fn check(&self, action: Action, namespace: &TrackNamespace) -> Result<(), AuthError> {
        if !self.grants(action) {
            return Err(AuthError::NotAllowed(action));
        }
        match self.prefix() {
            Some(prefix) if namespace.has_prefix(&prefix) => Ok(()),
            Some(_) => Err(AuthError::WrongNamespace),
            None => Err(AuthError::Malformed),
        }
    }
}

impl ClaimsExt for Claims {
    fn prefix(&self) -> Option<TrackNamespace> {
        TrackNamespace::from_path(self.ns.trim_matches('/')).ok()
    }

    fn grants(&self, action: Action) -> bool {
        match action {
            Action::Publish => self.publish,
            Action::Subscribe => self.subscribe,
        }
    }
}

/// Why a request or session was not authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token was presented.
    #[error("no authorization token")]
    Missing,
    /// The token is not a well-formed Banyan JWT (bad encoding, claims or size).
    #[error("malformed authorization token")]
    Malformed,
    /// The token's `exp` has passed.
    #[error("authorization token expired")]
    Expired,
    /// The signature does not verify with the relay's key (or uses another algorithm).
    #[error("authorization token signature does not verify")]
    BadSignature,
    /// The namespace is outside the token's `ns` prefix.
    #[error("authorization token does not cover this namespace")]
    WrongNamespace,
    /// The token does not grant this action.
    #[error("authorization token does not allow {0}")]
    NotAllowed(Action),
}

impl AuthError {
    /// The REQUEST_ERROR code for refusing a request with this error.
    pub fn request_code(&self) -> RequestErrorCode {
        match self {
            AuthError::Malformed => RequestErrorCode::MalformedAuthToken,
            AuthError::Expired => RequestErrorCode::ExpiredAuthToken,
            AuthError::Missing
            | AuthError::BadSignature
            | AuthError::WrongNamespace
            | AuthError::NotAllowed(_) => RequestErrorCode::Unauthorized,
        }
    }

    /// The session termination code for refusing a session (token in SETUP) with this error.
    pub fn session_code(&self) -> SessionErrorCode {
        match self {
            AuthError::Malformed => SessionErrorCode::MalformedAuthToken,
            AuthError::Expired => SessionErrorCode::ExpiredAuthToken,
            AuthError::Missing
            | AuthError::BadSignature
            | AuthError::WrongNamespace
            | AuthError::NotAllowed(_) => SessionErrorCode::Unauthorized,
        }
    }
}

/// Why a key could not be loaded or a token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read.
    #[error("reading key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An HS256 secret shorter than [`MIN_HS256_SECRET_LEN`].
    #[error("HS256 secret is {0} bytes; at least 32 are required (e.g. `head -c 32 /dev/urandom | base64`)")]
    ShortSecret(usize),
    /// PEM that is not a P-256 public key, PKCS#8 private key or SEC1 private key.
    #[error("unsupported PEM key: {0}")]
    Pem(String),
    /// Minting needs a private key, but this authenticator only has a public one.
    #[error("this key can only verify tokens, not mint them")]
    VerifyOnly,
    /// The JWT library refused to sign.
    #[error("signing the token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// Verifies (and, given a secret or private key, mints) Banyan tokens with one key.
pub struct Authenticator {
    algorithm: Algorithm,
    decoding: DecodingKey,
    encoding: Option<EncodingKey>,
    validation: Validation,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("algorithm", &self.algorithm)
            .field("can_mint", &self.encoding.is_some())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Load a key file (`--auth-key`); the format is detected as described in the module docs.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let bytes = std::fs::read(path).map_err(|source| KeyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_key(&bytes)
    }

    /// A key from a file's contents: PEM (ES256) if it starts with `-----BEGIN`, else an HS256
    /// secret.
    pub fn from_key(bytes: &[u8]) -> Result<Self, KeyError> {
        let trimmed = bytes.trim_ascii();
        if trimmed.starts_with(b"-----BEGIN") {
            Self::es256(trimmed)
        } else {
            Self::hs256(trimmed)
        }
    }

    /// An HS256 authenticator with this shared secret (used as given, not trimmed).
    pub fn hs256(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < MIN_HS256_SECRET_LEN {
            return Err(KeyError::ShortSecret(secret.len()));
        }
        Ok(Self::new(
            Algorithm::HS256,
            DecodingKey::from_secret(secret),
            Some(EncodingKey::from_secret(secret)),
        ))
    }

    /// An ES256 authenticator from a PEM P-256 key: `PUBLIC KEY` (verify only), `PRIVATE KEY`
    /// (PKCS#8) or `EC PRIVATE KEY` (SEC1).
    pub fn es256(pem_text: &[u8]) -> Result<Self, KeyError> {
        let block = pem::parse(pem_text).map_err(|e| KeyError::Pem(e.to_string()))?;
        match block.tag() {
            "PUBLIC KEY" => {
                let decoding =
                    DecodingKey::from_ec_pem(pem_text).map_err(|e| KeyError::Pem(e.to_string()))?;
                // An uncompressed P-256 point is 65 bytes starting with 0x04.
                let point = decoding.as_bytes();
                if point.len() != 65 || point.first() != Some(&0x04) {
                    return Err(KeyError::Pem("the public key is not a P-256 key".into()));
                }
                Ok(Self::new(Algorithm::ES256, decoding, None))
            }
            "PRIVATE KEY" | "EC PRIVATE KEY" => {
                let pair =
                    EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, block.contents())
                        .map_err(|e| KeyError::Pem(format!("not a P-256 private key: {e}")))?;
                let pkcs8 = pair
                    .to_pkcs8v1()
                    .map_err(|_| KeyError::Pem("cannot re-encode the private key".into()))?;
                Ok(Self::new(
                    Algorithm::ES256,
                    DecodingKey::from_ec_der(pair.public_key().as_ref()),
                    Some(EncodingKey::from_ec_der(pkcs8.as_ref())),
                ))
            }
            other => Err(KeyError::Pem(format!(
                "PEM block {other:?}; expected PUBLIC KEY, PRIVATE KEY or EC PRIVATE KEY"
            ))),
        }
    }

    fn new(algorithm: Algorithm, decoding: DecodingKey, encoding: Option<EncodingKey>) -> Self {
        let mut validation = Validation::new(algorithm);
        // Expiry is checked in `verify_at` with our own leeway and clock; `exp` is required by
        // `Claims` itself.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        Self {
            algorithm,
            decoding,
            encoding,
            validation,
        }
    }

    /// The signature algorithm (HS256 or ES256).
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// True when this authenticator holds a secret or private key and can [`mint`](Self::mint).
    pub fn can_mint(&self) -> bool {
        self.encoding.is_some()
    }

    /// Verify a token's signature, claims and expiry against the system clock.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        self.verify_at(token, jsonwebtoken::get_current_timestamp())
    }

    /// Verify a token as of `now` (seconds since the Unix epoch).
    pub fn verify_at(&self, token: &str, now: u64) -> Result<Claims, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| {
            let err = map_jwt_error(e.kind());
            tracing::debug!(error = %e, ?err, "token refused");
            err
        })?;
        let claims = data.claims;
        if claims.prefix().is_none() {
            return Err(AuthError::Malformed);
        }
        if now >= claims.exp.saturating_add(EXP_LEEWAY_SECS) {
            return Err(AuthError::Expired);
        }
        Ok(claims)
    }

    /// Verify `token` (if any) and check that it grants `action` on `namespace`.
    pub fn authorize(
        &self,
        token: Option<&str>,
        action: Action,
        namespace: &TrackNamespace,
    ) -> Result<Claims, AuthError> {
        let claims = self.verify(token.ok_or(AuthError::Missing)?)?;
        claims.check(action, namespace)?;
        Ok(claims)
    }

    /// Sign `claims` with this authenticator's secret or private key.
    pub fn mint(&self, claims: &Claims) -> Result<String, KeyError> {
        let key = self.encoding.as_ref().ok_or(KeyError::VerifyOnly)?;
        Ok(jsonwebtoken::encode(&Header::new(self.algorithm), claims, key)?)
    }
}

/// Mint an HS256 token with a shared secret (tests, the control plane).
pub fn mint_hs256(claims: &Claims, secret: &[u8]) -> Result<String, KeyError> {
    Authenticator::hs256(secret)?.mint(claims)
}

/// Mint an ES256 token with a PEM P-256 private key (`PRIVATE KEY` or `EC PRIVATE KEY`).
pub fn mint_es256(claims: &Claims, private_key_pem: &[u8]) -> Result<String, KeyError> {
    Authenticator::es256(private_key_pem)?.mint(claims)
}

/// The `jwt` query parameter of a session URL (the browser fallback), if present and non-empty.
pub fn token_from_url(url: &Url) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == "jwt")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// The JWT carried by AUTHORIZATION TOKEN values: the first USE_VALUE or REGISTER token's
/// value as UTF-8 text. `None` when no token carries a value inline (none at all, or only
/// USE_ALIAS/DELETE: aliases are resolved by the session, not here); `Some(Err(Malformed))`
/// when the value is not UTF-8.
pub fn jwt_from_tokens(tokens: &[Token]) -> Option<Result<String, AuthError>> {
    tokens.iter().find_map(|token| match token {
        Token::UseValue { token_value, .. } | Token::Register { token_value, .. } => Some(
            std::str::from_utf8(token_value)
                .map(|s| s.trim().to_owned())
                .map_err(|_| AuthError::Malformed),
        ),
        Token::UseAlias { .. } | Token::Delete { .. } => None,
    })
}

fn map_jwt_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidKeyFormat => AuthError::BadSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        _ => AuthError::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::encoding::AsDer as _;
    use bytes::Bytes;

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_700_000_000;

    fn claims(ns: &str, publish: bool, subscribe: bool) -> Claims {
        Claims {
            sub: Some("tester".into()),
            ns: ns.into(),
            publish,
            subscribe,
            exp: NOW + 60,
            room: None,
        }
    }

    fn ns(path: &str) -> TrackNamespace {
        TrackNamespace::from_path(path).unwrap()
    }

    /// A fresh P-256 key as (PKCS#8 private PEM, SEC1 private PEM, public PEM).
    fn ec_keys() -> (String, String, String) {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let pkcs8 = pair.to_pkcs8v1().unwrap();
        let sec1 = pair.private_key().as_der().unwrap();
        let public = pair.public_key().as_der().unwrap();
        (
            pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref())),
            pem::encode(&pem::Pem::new("EC PRIVATE KEY", sec1.as_ref())),
            pem::encode(&pem::Pem::new("PUBLIC KEY", public.as_ref())),
        )
    }

    #[test]
    fn hs256_round_trip() {
        let auth = Authenticator::from_key(b"  0123456789abcdef0123456789abcdef\n").unwrap();
        assert_eq!(auth.algorithm(), Algorithm::HS256);
        let c = claims("live/show", true, false);
        let token = mint_hs256(&c, SECRET).unwrap();
        assert_eq!(auth.verify_at(&token, NOW), Ok(c.clone()));
        assert_eq!(auth.verify_at(&format!(" {token}\n"), NOW), Ok(c));
    }

    #[test]
    fn es256_round_trip_with_every_key_form() {
        let (pkcs8, sec1, public) = ec_keys();
        let c = claims("", false, true);
        let token = mint_es256(&c, pkcs8.as_bytes()).unwrap();
        for key in [&pkcs8, &sec1, &public] {
            let auth = Authenticator::from_key(key.as_bytes()).unwrap();
            assert_eq!(auth.algorithm(), Algorithm::ES256);
            assert_eq!(auth.verify_at(&token, NOW), Ok(c.clone()), "{key}");
        }
        // A token minted with the SEC1 form verifies with the public key.
        let token = mint_es256(&c, sec1.as_bytes()).unwrap();
        let verifier = Authenticator::from_key(public.as_bytes()).unwrap();
        assert!(!verifier.can_mint());
        assert!(matches!(verifier.mint(&c), Err(KeyError::VerifyOnly)));
        assert_eq!(verifier.verify_at(&token, NOW), Ok(c));
    }

    #[test]
    fn expiry_uses_the_documented_leeway() {
        let auth = Authenticator::hs256(SECRET).unwrap();
        let token = mint_hs256(&claims("a", true, true), SECRET).unwrap();
        let exp = NOW + 60;
        assert!(auth.verify_at(&token, exp).is_ok());
        assert!(auth.verify_at(&token, exp + EXP_LEEWAY_SECS - 1).is_ok());
        assert_eq!(
            auth.verify_at(&token, exp + EXP_LEEWAY_SECS),
            Err(AuthError::Expired)
        );
        assert_eq!(auth.verify(&token), Err(AuthError::Expired), "minted in 2023");
        let mut c = claims("a", true, true);
        c.exp = jsonwebtoken::get_current_timestamp() + 60;
        assert!(auth.verify(&mint_hs256(&c, SECRET).unwrap()).is_ok());
    }

    #[test]
    fn malformed_tokens() {
        let auth = Authenticator::hs256(SECRET).unwrap();
        for bad in [
            "x",
            "a.b.c",
            "....",
            "eyJhbGciOiJub25lIn0.e30.",
            "\u{0}\u{ff}",
            &"a".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert_eq!(auth.verify_at(bad, NOW), Err(AuthError::Malformed), "{bad:.40}");
        }
        assert_eq!(auth.verify_at("", NOW), Err(AuthError::Missing));
        // Correctly signed, but claims missing / of the wrong type / a bad namespace.
        let key = EncodingKey::from_secret(SECRET);
        let header = Header::new(Algorithm::HS256);
        for body in [
            serde_json::json!({"pub": true, "exp": NOW + 60}),
            serde_json::json!({"ns": "a", "pub": true}),
            serde_json::json!({"ns": "a", "pub": "yes", "exp": NOW + 60}),
            serde_json::json!({"ns": "a//b", "pub": true, "exp": NOW + 60}),
            serde_json::json!({"ns": 5, "exp": NOW + 60}),
        ] {
            let token = jsonwebtoken::encode(&header, &body, &key).unwrap();
            assert_eq!(auth.verify_at(&token, NOW), Err(AuthError::Malformed), "{body}");
        }
        // Unknown claims are ignored.
        let body = serde_json::json!({"ns": "a", "subs": true, "exp": NOW + 60, "iat": NOW, "x": [1]});
        let token = jsonwebtoken::encode(&header, &body, &key).unwrap();
        assert!(auth.verify_at(&token, NOW).is_ok());
    }

    #[test]
    fn bad_signatures() {
        let auth = Authenticator::hs256(SECRET).unwrap();
        let c = claims("live", true, true);
        let other = mint_hs256(&c, b"another-secret-another-secret-!!").unwrap();
        assert_eq!(auth.verify_at(&other, NOW), Err(AuthError::BadSignature));

        // Tampered payload.
        let token = mint_hs256(&c, SECRET).unwrap();
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = mint_hs256(&claims("", true, true), SECRET).unwrap();
        parts[1] = forged.split('.').nth(1).unwrap();
        assert_eq!(
            auth.verify_at(&parts.join("."), NOW),
            Err(AuthError::BadSignature)
        );

        // The wrong algorithm for the key: an ES256 token to an HS256 relay and back.
        let (pkcs8, _, public) = ec_keys();
        let es = mint_es256(&c, pkcs8.as_bytes()).unwrap();
        assert_eq!(auth.verify_at(&es, NOW), Err(AuthError::BadSignature));
        let es_auth = Authenticator::from_key(public.as_bytes()).unwrap();
        assert_eq!(es_auth.verify_at(&token, NOW), Err(AuthError::BadSignature));
        // Another EC key.
        let (other_pkcs8, _, _) = ec_keys();
        let es_other = mint_es256(&c, other_pkcs8.as_bytes()).unwrap();
        assert_eq!(es_auth.verify_at(&es_other, NOW), Err(AuthError::BadSignature));
    }

    #[test]
    fn scope_checks() {
        let auth = Authenticator::hs256(SECRET).unwrap();
        let viewer = auth
            .verify_at(&mint_hs256(&claims("live/a", false, true), SECRET).unwrap(), NOW)
            .unwrap();
        assert!(viewer.allows(Action::Subscribe, &ns("live/a")));
        assert!(viewer.allows(Action::Subscribe, &ns("live/a/video")));
        assert!(!viewer.allows(Action::Subscribe, &ns("live/ab")));
        assert!(!viewer.allows(Action::Subscribe, &ns("live")));
        assert!(!viewer.allows(Action::Subscribe, &ns("")));
        assert!(!viewer.allows(Action::Subscribe, &ns("other/live/a")));
        assert_eq!(
            viewer.check(Action::Publish, &ns("live/a")),
            Err(AuthError::NotAllowed(Action::Publish))
        );
        assert_eq!(
            viewer.check(Action::Subscribe, &ns("live/b")),
            Err(AuthError::WrongNamespace)
        );

        let admin = claims("", true, true);
        assert!(admin.allows(Action::Publish, &ns("")));
        assert!(admin.allows(Action::Publish, &ns("x/y/z")));
        let slashes = claims("/live/a/", true, false);
        assert!(slashes.allows(Action::Publish, &ns("live/a/b")));
        assert!(!slashes.allows(Action::Subscribe, &ns("live/a/b")));

        let token = mint_hs256(&claims("live/a", false, true), SECRET).unwrap();
        assert_eq!(
            auth.authorize(None, Action::Subscribe, &ns("live/a")),
            Err(AuthError::Missing)
        );
        // `authorize` uses the real clock, so these tokens (from 2023) are expired.
        assert_eq!(
            auth.authorize(Some(&token), Action::Subscribe, &ns("live/a")),
            Err(AuthError::Expired)
        );
    }

    #[test]
    fn error_codes() {
        use AuthError::*;
        for (err, req, sess) in [
            (
                Missing,
                RequestErrorCode::Unauthorized,
                SessionErrorCode::Unauthorized,
            ),
            (
                Malformed,
                RequestErrorCode::MalformedAuthToken,
                SessionErrorCode::MalformedAuthToken,
            ),
            (
                Expired,
                RequestErrorCode::ExpiredAuthToken,
                SessionErrorCode::ExpiredAuthToken,
            ),
            (
                BadSignature,
                RequestErrorCode::Unauthorized,
                SessionErrorCode::Unauthorized,
            ),
            (
                WrongNamespace,
                RequestErrorCode::Unauthorized,
                SessionErrorCode::Unauthorized,
            ),
            (
                NotAllowed(Action::Publish),
                RequestErrorCode::Unauthorized,
                SessionErrorCode::Unauthorized,
            ),
        ] {
            assert_eq!(err.request_code(), req, "{err}");
            assert_eq!(err.session_code(), sess, "{err}");
        }
    }

    #[test]
    fn bad_keys() {
        assert!(matches!(
            Authenticator::from_key(b"short"),
            Err(KeyError::ShortSecret(5))
        ));
        assert!(matches!(
            Authenticator::from_key(b"-----BEGIN PUBLIC KEY-----\ngarbage\n"),
            Err(KeyError::Pem(_))
        ));
        let cert = pem::encode(&pem::Pem::new("CERTIFICATE", vec![1, 2, 3]));
        assert!(matches!(
            Authenticator::from_key(cert.as_bytes()),
            Err(KeyError::Pem(_))
        ));
        let junk = pem::encode(&pem::Pem::new("PRIVATE KEY", vec![1, 2, 3]));
        assert!(matches!(
            Authenticator::from_key(junk.as_bytes()),
            Err(KeyError::Pem(_))
        ));
        assert!(matches!(
            Authenticator::from_file(Path::new("/nonexistent/key")),
            Err(KeyError::Io { .. })
        ));
    }

    #[test]
    fn tokens_from_url_and_parameters() {
        let url = Url::parse("https://relay:4443/moq?x=1&jwt=abc.def.ghi").unwrap();
        assert_eq!(token_from_url(&url).as_deref(), Some("abc.def.ghi"));
        assert_eq!(
            token_from_url(&Url::parse("https://relay/moq?jwt=").unwrap()),
            None
        );
        assert_eq!(token_from_url(&Url::parse("moqt://relay/").unwrap()), None);

        assert_eq!(jwt_from_tokens(&[]), None);
        assert_eq!(jwt_from_tokens(&[Token::UseAlias { token_alias: 1 }]), None);
        let tokens = [
            Token::Delete { token_alias: 3 },
            Token::UseValue {
                token_type: 0,
                token_value: Bytes::from_static(b"a.b.c"),
            },
        ];
        assert_eq!(jwt_from_tokens(&tokens), Some(Ok("a.b.c".to_owned())));
        let register = [Token::Register {
            token_alias: 1,
            token_type: 0,
            token_value: Bytes::from_static(b"r.s.t"),
        }];
        assert_eq!(jwt_from_tokens(&register), Some(Ok("r.s.t".to_owned())));
        let binary = [Token::UseValue {
            token_type: 0,
            token_value: Bytes::from_static(&[0xff, 0xfe]),
        }];
        assert_eq!(jwt_from_tokens(&binary), Some(Err(AuthError::Malformed)));
    }
}
