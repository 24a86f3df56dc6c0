//! Reading a certificate back: names, validity period, key algorithm, and whether browsers would
//! accept it through WebTransport `serverCertificateHashes`.

use std::fmt;
use std::net::IpAddr;

use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
};
use x509_parser::public_key::PublicKey;

use crate::error::rfc3339;
use crate::{Error, MAX_DEV_VALIDITY};

/// What a certificate says about itself, parsed from its DER.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertInfo {
    /// The subject distinguished name, RFC 4514 style.
    pub subject: String,
    /// The issuer distinguished name, RFC 4514 style.
    pub issuer: String,
    /// DNS names and IP addresses from the subject alternative name extension.
    pub names: Vec<String>,
    /// When the certificate is valid.
    pub validity: Validity,
    /// The subject public key's algorithm.
    pub key: KeyAlgorithm,
    /// The X.509 version (3 for anything modern).
    pub version: u32,
}

/// A certificate's validity period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// `notBefore`.
    pub not_before: OffsetDateTime,
    /// `notAfter`.
    pub not_after: OffsetDateTime,
}

/// The subject public key's algorithm, as far as it matters here.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 (secp256r1): the one browsers accept for `serverCertificateHashes`.
    EcdsaP256,
    /// ECDSA on NIST P-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
    /// RSA with a modulus of this many bits.
    Rsa {
        /// Modulus length.
        bits: usize,
    },
    /// Anything else, by OID.
    Other(String),
}

/// One reason a browser would refuse a certificate offered through `serverCertificateHashes`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BrowserHashProblem {
    /// Not an X.509 version 3 certificate.
    NotVersion3(u32),
    /// The key is not ECDSA P-256.
    KeyAlgorithm(KeyAlgorithm),
    /// The validity period is longer than 14 days.
    TooLong(Duration),
    /// The certificate is not valid now.
    NotValidNow(Validity),
}

impl CertInfo {
    /// Parses a DER-encoded X.509 certificate.
    pub fn parse(der: &[u8]) -> Result<Self, Error> {
        let bad = |reason: String| Error::BadCertificate { reason };
        let (rest, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| bad(e.to_string()))?;
        if !rest.is_empty() {
            return Err(bad(format!("{} trailing bytes", rest.len())));
        }

        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => names.push((*dns).to_owned()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            names.push(ip.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }

        let spki = cert.public_key();
        let algorithm = &spki.algorithm.algorithm;
        let key = if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
            match curve {
                Some(c) if c == OID_EC_P256 => KeyAlgorithm::EcdsaP256,
                Some(c) if c == OID_NIST_EC_P384 => KeyAlgorithm::EcdsaP384,
                Some(c) => KeyAlgorithm::Other(format!("EC curve {c}")),
                None => KeyAlgorithm::Other("EC without named curve".into()),
            }
        } else if *algorithm == OID_SIG_ED25519 {
            KeyAlgorithm::Ed25519
        } else if *algorithm == OID_PKCS1_RSAENCRYPTION {
            match spki.parsed() {
                Ok(PublicKey::RSA(rsa)) => KeyAlgorithm::Rsa { bits: rsa.key_size() },
                _ => KeyAlgorithm::Other("RSA (unparsable key)".into()),
            }
        } else {
            KeyAlgorithm::Other(algorithm.to_id_string())
        };

        Ok(CertInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            names,
            validity: Validity {
                not_before: cert.validity().not_before.to_datetime(),
                not_after: cert.validity().not_after.to_datetime(),
            },
            key,
            version: cert.version().0 + 1,
        })
    }

    /// Why a browser would refuse this certificate through WebTransport `serverCertificateHashes`
    /// at time `now`; empty if it would accept it. The W3C WebTransport rules: X.509v3, an allowed
    /// public key algorithm (ECDSA P-256 is the one Chromium allows), `now` within the validity
    /// period, and a validity period of at most two weeks.
    pub fn browser_hash_problems(&self, now: OffsetDateTime) -> Vec<BrowserHashProblem> {
        let mut problems = Vec::new();
        if self.version != 3 {
            problems.push(BrowserHashProblem::NotVersion3(self.version));
        }
        if self.key != KeyAlgorithm::EcdsaP256 {
            problems.push(BrowserHashProblem::KeyAlgorithm(self.key.clone()));
        }
        if self.validity.length() > MAX_DEV_VALIDITY {
            problems.push(BrowserHashProblem::TooLong(self.validity.length()));
        }
        if self.validity.check(now).is_err() {
            problems.push(BrowserHashProblem::NotValidNow(self.validity));
        }
        problems
    }
}

