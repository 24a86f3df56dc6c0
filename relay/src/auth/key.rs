//! Keys: loading an HS256 secret or ES256 PEM key ([`Authenticator::from_key`]), verifying
//! tokens with it and minting them.

use std::path::Path;

use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use banyan_moq::coding::TrackNamespace;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

use super::{
    Action, AuthError, Claims, ClaimsExt as _, EXP_LEEWAY_SECS, MAX_TOKEN_LEN, MIN_HS256_SECRET_LEN,
};

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
