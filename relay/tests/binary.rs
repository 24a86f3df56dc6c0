//! Proves the real `banyan-relay` binary behaves as operators and scripts rely on: `--help`
//! explains it; it refuses to start without an auth decision or with no/both/missing
//! certificates, with clear messages; `BANYAN_RELAY_*` variables and `--config relay.toml`
//! are honoured (flag > env > file); with `--dev-cert` it prints its certificate hash and
//! addresses, serves `/certificate.sha256`, `/health` and `/metrics`, accepts pinned clients
//! over raw QUIC and WebTransport; and SIGTERM sends GOAWAY, reports draining on `/health`,
//! and exits 0 within the drain timeout.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use banyan_moq::coding::SessionErrorCode;
use banyan_moq::session::Error;

mod common;

use common::process::*;

#[tokio::test]
async fn help_explains_the_flags() {
    let (status, stdout, _) = run_to_exit(relay_command(&["--help"])).await;
    assert!(status.success(), "--help exits 0");
    for flag in [
        "--listen",
        "--dev-cert",
        "--auth-key",
        "--insecure-no-auth",
        "BANYAN_RELAY_",
    ] {
        assert!(stdout.contains(flag), "--help mentions {flag}:\n{stdout}");
    }
}

#[tokio::test]
async fn upstream_options_are_checked() {
    let mut args = DEV.to_vec();
    args.extend(["--upstream", "http://parent:4443/"]);
    refuses_to_start(&args, &["--upstream", "moqt://"]).await;
    let mut args = DEV.to_vec();
    args.extend(["--control", "moqt://control:8080"]);
    refuses_to_start(&args, &["--control", "http://"]).await;
    let mut args = DEV.to_vec();
    args.extend(["--upstream-insecure", "--upstream-ca", "/etc/hostname"]);
    refuses_to_start(&args, &["--upstream-ca and --upstream-insecure"]).await;
    let mut args = DEV.to_vec();
    args.extend(["--max-depth", "0"]);
    refuses_to_start(&args, &["--max-depth"]).await;
}

#[tokio::test]
async fn refuses_to_start_without_an_auth_decision() {
    let base = ["--dev-cert", "--listen", "[::]:0", "--http-listen", "127.0.0.1:0"];
    refuses_to_start(
        &base,
        &[
            "refusing to start without authentication",
            "--auth-key",
            "--insecure-no-auth",
        ],
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("jwt.key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").unwrap();
    let mut both = base.to_vec();
    both.extend(["--auth-key", key.to_str().unwrap(), "--insecure-no-auth"]);
    refuses_to_start(&both, &["--auth-key and --insecure-no-auth"]).await;

    let mut missing = base.to_vec();
    missing.extend(["--auth-key", "/nonexistent/jwt.key"]);
    refuses_to_start(&missing, &["--auth-key", "/nonexistent/jwt.key", "not found"]).await;

    let short = dir.path().join("short.key");
    std::fs::write(&short, "too short").unwrap();
    let mut weak = base.to_vec();
    weak.extend(["--auth-key", short.to_str().unwrap()]);
    refuses_to_start(&weak, &["auth key"]).await;
}

#[tokio::test]
async fn certificate_modes_are_checked() {
    let base = [
        "--listen",
        "[::]:0",
        "--http-listen",
        "127.0.0.1:0",
        "--insecure-no-auth",
    ];
    refuses_to_start(&base, &["no TLS certificate", "--tls-cert", "--dev-cert"]).await;

    let dir = tempfile::tempdir().unwrap();
    let identity = banyan_certs::Identity::mint_dev(&Default::default()).unwrap();
    let (cert, key) = (dir.path().join("relay.crt"), dir.path().join("relay.key"));
    identity.write_pem(&cert, &key).unwrap();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());

    let mut both = base.to_vec();
    both.extend(["--dev-cert", "--tls-cert", cert, "--tls-key", key]);
    refuses_to_start(&both, &["--dev-cert cannot be combined with --tls-cert"]).await;

    let mut half = base.to_vec();
    half.extend(["--tls-cert", cert]);
    refuses_to_start(&half, &["--tls-cert and --tls-key must be given together"]).await;

    let mut missing = base.to_vec();
    missing.extend(["--tls-cert", "/nonexistent/relay.crt", "--tls-key", key]);
    refuses_to_start(&missing, &["--tls-cert", "/nonexistent/relay.crt", "not found"]).await;

    // A garbage certificate file is reported, not a panic.
    let junk = dir.path().join("junk.crt");
    std::fs::write(&junk, "not a certificate").unwrap();
    let mut bad = base.to_vec();
    bad.extend(["--tls-cert", junk.to_str().unwrap(), "--tls-key", key]);
    refuses_to_start(&bad, &["certificate"]).await;

    // The real certificate files work, and no hash is printed or served for them.
    let mut real = base.to_vec();
    real.extend(["--tls-cert", cert, "--tls-key", key]);
    let relay = start(relay_command(&real)).await;
    assert!(relay.hash.is_none(), "no development hash with --tls-cert");
    assert_eq!(relay.get("/certificate.sha256").await.0, 404);
    relay.stop().await;
}