impl Validity {
    /// `notAfter - notBefore`.
    pub fn length(&self) -> Duration {
        self.not_after - self.not_before
    }

    /// Fails with [`Error::Expired`] or [`Error::NotYetValid`] if `now` is outside the period.
    pub fn check(&self, now: OffsetDateTime) -> Result<(), Error> {
        if now < self.not_before {
            Err(Error::NotYetValid {
                not_before: self.not_before,
            })
        } else if now > self.not_after {
            Err(Error::Expired {
                not_after: self.not_after,
            })
        } else {
            Ok(())
        }
    }

    /// How long until `notAfter` (negative once expired).
    pub fn remaining(&self, now: OffsetDateTime) -> Duration {
        self.not_after - now
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyAlgorithm::EcdsaP256 => f.write_str("ECDSA P-256"),
            KeyAlgorithm::EcdsaP384 => f.write_str("ECDSA P-384"),
            KeyAlgorithm::Ed25519 => f.write_str("Ed25519"),
            KeyAlgorithm::Rsa { bits } => write!(f, "RSA {bits}"),
            KeyAlgorithm::Other(what) => write!(f, "other ({what})"),
        }
    }
}

impl fmt::Display for BrowserHashProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrowserHashProblem::NotVersion3(v) => write!(f, "X.509 version {v}, not 3"),
            BrowserHashProblem::KeyAlgorithm(k) => {
                write!(f, "key is {k}; browsers require ECDSA P-256")
            }
            BrowserHashProblem::TooLong(d) => write!(
                f,
                "validity period is {:.1} days; browsers allow at most 14",
                d.as_seconds_f64() / 86_400.0
            ),
            BrowserHashProblem::NotValidNow(v) => {
                write!(
                    f,
                    "not valid now (valid {} .. {})",
                    rfc3339(v.not_before),
                    rfc3339(v.not_after)
                )
            }
        }
    }
}

pub(crate) fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        Some(IpAddr::from(v4))
    } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        Some(IpAddr::from(v6))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DevOptions, Identity};

    #[test]
    fn validity_check_reports_both_ends() {
        let now = OffsetDateTime::now_utc();
        let id = Identity::mint_dev_at(&DevOptions::default(), now).unwrap();
        let v = id.info().unwrap().validity;
        v.check(now).unwrap();
        assert!(matches!(
            v.check(now - Duration::hours(2)),
            Err(Error::NotYetValid { .. })
        ));
        assert!(matches!(
            v.check(now + Duration::days(11)),
            Err(Error::Expired { .. })
        ));
        assert!(v.remaining(now) > Duration::days(9));
    }

    #[test]
    fn browser_problems_are_listed() {
        let now = OffsetDateTime::now_utc();
        let id = Identity::mint_dev_at(&DevOptions::default(), now).unwrap();
        let mut info = id.info().unwrap();
        info.key = KeyAlgorithm::Rsa { bits: 2048 };
        info.validity.not_after = info.validity.not_before + Duration::days(90);
        let problems = info.browser_hash_problems(now + Duration::days(100));
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().any(|p| p.to_string().contains("90.0 days")));
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(matches!(
            CertInfo::parse(b"\x30\x03\x02\x01\x00"),
            Err(Error::BadCertificate { .. })
        ));
    }
}
