//! Helpers for the process-level tests: an in-process relay on an OS-chosen port, the
//! `banyan-publish`/`banyan-watch` binaries as child processes with their stderr followed,
//! bounded polling, tokens.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::future::Future;
use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use banyan_certs::{DevOptions, Identity};
use banyan_relay::auth::{mint_hs256, Claims};
use banyan_relay::config::RelayConfig;
use banyan_relay::metrics::Metrics;
use banyan_relay::Relay;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

pub const PUBLISH: &str = env!("CARGO_BIN_EXE_banyan-publish");
pub const WATCH: &str = env!("CARGO_BIN_EXE_banyan-watch");
/// Synthetic media: 30 fps, a group every 15 frames (500 ms).
pub const FPS: &str = "30";
pub const GOP: &str = "15";
pub const GROUP_MS: u64 = 500;
/// HS256 secret of the auth relay.
pub const SECRET: &str = "banyan-takeover-test-secret-0123456789abcdef";

/// An in-process relay on an OS-chosen port with a dev certificate.
pub struct TestRelay {
    pub addr: SocketAddr,
    pub hash: String,
    /// The relay's counters (e.g. SUBSCRIBEs held waiting for a publisher).
    pub metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl TestRelay {
    /// `auth`: `--auth-key` with [`SECRET`]; otherwise `--insecure-no-auth`.
    pub async fn start(auth: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity::mint_dev(&DevOptions::default()).unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        identity.write_pem(&cert, &key).unwrap();
        let jwt_key = dir.path().join("jwt.key");
        std::fs::write(&jwt_key, format!("{SECRET}\n")).unwrap();
        let mut args = vec![
            "banyan-relay".to_string(),
            "--listen=127.0.0.1:0".into(),
            "--http-listen=127.0.0.1:0".into(),
            format!("--tls-cert={}", cert.display()),
            format!("--tls-key={}", key.display()),
            "--drain-timeout=1s".into(),
        ];
        if auth {
            args.push(format!("--auth-key={}", jwt_key.display()));
        } else {
            args.push("--insecure-no-auth".into());
        }
        let config = RelayConfig::load_from(args, |_| None).expect("relay config");
        let relay = Relay::bind(&config).await.expect("bind relay");
        let addr = SocketAddr::from(([127, 0, 0, 1], relay.local_addr().unwrap().port()));
        let metrics = relay.metrics();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(relay.run(async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            hash: identity.sha256().to_hex(),
            metrics,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("moqt://localhost:{}", self.addr.port())
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), &mut self.task).await;
    }
}

pub fn unix_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// A token for `ns`, valid for an hour.
pub fn token(ns: &str, publish: bool, subscribe: bool) -> String {
    let claims = Claims {
        sub: Some("takeover test".into()),
        ns: ns.into(),
        publish,
        subscribe,
        exp: unix_ms() / 1000 + 3600,
        room: None,
        ..Default::default()
    };
    mint_hs256(&claims, SECRET.as_bytes()).unwrap()
}

/// A process's stderr, collected line by line as it comes (so a test can poll it).
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<String>>, Arc<AtomicBool>);

impl Log {
    pub fn follow(stream: impl AsyncRead + Unpin + Send + 'static) -> Self {
        let log = Self::default();
        let sink = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut l = sink.0.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
            sink.1.store(true, Ordering::Release);
        });
        log
    }

    /// The stream has ended (the process closed stderr: it exited).
    pub fn ended(&self) -> bool {
        self.1.load(Ordering::Acquire)
    }

    pub fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.0.lock().unwrap().contains(needle)
    }

    /// The group count of the watcher's latest progress line (`watch: objects N groups M ...`).
    pub fn groups(&self) -> u64 {
        let text = self.0.lock().unwrap();
        text.lines()
            .rev()
            .find_map(|l| {
                let rest = l.strip_prefix("watch: objects ")?;
                let mut words = rest.split_whitespace();
                let _objects = words.next()?;
                (words.next()? == "groups").then_some(())?;
                words.next()?.parse().ok()
            })
            .unwrap_or(0)
    }
}

