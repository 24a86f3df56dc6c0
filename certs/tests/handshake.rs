//! Proves that the configs from `server_config`/`client_config` complete a real TLS 1.3 handshake
//! (in memory, no sockets) for each `ServerVerification` mode, and refuse the ones they should.

// Helpers outside #[test] fns are test code too; clippy.toml's test allowances don't reach them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;

use banyan_certs::{
    client_config, parse_sha256_hex, server_config, CertHash, DevOptions, Identity, ServerVerification,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, Connection, ServerConnection};
use std::io::{Read, Write};

const ALPN: &[u8] = b"moqt-18";

/// Runs a handshake between a client trusting as `verification` and a server presenting
/// `identity`, addressed as `name`; then sends a message each way.
fn handshake(
    identity: &Identity,
    verification: &ServerVerification,
    name: &str,
) -> Result<(), rustls::Error> {
    let server_cfg = server_config(identity, &[ALPN]).unwrap();
    let client_cfg = client_config(verification, &[ALPN]).unwrap();
    let mut client = Connection::from(ClientConnection::new(
        Arc::new(client_cfg),
        ServerName::try_from(name.to_owned()).unwrap(),
    )?);
    let mut server = Connection::from(ServerConnection::new(Arc::new(server_cfg))?);

    for _ in 0..10 {
        if !client.is_handshaking() && !server.is_handshaking() {
            break;
        }
        pump(&mut client, &mut server)?;
        pump(&mut server, &mut client)?;
    }
    assert!(
        !client.is_handshaking() && !server.is_handshaking(),
        "handshake stalled"
    );
    assert_eq!(client.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
    assert_eq!(client.alpn_protocol(), Some(ALPN));
    assert_eq!(server.alpn_protocol(), Some(ALPN));

    client.writer().write_all(b"subscribe").unwrap();
    pump(&mut client, &mut server)?;
    let mut got = [0u8; 9];
    server.reader().read_exact(&mut got).unwrap();
    assert_eq!(&got, b"subscribe");

    server.writer().write_all(b"object").unwrap();
    pump(&mut server, &mut client)?;
    let mut got = [0u8; 6];
    client.reader().read_exact(&mut got).unwrap();
    assert_eq!(&got, b"object");
    Ok(())
}

/// Moves every pending TLS record from `from` to `to` and lets `to` process it.
/// An error from either side is returned after the other side has seen its alert.
fn pump(from: &mut Connection, to: &mut Connection) -> Result<(), rustls::Error> {
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf).unwrap();
    }
    let mut rd = buf.as_slice();
    while !rd.is_empty() {
        to.read_tls(&mut rd).unwrap();
        to.process_new_packets()?;
    }
    Ok(())
}

fn dev() -> Identity {
    Identity::mint_dev(&DevOptions::default()).unwrap()
}

#[test]
fn pinned_hash_is_accepted_whatever_the_name() {
    let id = dev();
    let pin = ServerVerification::PinnedSha256(vec![CertHash::of(b"other"), id.sha256()]);
    handshake(&id, &pin, "localhost").unwrap();
    // Like serverCertificateHashes, the pin stands in for name checks.
    handshake(&id, &pin, "relay.invalid").unwrap();
    // The hex a user pastes works the same.
    let pasted = parse_sha256_hex(&id.sha256().to_string()).unwrap();
    handshake(&id, &ServerVerification::PinnedSha256(vec![pasted]), "127.0.0.1").unwrap();
}

#[test]
fn wrong_hash_is_rejected_with_a_clear_message() {
    let id = dev();
    let other = dev();
    let err = handshake(
        &id,
        &ServerVerification::PinnedSha256(vec![other.sha256()]),
        "localhost",
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("not among the pinned hashes"), "{text}");
    assert!(text.contains(&id.sha256().to_string()), "{text}");

    let err = handshake(&id, &ServerVerification::PinnedSha256(Vec::new()), "localhost");
    assert!(err.is_err());
}

#[test]
fn pinned_but_expired_certificate_is_rejected() {
    let long_ago = time::OffsetDateTime::now_utc() - time::Duration::days(30);
    let id = Identity::mint_dev_at(&DevOptions::default(), long_ago).unwrap();
    let err = handshake(
        &id,
        &ServerVerification::PinnedSha256(vec![id.sha256()]),
        "localhost",
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(rustls::CertificateError::Expired)
        ),
        "{err:?}"
    );
}

#[test]
fn dev_certificate_as_its_own_ca_file_verifies_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let id = dev();
    id.write_pem(&cert, &key).unwrap();
    let ca = ServerVerification::CaFile(cert.clone());

    for name in ["localhost", "127.0.0.1", "::1"] {
        handshake(&id, &ca, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // WebPKI still checks names: the dev certificate is not valid for other hosts.
    let err = handshake(&id, &ca, "relay.invalid").unwrap_err();
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. }
            )
        ),
        "{err:?}"
    );
    // And a different server key is not trusted by this CA file.
    assert!(handshake(&dev(), &ca, "localhost").is_err());

    // The same through an in-memory root list.
    handshake(&id, &ServerVerification::Roots(id.chain().to_vec()), "localhost").unwrap();
}

#[test]
fn extra_names_are_verifiable() {
    let id = Identity::mint_dev(&DevOptions {
        names: vec!["relay.test".into(), "192.0.2.7".into()],
        ..DevOptions::default()
    })
    .unwrap();
    let roots = ServerVerification::Roots(id.chain().to_vec());
    handshake(&id, &roots, "relay.test").unwrap();
    handshake(&id, &roots, "192.0.2.7").unwrap();
}

#[test]
fn insecure_mode_accepts_any_certificate() {
    let long_ago = time::OffsetDateTime::now_utc() - time::Duration::days(30);
    let expired = Identity::mint_dev_at(&DevOptions::default(), long_ago).unwrap();
    handshake(&dev(), &ServerVerification::InsecureSkipVerify, "relay.invalid").unwrap();
    handshake(&expired, &ServerVerification::InsecureSkipVerify, "localhost").unwrap();
}

#[test]
fn system_roots_do_not_trust_a_dev_certificate() {
    match client_config(&ServerVerification::SystemRoots, &[ALPN]) {
        // A machine without a CA store gets a clear error instead of a config that trusts nothing.
        Err(banyan_certs::Error::NoSystemRoots { .. }) => {}
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => {
            let err = handshake(&dev(), &ServerVerification::SystemRoots, "localhost").unwrap_err();
            assert!(
                matches!(
                    err,
                    rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
                ),
                "{err:?}"
            );
        }
    }
}

#[test]
fn alpn_mismatch_fails() {
    let id = dev();
    let server_cfg = server_config(&id, &[b"h3"]).unwrap();
    let client_cfg = client_config(&ServerVerification::PinnedSha256(vec![id.sha256()]), &[ALPN]).unwrap();
    let mut client = Connection::from(
        ClientConnection::new(Arc::new(client_cfg), ServerName::try_from("localhost").unwrap()).unwrap(),
    );
    let mut server = Connection::from(ServerConnection::new(Arc::new(server_cfg)).unwrap());
    pump(&mut client, &mut server).unwrap_err();
}
