//! [`Identity`]: a certificate chain and its private key, minted for development or loaded from PEM.

use std::fmt;
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use crate::{CertHash, CertInfo, Error};

/// The longest validity period browsers accept for a certificate pinned through WebTransport
/// `serverCertificateHashes`.
pub const MAX_DEV_VALIDITY: Duration = Duration::days(14);

/// Subject alternative names every development certificate carries.
pub const DEV_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// How to mint a development certificate. [`Default`] is what almost everyone wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevOptions {
    /// Total validity period (`notAfter - notBefore`). At most [`MAX_DEV_VALIDITY`]. Default 10 days.
    pub validity: Duration,
    /// How far before "now" the validity period starts, to tolerate clock skew between
    /// the machine that mints and the browsers that check. Default 1 hour.
    pub backdate: Duration,
    /// Extra subject alternative names besides [`DEV_NAMES`]: DNS names or IP addresses.
    pub names: Vec<String>,
}

impl Default for DevOptions {
    fn default() -> Self {
        DevOptions {
            validity: Duration::days(10),
            backdate: Duration::hours(1),
            names: Vec::new(),
        }
    }
}

/// A certificate chain (leaf first) and the leaf's private key.
///
/// Minted in memory with [`Identity::mint_dev`] (tests, development) or loaded from an operator's
/// PEM files with [`Identity::load_pem`] (production, e.g. an ACME `fullchain.pem` + `privkey.pem`).
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Pairs a chain (leaf first) with its key. Fails only if the chain is empty; whether the key
    /// matches is checked by [`Identity::check_key`] and when a [`crate::server_config`] is built.
    pub fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<Self, Error> {
        if chain.is_empty() {
            return Err(Error::EmptyChain);
        }
        Ok(Identity { chain, key })
    }

    /// Mints a self-signed ECDSA P-256 development certificate valid from now.
    /// See [`Identity::mint_dev_at`].
    pub fn mint_dev(options: &DevOptions) -> Result<Self, Error> {
        Self::mint_dev_at(options, OffsetDateTime::now_utc())
    }

    /// Mints a self-signed ECDSA P-256 development certificate as if the time were `now`:
    /// valid from `now - backdate` for `validity`, with SANs [`DEV_NAMES`] plus `options.names`,
    /// so that browsers accept it through WebTransport `serverCertificateHashes`.
    pub fn mint_dev_at(options: &DevOptions, now: OffsetDateTime) -> Result<Self, Error> {
        if options.validity <= Duration::ZERO || options.validity > MAX_DEV_VALIDITY {
            return Err(Error::InvalidValidity {
                requested: options.validity,
            });
        }

        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "Banyan development certificate");
        params.distinguished_name = dn;
        params.subject_alt_names = dev_sans(&options.names)?;
        // X.509 times have whole seconds; truncate first so the encoded period is exactly `validity`.
        let not_before = (now - options.backdate)
            .replace_nanosecond(0)
            .unwrap_or(now - options.backdate);
        params.not_before = not_before;
        params.not_after = not_before + options.validity;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];

        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = params.self_signed(&key)?;
        Ok(Identity {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }

    /// Loads a PEM certificate chain (leaf first, e.g. `fullchain.pem`) and a PEM private key
    /// (PKCS#8, SEC1 or PKCS#1 RSA, e.g. `privkey.pem`).
    pub fn load_pem(cert_path: &Path, key_path: &Path) -> Result<Self, Error> {
        let chain = load_certs(cert_path)?;
        let key = load_key(key_path)?;
        Identity::new(chain, key)
    }

    /// Like [`Identity::load_pem`], from PEM text already in memory.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, Error> {
        let chain = parse_certs(cert_pem, "certificate PEM")?;
        let key = parse_key(key_pem, "key PEM")?;
        Identity::new(chain, key)
    }

    /// Writes the chain and key as PEM. Each file is written to a temporary sibling and renamed
    /// into place, so a server reloading them never sees half a file. The key file is created
    /// with mode 0600 on unix.
    pub fn write_pem(&self, cert_path: &Path, key_path: &Path) -> Result<(), Error> {
        write_atomic(cert_path, self.cert_pem().as_bytes(), false)?;
        write_atomic(key_path, self.key_pem().as_bytes(), true)
    }

    /// The chain as PEM text, leaf first.
    pub fn cert_pem(&self) -> String {
        let blocks: Vec<_> = self
            .chain
            .iter()
            .map(|der| ::pem::Pem::new("CERTIFICATE", der.to_vec()))
            .collect();
        ::pem::encode_many_config(&blocks, pem_config())
    }

    /// The private key as PEM text, in the form it is held (PKCS#8, SEC1 or PKCS#1).
    pub fn key_pem(&self) -> String {
        let tag = match &self.key {
            PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
            PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
            _ => "PRIVATE KEY",
        };
        let block = ::pem::Pem::new(tag, self.key.secret_der().to_vec());
        ::pem::encode_config(&block, pem_config())
    }

    /// The chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The leaf (end-entity) certificate.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        // `new` and the minting/loading paths guarantee a non-empty chain.
        #[allow(clippy::indexing_slicing)]
        &self.chain[0]
    }

    /// The leaf's private key.
    pub fn key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }

    /// SHA-256 of the leaf's DER: the value for `serverCertificateHashes` and `--tls-hash`.
    pub fn sha256(&self) -> CertHash {
        CertHash::of(self.leaf())
    }

    /// Parses the leaf: names, validity period, key algorithm.
    pub fn info(&self) -> Result<CertInfo, Error> {
        CertInfo::parse(self.leaf())
    }

    /// Checks that the private key belongs to the leaf certificate.
    pub fn check_key(&self) -> Result<(), Error> {
        let provider = crate::provider();
        let signing_key = provider.key_provider.load_private_key(self.key.clone_key())?;
        let certified = rustls::sign::CertifiedKey::new(self.chain.clone(), signing_key);
        match certified.keys_match() {
            Ok(()) => Ok(()),
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                Err(Error::KeyMismatch)
            }
            Err(other) => Err(other.into()),
        }
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("chain_len", &self.chain.len())
            .field("leaf_sha256", &self.sha256())
            .finish_non_exhaustive()
    }
}

