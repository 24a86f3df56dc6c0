//! SHA-256 certificate fingerprints, as WebTransport `serverCertificateHashes` and `--tls-hash` use them.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::Error;

/// The SHA-256 digest of a certificate's DER encoding.
///
/// Displays as 64 lowercase hex digits; parses from hex with or without `:` separators
/// (so `openssl x509 -fingerprint -sha256` output can be pasted as is).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertHash([u8; 32]);

impl CertHash {
    /// Hashes a DER-encoded certificate.
    pub fn of(der: &[u8]) -> Self {
        CertHash(Sha256::digest(der).into())
    }

    /// The 32 digest bytes (what a browser's `serverCertificateHashes[].value` holds).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }
}

/// Parses a SHA-256 fingerprint written as 64 hex digits, optionally separated by `:`,
/// in either case, with surrounding whitespace ignored.
pub fn parse_sha256_hex(input: &str) -> Result<CertHash, Error> {
    let invalid = |reason| Error::InvalidHash {
        input: input.to_owned(),
        reason,
    };
    let mut out = [0u8; 32];
    let mut digits = input.trim().bytes().filter(|b| *b != b':');
    for byte in &mut out {
        let (Some(hi), Some(lo)) = (digits.next(), digits.next()) else {
            return Err(invalid("expected 64 hex digits"));
        };
        let (Some(hi), Some(lo)) = (hex_value(hi), hex_value(lo)) else {
            return Err(invalid("not a hex digit"));
        };
        *byte = hi << 4 | lo;
    }
    if digits.next().is_some() {
        return Err(invalid("expected 64 hex digits"));
    }
    Ok(CertHash(out))
}

impl From<[u8; 32]> for CertHash {
    fn from(bytes: [u8; 32]) -> Self {
        CertHash(bytes)
    }
}

impl From<CertHash> for [u8; 32] {
    fn from(hash: CertHash) -> Self {
        hash.0
    }
}

impl FromStr for CertHash {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        parse_sha256_hex(s)
    }
}

impl fmt::Display for CertHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for CertHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertHash({self})")
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_hashes_to_the_known_vector() {
        assert_eq!(
            CertHash::of(b"").to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn hex_round_trips_and_accepts_openssl_style() {
        let hash = CertHash::of(b"banyan");
        let hex = hash.to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(parse_sha256_hex(&hex).unwrap(), hash);
        assert_eq!(parse_sha256_hex(&format!("  {hex}\n")).unwrap(), hash);

        let openssl = hash
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(openssl.parse::<CertHash>().unwrap(), hash);
    }

    #[test]
    fn bad_hex_is_refused() {
        let good = CertHash::of(b"x").to_hex();
        for bad in [
            "",
            &good[..62],
            &format!("{good}00"),
            &format!("{}zz", &good[..62]),
        ] {
            assert!(
                matches!(parse_sha256_hex(bad), Err(Error::InvalidHash { .. })),
                "{bad:?} accepted"
            );
        }
    }
}
