//! rustls configurations for both ends: TLS 1.3 only, the aws-lc-rs provider, and the ways a
//! client may decide to trust a server.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore, ServerConfig,
    SignatureScheme,
};
use time::OffsetDateTime;

use crate::{load_certs, CertHash, CertInfo, Error, Identity};

/// How a client decides to trust the server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerVerification {
    /// WebPKI validation against the operating system's root store (production, ACME certificates).
    SystemRoots,
    /// WebPKI validation against the CA certificates in this PEM file.
    CaFile(PathBuf),
    /// WebPKI validation against these root certificates.
    Roots(Vec<CertificateDer<'static>>),
    /// Accept a leaf whose SHA-256 is one of these, if it is within its validity period, as
    /// browsers do for WebTransport `serverCertificateHashes`. The name is not checked; the
    /// handshake signature still is.
    PinnedSha256(Vec<CertHash>),
    /// Accept any certificate. The handshake signature is still checked, so the peer holds the
    /// key of the certificate it sent, but nothing says who that peer is. Local testing only.
    InsecureSkipVerify,
}

/// The crypto provider every config in this crate uses: aws-lc-rs, chosen explicitly rather than
/// through a process-wide default.
pub fn provider() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

/// A TLS 1.3 server config presenting `identity`, offering `alpns` in order of preference.
/// Fails if rustls cannot use the key or the key does not match the leaf.
pub fn server_config(identity: &Identity, alpns: &[&[u8]]) -> Result<ServerConfig, Error> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(identity.chain().to_vec(), identity.key().clone_key())
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => Error::KeyMismatch,
            e => e.into(),
        })?;
    config.alpn_protocols = alpns.iter().map(|a| a.to_vec()).collect();
    Ok(config)
}

/// A TLS 1.3 client config that trusts servers as `verification` says, offering `alpns`.
pub fn client_config(verification: &ServerVerification, alpns: &[&[u8]]) -> Result<ClientConfig, Error> {
    let provider = Arc::new(provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let mut config = match verification {
        ServerVerification::SystemRoots => {
            let loaded = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(loaded.certs);
            if roots.is_empty() {
                return Err(Error::NoSystemRoots {
                    errors: loaded.errors.len(),
                });
            }
            builder.with_root_certificates(roots)
        }
        ServerVerification::CaFile(path) => builder.with_root_certificates(root_store(load_certs(path)?)?),
        ServerVerification::Roots(certs) => builder.with_root_certificates(root_store(certs.clone())?),
        ServerVerification::PinnedSha256(hashes) => {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(SignatureOnlyVerifier {
                    pins: Some(hashes.clone()),
                    provider,
                }))
        }
        ServerVerification::InsecureSkipVerify => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SignatureOnlyVerifier { pins: None, provider })),
    }
    .with_no_client_auth();
    config.alpn_protocols = alpns.iter().map(|a| a.to_vec()).collect();
    Ok(config)
}

fn root_store(certs: Vec<CertificateDer<'static>>) -> Result<RootCertStore, Error> {
    let given = certs.len();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(certs);
    if roots.is_empty() {
        return Err(Error::NoUsableRoots { given });
    }
    Ok(roots)
}

/// Skips WebPKI path validation but always checks the handshake signature. With `pins`, it
/// trusts a leaf by its SHA-256 within its validity period, like a browser honouring
/// `serverCertificateHashes`; without, it trusts any certificate (local testing only).
#[derive(Debug)]
struct SignatureOnlyVerifier {
    pins: Option<Vec<CertHash>>,
    provider: Arc<CryptoProvider>,
}

/// Why a pinned certificate was refused; carried inside `rustls::Error` so the message says so.
/// rustls formats it with `Debug`, so `Debug` reads like `Display`.
struct NotPinned(CertHash);

impl fmt::Debug for NotPinned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for NotPinned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "server certificate SHA-256 {} is not among the pinned hashes",
            self.0
        )
    }
}

impl std::error::Error for NotPinned {}

impl ServerCertVerifier for SignatureOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(pins) = &self.pins else {
            return Ok(ServerCertVerified::assertion());
        };
        let hash = CertHash::of(end_entity);
        if !pins.contains(&hash) {
            return Err(CertificateError::Other(OtherError(Arc::new(NotPinned(hash)))).into());
        }
        let info = CertInfo::parse(end_entity).map_err(|_| CertificateError::BadEncoding)?;
        let now = i64::try_from(now.as_secs())
            .ok()
            .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
            .ok_or(CertificateError::BadEncoding)?;
        match info.validity.check(now) {
            Ok(()) => Ok(ServerCertVerified::assertion()),
            Err(Error::NotYetValid { .. }) => Err(CertificateError::NotValidYet.into()),
            Err(_) => Err(CertificateError::Expired.into()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