/// Loads every certificate in a PEM file (a chain, or a CA bundle).
/// Fails if the file holds none.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_certs(&bytes, &path.display().to_string())
}

/// Loads the first private key in a PEM file (PKCS#8, SEC1 or PKCS#1 RSA).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_key(&bytes, &path.display().to_string())
}

fn parse_certs(pem_text: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let chain = CertificateDer::pem_slice_iter(pem_text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| Error::Pem {
            what: what.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(Error::NoCertificate {
            what: what.to_owned(),
        });
    }
    Ok(chain)
}

fn parse_key(pem_text: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_slice(pem_text).map_err(|source| match source {
        pem::Error::NoItemsFound => Error::NoPrivateKey {
            what: what.to_owned(),
        },
        source => Error::Pem {
            what: what.to_owned(),
            source,
        },
    })
}

fn dev_sans(extra: &[String]) -> Result<Vec<SanType>, Error> {
    let mut sans = Vec::new();
    for name in DEV_NAMES.iter().copied().chain(extra.iter().map(String::as_str)) {
        let san = match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => {
                let dns = name.try_into().map_err(|e: rcgen::Error| Error::InvalidName {
                    name: name.to_owned(),
                    reason: e.to_string(),
                })?;
                SanType::DnsName(dns)
            }
        };
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    Ok(sans)
}

fn pem_config() -> ::pem::EncodeConfig {
    ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF)
}