#[tokio::test]
async fn environment_variables_and_the_toml_file_are_honoured() {
    // Everything from the environment.
    let mut command = relay_command(&[]);
    command
        .env("BANYAN_RELAY_DEV_CERT", "true")
        .env("BANYAN_RELAY_INSECURE_NO_AUTH", "yes")
        .env("BANYAN_RELAY_LISTEN", "[::]:0")
        .env("BANYAN_RELAY_HTTP_LISTEN", "127.0.0.1:0")
        .env("BANYAN_RELAY_RELAY_ID", "from-env");
    let relay = start(command).await;
    assert!(
        relay.hash.is_some(),
        "BANYAN_RELAY_DEV_CERT=true mints a certificate"
    );
    assert_eq!(relay.health().await["relay_id"], "from-env");
    relay.stop().await;

    // Everything from a TOML file, including a limit that visibly applies.
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("relay.toml");
    std::fs::write(
        &toml,
        r#"
listen = "[::]:0"
http-listen = "127.0.0.1:0"
dev-cert = true
insecure-no-auth = true
relay-id = "from-toml"
max-sessions = 1
drain-timeout = "1s"
"#,
    )
    .unwrap();
    let config = toml.to_str().unwrap();
    let relay = start(relay_command(&["--config", config])).await;
    assert_eq!(relay.health().await["relay_id"], "from-toml");
    let client = relay.client();
    let first = relay.connect(&client, "moqt").await.unwrap();
    assert!(
        relay.connect(&client, "moqt").await.is_err(),
        "max-sessions = 1 from the file refuses a second session"
    );
    drop(first);
    relay.stop().await;

    // The environment overrides the file; a flag overrides both.
    let mut command = relay_command(&["--config", config]);
    command.env("BANYAN_RELAY_RELAY_ID", "env-wins");
    let relay = start(command).await;
    assert_eq!(relay.health().await["relay_id"], "env-wins");
    relay.stop().await;
    let mut command = relay_command(&["--config", config, "--relay-id", "flag-wins"]);
    command.env("BANYAN_RELAY_RELAY_ID", "env-loses");
    let relay = start(command).await;
    assert_eq!(relay.health().await["relay_id"], "flag-wins");
    relay.stop().await;

    // The config file's name can come from the environment too.
    let mut command = relay_command(&[]);
    command.env("BANYAN_RELAY_CONFIG", config);
    let relay = start(command).await;
    assert_eq!(relay.health().await["relay_id"], "from-toml");
    relay.stop().await;

    // Mistakes in any layer are clear errors.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "dev-cert = true\ninsecure-no-auth = true\nmax-sesions = 5\n",
    )
    .unwrap();
    refuses_to_start(&["--config", bad.to_str().unwrap()], &["max-sesions"]).await;
    refuses_to_start(
        &["--config", "/nonexistent/relay.toml"],
        &["/nonexistent/relay.toml"],
    )
    .await;
    let mut command = relay_command(DEV);
    command.env("BANYAN_RELAY_MAX_SESSIONS", "many");
    let (status, _, stderr) = run_to_exit(command).await;
    assert!(!status.success());
    assert!(
        stderr.contains("BANYAN_RELAY_MAX_SESSIONS"),
        "names the variable: {stderr}"
    );
}