/// Poll `ready` every 20 ms until it holds; panic with `what` (and `log`) after `within`.
pub async fn until(within: Duration, what: &str, log: &Log, mut ready: impl FnMut() -> bool) {
    let polled = tokio::time::timeout(within, async {
        while !ready() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(polled.is_ok(), "{what}: not within {within:?}\n{}", log.text());
}

/// Bound `f` to `within`, panicking with `what`.
pub async fn within<T>(within: Duration, what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(within, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {within:?}"))
}

pub fn command(bin: &str, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.args(args)
        .env_remove("BANYAN_TOKEN")
        .env_remove("BANYAN_LOG")
        .env_remove("BANYAN_RENDEZVOUS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// A synthetic `banyan-publish` for `broadcast`, its stderr followed.
pub fn publisher(relay: &TestRelay, broadcast: &str, token: Option<&str>) -> (Child, Log) {
    let url = relay.url();
    let mut args = vec![
        url.as_str(),
        "--broadcast",
        broadcast,
        "--synthetic",
        "--fps",
        FPS,
        "--gop",
        GOP,
        "--bitrate",
        "300k",
        "--tls-hash",
        &relay.hash,
    ];
    if let Some(token) = token {
        args.extend(["--token", token]);
    }
    let mut child = command(PUBLISH, &args).spawn().unwrap();
    let log = Log::follow(child.stderr.take().unwrap());
    (child, log)
}

/// A `banyan-watch` of `broadcast` writing its summary to `summary`, stderr followed, with
/// `extra` flags. It runs until told to stop (SIGTERM); `--duration` only bounds a test that
/// goes wrong.
pub fn watcher(
    relay: &TestRelay,
    broadcast: &str,
    summary: &std::path::Path,
    token: Option<&str>,
    extra: &[&str],
) -> (Child, Log) {
    watcher_at(&relay.url(), relay, broadcast, summary, token, extra)
}

/// [`watcher`] connecting to `url` (e.g. an impairment proxy in front of `relay`).
pub fn watcher_at(
    url: &str,
    relay: &TestRelay,
    broadcast: &str,
    summary: &std::path::Path,
    token: Option<&str>,
    extra: &[&str],
) -> (Child, Log) {
    let summary = summary.to_str().unwrap();
    let mut args = vec![
        url,
        "--broadcast",
        broadcast,
        "--duration",
        "120s",
        "--summary",
        summary,
        "--tls-hash",
        &relay.hash,
    ];
    if let Some(token) = token {
        args.extend(["--token", token]);
    }
    args.extend(extra);
    let mut child = command(WATCH, &args).spawn().unwrap();
    let log = Log::follow(child.stderr.take().unwrap());
    (child, log)
}

/// Wait until the publisher has its namespace accepted (`Ok`: when, in Unix ms) or exits
/// (`Err`: its exit status and all it wrote to stderr).
pub async fn announced(child: &mut Child, log: &Log, within_: Duration) -> Result<u64, (ExitStatus, String)> {
    within(within_, "the publisher connects or exits", async {
        loop {
            if log.contains("publish: connected") {
                return Ok(unix_ms());
            }
            if let Some(status) = child.try_wait().unwrap() {
                // Its last lines: stderr ends with the process.
                while !log.ended() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                return Err((status, log.text()));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// SIGTERM `child` (the watcher then writes its summary and exits 0) and read the summary.
pub async fn stop_watcher(mut child: Child, log: &Log, summary: &std::path::Path) -> Value {
    let pid = child.id().expect("the watcher is still running").to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success(), "kill -TERM {pid}");
    let status = within(
        Duration::from_secs(15),
        "the watcher exits after SIGTERM",
        child.wait(),
    )
    .await
    .unwrap();
    assert!(status.success(), "watcher exit {status}:\n{}", log.text());
    serde_json::from_str(&std::fs::read_to_string(summary).unwrap()).unwrap()
}

/// SIGKILL `child` and reap it.
pub async fn kill(child: &mut Child) {
    child.start_kill().unwrap();
    within(Duration::from_secs(10), "a SIGKILLed process exits", child.wait())
        .await
        .unwrap();
}

pub fn runs(summary: &Value) -> Vec<(u64, u64, u64)> {
    summary["tracks"]["video"]["group_runs"]
        .as_array()
        .unwrap_or_else(|| panic!("no video group_runs: {summary}"))
        .iter()
        .map(|r| {
            (
                r["first_group"].as_u64().unwrap(),
                r["last_group"].as_u64().unwrap(),
                r["first_received_unix_ms"].as_u64().unwrap(),
            )
        })
        .collect()
}