fn write_atomic(path: &Path, contents: &[u8], private: bool) -> Result<(), Error> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp: PathBuf = path.with_file_name(tmp_name);

    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;

    let result = (|| {
        let mut file = options.open(&tmp)?;
        // A leftover temporary file keeps its old mode; make sure the key is private anyway.
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyAlgorithm;

    #[test]
    fn dev_certificate_is_what_browsers_accept() {
        let now = OffsetDateTime::now_utc();
        let id = Identity::mint_dev_at(&DevOptions::default(), now).unwrap();
        let info = id.info().unwrap();

        assert_eq!(info.key, KeyAlgorithm::EcdsaP256);
        assert_eq!(info.validity.length(), Duration::days(10));
        assert!(info.validity.not_before <= now - Duration::minutes(59));
        assert!(info.validity.not_before > now - Duration::minutes(61));
        info.validity.check(now).unwrap();
        assert!(info.browser_hash_problems(now).is_empty());
        for name in DEV_NAMES {
            assert!(info.names.iter().any(|n| n == name), "{name} missing");
        }
        id.check_key().unwrap();
    }

    #[test]
    fn dev_certificate_parsed_independently_by_x509_parser() {
        use x509_parser::extensions::GeneralName;
        use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_SIG_ECDSA_WITH_SHA256};

        let id = Identity::mint_dev(&DevOptions {
            names: vec!["relay.example".into(), "10.0.0.7".into(), "localhost".into()],
            ..DevOptions::default()
        })
        .unwrap();
        let (rest, cert) = x509_parser::parse_x509_certificate(id.leaf()).unwrap();
        assert!(rest.is_empty());

        let spki = cert.public_key();
        assert_eq!(spki.algorithm.algorithm, OID_KEY_TYPE_EC_PUBLIC_KEY);
        let curve = spki.algorithm.parameters.as_ref().unwrap().as_oid().unwrap();
        assert_eq!(curve, OID_EC_P256);
        assert_eq!(cert.signature_algorithm.algorithm, OID_SIG_ECDSA_WITH_SHA256);

        let period = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert!(period <= 14 * 24 * 3600);

        let san = cert.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => d.to_string(),
                GeneralName::IPAddress(b) => crate::inspect::ip_from_bytes(b).unwrap().to_string(),
                other => panic!("unexpected SAN {other:?}"),
            })
            .collect();
        // "localhost" given twice is kept once.
        assert_eq!(
            names,
            ["localhost", "127.0.0.1", "::1", "relay.example", "10.0.0.7"]
        );
    }

    #[test]
    fn validity_outside_fourteen_days_is_refused() {
        for validity in [Duration::ZERO, Duration::days(14) + Duration::seconds(1)] {
            let err = Identity::mint_dev(&DevOptions {
                validity,
                ..DevOptions::default()
            })
            .unwrap_err();
            assert!(matches!(err, Error::InvalidValidity { .. }), "{err}");
        }
        let id = Identity::mint_dev(&DevOptions {
            validity: MAX_DEV_VALIDITY,
            ..DevOptions::default()
        })
        .unwrap();
        assert_eq!(id.info().unwrap().validity.length(), MAX_DEV_VALIDITY);
    }

    #[test]
    fn bad_extra_name_is_refused() {
        let err = Identity::mint_dev(&DevOptions {
            names: vec!["not a name\u{1F600}".into()],
            ..DevOptions::default()
        })
        .unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{err}");
    }

    #[test]
    fn pem_round_trip_keeps_chain_key_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let id = Identity::mint_dev(&DevOptions::default()).unwrap();
        id.write_pem(&cert, &key).unwrap();

        let back = Identity::load_pem(&cert, &key).unwrap();
        assert_eq!(back.chain(), id.chain());
        assert_eq!(back.key().secret_der(), id.key().secret_der());
        assert_eq!(back.sha256(), id.sha256());
        back.check_key().unwrap();

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Writing again over existing files works (renewal).
        Identity::mint_dev(&DevOptions::default())
            .unwrap()
            .write_pem(&cert, &key)
            .unwrap();
        assert_ne!(Identity::load_pem(&cert, &key).unwrap().sha256(), id.sha256());
    }

    #[test]
    fn sec1_and_multi_cert_chains_load() {
        // A SEC1 "EC PRIVATE KEY" and a chain of two certificates, as some ACME clients write.
        let id = Identity::mint_dev(&DevOptions::default()).unwrap();
        let other = Identity::mint_dev(&DevOptions::default()).unwrap();
        let sec1 = rustls_pki_types::PrivateSec1KeyDer::from(sec1_from_pkcs8(id.key().secret_der()));
        let two = Identity::new(
            vec![id.leaf().clone(), other.leaf().clone()],
            PrivateKeyDer::Sec1(sec1),
        )
        .unwrap();
        assert!(two.key_pem().starts_with("-----BEGIN EC PRIVATE KEY-----\n"));

        let back = Identity::from_pem(two.cert_pem().as_bytes(), two.key_pem().as_bytes()).unwrap();
        assert_eq!(back.chain().len(), 2);
        assert!(matches!(back.key(), PrivateKeyDer::Sec1(_)));
        assert_eq!(back.sha256(), id.sha256());
        back.check_key().unwrap();
        crate::server_config(&back, &[]).unwrap();
    }

    #[test]
    fn wrong_key_is_detected() {
        let a = Identity::mint_dev(&DevOptions::default()).unwrap();
        let b = Identity::mint_dev(&DevOptions::default()).unwrap();
        let mixed = Identity::new(a.chain().to_vec(), b.key().clone_key()).unwrap();
        assert!(matches!(mixed.check_key(), Err(Error::KeyMismatch)));
        assert!(crate::server_config(&mixed, &[]).is_err());
    }

    #[test]
    fn missing_or_empty_inputs_give_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let id = Identity::mint_dev(&DevOptions::default()).unwrap();
        let cert = dir.path().join("cert.pem");
        fs::write(&cert, id.cert_pem()).unwrap();

        // A key file holding only a certificate.
        let err = Identity::load_pem(&cert, &cert).unwrap_err();
        assert!(matches!(err, Error::NoPrivateKey { .. }), "{err}");
        assert!(err.to_string().contains("no private key"), "{err}");

        // A certificate file holding only a key.
        let key = dir.path().join("key.pem");
        fs::write(&key, id.key_pem()).unwrap();
        let err = Identity::load_pem(&key, &key).unwrap_err();
        assert!(matches!(err, Error::NoCertificate { .. }), "{err}");

        let missing = dir.path().join("nope.pem");
        let err = Identity::load_pem(&missing, &key).unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("nope.pem"), "{err}");

        let err = Identity::from_pem(b"-----BEGIN CERTIFICATE-----\nnot base64!\n", b"").unwrap_err();
        assert!(matches!(err, Error::Pem { .. }), "{err}");

        assert!(matches!(
            Identity::new(Vec::new(), id.key().clone_key()),
            Err(Error::EmptyChain)
        ));
    }

    #[test]
    fn hash_is_stable_and_matches_der() {
        let id = Identity::mint_dev(&DevOptions::default()).unwrap();
        assert_eq!(id.sha256(), id.sha256());
        assert_eq!(id.sha256(), CertHash::of(id.chain()[0].as_ref()));
        assert_eq!(id.clone().sha256(), id.sha256());
        // Two mints never share a key, hence never a hash.
        assert_ne!(
            Identity::mint_dev(&DevOptions::default()).unwrap().sha256(),
            id.sha256()
        );
    }

    /// Extracts the SEC1 `ECPrivateKey` that a PKCS#8 `PrivateKeyInfo` wraps (the last OCTET STRING).
    fn sec1_from_pkcs8(pkcs8: &[u8]) -> Vec<u8> {
        use x509_parser::der_parser::ber::BerObjectContent;
        let (_, info) = x509_parser::der_parser::parse_der(pkcs8).unwrap();
        let BerObjectContent::Sequence(items) = info.content else {
            panic!("PKCS#8 is not a sequence")
        };
        items
            .iter()
            .rev()
            .find_map(|item| match item.content {
                BerObjectContent::OctetString(bytes) => Some(bytes.to_vec()),
                _ => None,
            })
            .unwrap()
    }
}
