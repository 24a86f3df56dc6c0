//! The one error type of this crate.

use std::io;
use std::path::PathBuf;

use time::OffsetDateTime;

/// Everything that can go wrong minting, loading, inspecting or configuring certificates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file that was named does not exist.
    #[error("{}: no such file", path.display())]
    NotFound {
        /// The path that was named.
        path: PathBuf,
    },

    /// A file exists but could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },

    /// A PEM document is malformed (bad base64, unterminated section, ...).
    #[error("{what}: malformed PEM: {source}")]
    Pem {
        /// What was being read (usually a path).
        what: String,
        /// What the PEM parser said.
        #[source]
        source: rustls_pki_types::pem::Error,
    },

    /// A PEM document holds no `CERTIFICATE` section.
    #[error("{what}: no certificate found (expected a \"-----BEGIN CERTIFICATE-----\" section)")]
    NoCertificate {
        /// What was being read (usually a path).
        what: String,
    },

    /// A PEM document holds no private key in a form we understand.
    #[error(
        "{what}: no private key found (expected \"PRIVATE KEY\" (PKCS#8), \"EC PRIVATE KEY\" (SEC1) \
         or \"RSA PRIVATE KEY\" (PKCS#1))"
    )]
    NoPrivateKey {
        /// What was being read (usually a path).
        what: String,
    },

    /// A certificate chain was empty.
    #[error("the certificate chain is empty")]
    EmptyChain,

    /// A certificate's DER could not be parsed as X.509.
    #[error("certificate could not be parsed as X.509: {reason}")]
    BadCertificate {
        /// What the X.509 parser said.
        reason: String,
    },

    /// The private key does not belong to the leaf certificate.
    #[error("the private key does not match the certificate's public key")]
    KeyMismatch,

    /// The certificate's validity period has ended.
    #[error("certificate expired at {}", rfc3339(*not_after))]
    Expired {
        /// End of the validity period.
        not_after: OffsetDateTime,
    },

    /// The certificate's validity period has not started yet.
    #[error("certificate is not valid until {}", rfc3339(*not_before))]
    NotYetValid {
        /// Start of the validity period.
        not_before: OffsetDateTime,
    },

    /// A requested development-certificate lifetime is not in (0, 14 days].
    #[error("development certificate validity must be more than 0 and at most 14 days (browsers refuse longer ones for serverCertificateHashes), got {requested}")]
    InvalidValidity {
        /// The lifetime asked for.
        requested: time::Duration,
    },

    /// An extra subject alternative name is neither an IP address nor a valid DNS name.
    #[error("invalid subject alternative name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it was refused.
        reason: String,
    },

    /// A SHA-256 fingerprint was not 64 hex digits.
    #[error("invalid SHA-256 fingerprint {input:?}: {reason}")]
    InvalidHash {
        /// The text as given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The operating system's certificate store yielded no usable root certificates.
    #[error("no usable root certificates in the system store ({errors} error(s) while loading); install CA certificates (e.g. the ca-certificates package), set SSL_CERT_FILE, or pass a CA file / pinned hash instead")]
    NoSystemRoots {
        /// How many errors `rustls-native-certs` reported.
        errors: usize,
    },

    /// A CA file or root list yielded no certificate rustls could use as a trust anchor.
    #[error("no usable trust anchor among {given} root certificate(s)")]
    NoUsableRoots {
        /// How many certificates were offered.
        given: usize,
    },

    /// Certificate generation failed inside `rcgen`.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),

    /// rustls refused the configuration (unsupported key type, bad chain, ...).
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// Formats a time as RFC 3339 (`2026-01-02T03:04:05Z`), the way this crate prints times.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if source.kind() == io::ErrorKind::NotFound {
            Error::NotFound { path }
        } else {
            Error::Io { path, source }
        }
    }
}