#[tokio::test]
async fn dev_relay_serves_clients_and_drains_on_sigterm() {
    let mut relay = start(relay_command(
        &[DEV, &["--drain-timeout", "2s", "--relay-id", "bin-test"]].concat(),
    ))
    .await;

    // The printed hash is the one served, and the HTTP endpoints answer.
    let hash = relay.hash.clone().expect("--dev-cert prints the hash");
    assert_eq!(hash.len(), 64, "hex SHA-256: {hash}");
    let (status, served) = relay.get("/certificate.sha256").await;
    assert_eq!(status, 200);
    assert_eq!(served.trim(), hash);
    let health = relay.health().await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["relay_id"], "bin-test");
    let (status, metrics) = relay.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.lines().any(|l| l.starts_with("banyan_relay_")),
        "Prometheus lines:\n{metrics}"
    );

    // Pinned clients connect over both transports.
    let client = relay.client();
    let quic = relay.connect(&client, "moqt").await.unwrap();
    let webtransport = relay.connect(&client, "https").await.unwrap();
    let health = relay.health().await;
    assert_eq!(health["sessions"], 2, "{health}");
    let (_, metrics) = relay.get("/metrics").await;
    assert!(
        metrics.contains("banyan_relay_sessions{transport=\"quic\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("banyan_relay_sessions{transport=\"webtransport\"} 1"),
        "{metrics}"
    );

    // SIGTERM: both sessions get GOAWAY, /health turns 503 draining, and the process exits
    // 0 once the drain timeout has passed (the sessions never leave by themselves).
    let signalled = Instant::now();
    relay.sigterm();
    for (name, session) in [("raw QUIC", &quic), ("WebTransport", &webtransport)] {
        tokio::time::timeout(Duration::from_secs(10), session.goaway_received())
            .await
            .unwrap_or_else(|_| panic!("{name} session receives GOAWAY"));
    }
    let mut saw_draining = false;
    while !saw_draining && signalled.elapsed() < Duration::from_secs(10) {
        let Some((status, body)) = try_http_get(relay.http, "/health").await else {
            break;
        };
        if status == 503 {
            let health: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(health["status"], "draining");
            saw_draining = true;
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(saw_draining, "/health reports draining while sessions drain");
    let status = relay.exit(20).await;
    assert!(status.success(), "exit status {status:?}");
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "waited for the drain timeout: {took:?}"
    );
    assert!(
        took < Duration::from_secs(15),
        "bounded by the drain timeout: {took:?}"
    );

    // Sessions still open at the deadline are closed with GOAWAY_TIMEOUT.
    let closed = tokio::time::timeout(Duration::from_secs(10), quic.closed())
        .await
        .expect("the session is closed");
    assert!(
        matches!(
            closed,
            Error::Closed {
                code: SessionErrorCode::GoawayTimeout,
                ..
            }
        ),
        "got {closed:?}"
    );
    let log = relay.stderr.lock().unwrap().clone();
    assert!(log.contains("GOAWAY"), "the shutdown is logged:\n{log}");
}

#[tokio::test]
async fn sigterm_exits_early_once_every_session_has_left() {
    let mut relay = start(relay_command(&[DEV, &["--drain-timeout", "30s"]].concat())).await;
    let client = relay.client();
    let session = relay.connect(&client, "https").await.unwrap();
    let signalled = Instant::now();
    relay.sigterm();
    tokio::time::timeout(Duration::from_secs(10), session.goaway_received())
        .await
        .expect("GOAWAY arrives");
    // A well-behaved client leaves when told to.
    session.close(SessionErrorCode::NoError, "moving on");
    let status = relay.exit(25).await;
    assert!(status.success(), "exit status {status:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(25),
        "did not wait for the 30 s drain timeout: {:?}",
        signalled.elapsed()
    );
}

#[tokio::test]
async fn sigterm_right_after_the_listening_line_is_a_graceful_exit() {
    // Supervisors signal as soon as a process reports ready: the handler must already be
    // installed by the time `listening:` is printed, or the default action kills the relay.
    for _ in 0..3 {
        let mut relay = start(relay_command(DEV)).await;
        relay.sigterm();
        let status = relay.exit(20).await;
        assert!(status.success(), "exit status {status:?}");
    }
}
