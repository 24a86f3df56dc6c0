//! Certificates for Banyan: development certificates that browsers accept through WebTransport
//! `serverCertificateHashes`, operator certificate chains loaded from PEM (e.g. ACME/Let's Encrypt),
//! and the rustls configurations the relay, publisher, viewers and tests build from them.
//!
//! # Module map
//! - [`identity`]: [`Identity`] (chain + key), minting with [`DevOptions`], PEM write/load.
//! - [`hash`]: [`CertHash`], the SHA-256 of a leaf's DER, and [`parse_sha256_hex`].
//! - [`inspect`]: [`CertInfo`], [`Validity`] and [`BrowserHashProblem`]: what a certificate says
//!   about itself and whether browsers would pin it.
//! - [`tls`]: [`server_config`], [`client_config`] and [`ServerVerification`]; TLS 1.3 only, the
//!   aws-lc-rs [`provider`] chosen explicitly.
//! - [`error`]: the one [`Error`] enum.
//!
//! ```
//! use banyan_certs::{client_config, server_config, DevOptions, Identity, ServerVerification};
//!
//! let identity = Identity::mint_dev(&DevOptions::default())?;
//! let server = server_config(&identity, &[b"moqt-18"])?;
//! let client = client_config(&ServerVerification::PinnedSha256(vec![identity.sha256()]), &[b"moqt-18"])?;
//! println!("pin with --tls-hash {}", identity.sha256());
//! # Ok::<(), banyan_certs::Error>(())
//! ```

pub mod error;
pub mod hash;
pub mod identity;
pub mod inspect;
pub mod tls;

pub use error::Error;
pub use hash::{parse_sha256_hex, CertHash};
pub use identity::{load_certs, load_key, DevOptions, Identity, DEV_NAMES, MAX_DEV_VALIDITY};
pub use inspect::{BrowserHashProblem, CertInfo, KeyAlgorithm, Validity};
pub use tls::{client_config, provider, server_config, ServerVerification};

pub use rustls_pki_types::{CertificateDer, PrivateKeyDer};
