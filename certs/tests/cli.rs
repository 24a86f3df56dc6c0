//! Proves the `banyan-certs` binary writes a usable development certificate whose printed hash
//! matches the files, and that `hash` and `check` agree with it and fail clearly on bad input.

// Helpers outside #[test] fns are test code too; clippy.toml's test allowances don't reach them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::process::{Command, Output};

use banyan_certs::{parse_sha256_hex, Identity, KeyAlgorithm};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_banyan-certs"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn dev_writes_files_and_prints_their_hash() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    let o = run(&["dev", "--out", path(&out), "--days", "3", "--name", "relay.test"]);
    assert!(o.status.success(), "stderr: {}", text(&o.stderr));

    let stdout = text(&o.stdout);
    let printed = stdout.lines().last().unwrap();
    let hash = parse_sha256_hex(printed).unwrap();
    assert!(text(&o.stderr).contains("--tls-hash"), "{}", text(&o.stderr));

    let (cert, key) = (out.join("cert.pem"), out.join("key.pem"));
    let identity = Identity::load_pem(&cert, &key).unwrap();
    assert_eq!(identity.sha256(), hash);
    identity.check_key().unwrap();
    let file_hash = std::fs::read_to_string(out.join("cert.sha256")).unwrap();
    assert_eq!(file_hash.trim(), printed);

    let info = identity.info().unwrap();
    assert_eq!(info.key, KeyAlgorithm::EcdsaP256);
    assert_eq!(info.validity.length(), time::Duration::days(3));
    assert!(info.names.iter().any(|n| n == "relay.test"));

    let o = run(&["hash", path(&cert)]);
    assert!(o.status.success(), "stderr: {}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), printed);

    let o = run(&["check", path(&cert), path(&key)]);
    assert!(o.status.success(), "stderr: {}", text(&o.stderr));
    let report = text(&o.stdout);
    assert!(report.contains("key match: yes"), "{report}");
    assert!(report.contains("would accept it"), "{report}");
    assert!(report.contains(printed), "{report}");
}

#[test]
fn bad_input_exits_non_zero_with_a_message() {
    let dir = tempfile::tempdir().unwrap();

    let o = run(&["dev", "--out", path(dir.path()), "--days", "15"]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("15"), "{}", text(&o.stderr));

    let missing = dir.path().join("missing.pem");
    let o = run(&["hash", path(&missing)]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("missing.pem") && err.contains("no such file"),
        "{err}"
    );

    // A key file that holds only a certificate.
    let o = run(&["dev", "--out", path(dir.path())]);
    assert!(o.status.success());
    let cert = dir.path().join("cert.pem");
    let o = run(&["check", path(&cert), path(&cert)]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("no private key"), "{}", text(&o.stderr));

    // A key that belongs to another certificate.
    let other = dir.path().join("other");
    assert!(run(&["dev", "--out", path(&other)]).status.success());
    let o = run(&["check", path(&cert), path(&other.join("key.pem"))]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("does not match"), "{}", text(&o.stderr));
}
