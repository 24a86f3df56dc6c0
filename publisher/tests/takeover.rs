//! Proves publisher takeover as a viewer sees it, with real processes: a `banyan-publish`
//! killed with SIGKILL and restarted at once for the same broadcast is accepted by the relay
//! and on air in under 2 s, while a `banyan-watch` watching throughout keeps its one session
//! and its subscriptions, loses at most the one group the dead publisher was in the middle
//! of, and carries on with the new publisher's groups; and, with the relay's JWT auth on, a
//! publisher whose token does not cover the broadcast is refused (non-zero exit, a clear
//! message) while the first keeps its broadcast.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitStatus;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use banyan_certs::{DevOptions, Identity};
use banyan_relay::auth::{mint_hs256, Claims};
use banyan_relay::config::RelayConfig;
use banyan_relay::Relay;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

const PUBLISH: &str = env!("CARGO_BIN_EXE_banyan-publish");
const WATCH: &str = env!("CARGO_BIN_EXE_banyan-watch");
/// HS256 secret of the auth relay.
const SECRET: &str = "banyan-takeover-test-secret-0123456789abcdef";
/// Synthetic media: 30 fps, a group every 15 frames (500 ms).
const FPS: &str = "30";
const GOP: &str = "15";
const GROUP_MS: u64 = 500;
/// From the restart to the new publisher's first group at the viewer, at most.
const ON_AIR_WITHIN_MS: u64 = 2000;

/// An in-process relay on an OS-chosen port with a dev certificate.
struct TestRelay {
    addr: SocketAddr,
    hash: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl TestRelay {
    /// `auth`: `--auth-key` with [`SECRET`]; otherwise `--insecure-no-auth`.
    async fn start(auth: bool) -> Self {
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
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(relay.run(async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            hash: identity.sha256().to_hex(),
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("moqt://localhost:{}", self.addr.port())
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), &mut self.task).await;
    }
}

fn unix_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// A token for `ns`, valid for an hour.
fn token(ns: &str, publish: bool, subscribe: bool) -> String {
    let claims = Claims {
        sub: Some("takeover test".into()),
        ns: ns.into(),
        publish,
        subscribe,
        exp: unix_ms() / 1000 + 3600,
        room: None,
    };
    mint_hs256(&claims, SECRET.as_bytes()).unwrap()
}

/// A process's stderr, collected line by line as it comes (so a test can poll it).
#[derive(Clone, Default)]
struct Log(Arc<Mutex<String>>, Arc<AtomicBool>);

impl Log {
    fn follow(stream: impl AsyncRead + Unpin + Send + 'static) -> Self {
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
    fn ended(&self) -> bool {
        self.1.load(Ordering::Acquire)
    }

    fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    fn contains(&self, needle: &str) -> bool {
        self.0.lock().unwrap().contains(needle)
    }

    /// The group count of the watcher's latest progress line (`watch: objects N groups M ...`).
    fn groups(&self) -> u64 {
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
async fn until(within: Duration, what: &str, log: &Log, mut ready: impl FnMut() -> bool) {
    let polled = tokio::time::timeout(within, async {
        while !ready() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(polled.is_ok(), "{what}: not within {within:?}\n{}", log.text());
}

/// Bound `f` to `within`, panicking with `what`.
async fn within<T>(within: Duration, what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(within, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {within:?}"))
}

fn command(bin: &str, args: &[&str]) -> Command {
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
fn publisher(relay: &TestRelay, broadcast: &str, token: Option<&str>) -> (Child, Log) {
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

/// A `banyan-watch` of `broadcast` writing its summary to `summary`, stderr followed. It runs
/// until told to stop (SIGTERM); `--duration` only bounds a test that goes wrong.
fn watcher(
    relay: &TestRelay,
    broadcast: &str,
    summary: &std::path::Path,
    token: Option<&str>,
) -> (Child, Log) {
    let url = relay.url();
    let summary = summary.to_str().unwrap();
    let mut args = vec![
        url.as_str(),
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
    let mut child = command(WATCH, &args).spawn().unwrap();
    let log = Log::follow(child.stderr.take().unwrap());
    (child, log)
}

/// Wait until the publisher has its namespace accepted (`Ok`: when, in Unix ms) or exits
/// (`Err`: its exit status and all it wrote to stderr).
async fn announced(child: &mut Child, log: &Log, within_: Duration) -> Result<u64, (ExitStatus, String)> {
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
async fn stop_watcher(mut child: Child, log: &Log, summary: &std::path::Path) -> Value {
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
async fn kill(child: &mut Child) {
    child.start_kill().unwrap();
    within(Duration::from_secs(10), "a SIGKILLed process exits", child.wait())
        .await
        .unwrap();
}

fn runs(summary: &Value) -> Vec<(u64, u64, u64)> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_publisher_takes_its_broadcast_over_and_the_viewer_stays() {
    let relay = TestRelay::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let summary_path = dir.path().join("summary.json");
    let broadcast = "takeover/restart";

    let (mut first, first_log) = publisher(&relay, broadcast, None);
    announced(&mut first, &first_log, Duration::from_secs(20))
        .await
        .expect("the first publisher is accepted");
    let (watch, watch_log) = watcher(&relay, broadcast, &summary_path, None);
    until(
        Duration::from_secs(20),
        "the watcher receives 3 groups",
        &watch_log,
        || watch_log.groups() >= 3,
    )
    .await;

    // The encoder dies without a word (no PUBLISH_DONE, no CONNECTION_CLOSE) and is started
    // again at once for the same broadcast.
    let killed_at = unix_ms();
    kill(&mut first).await;
    let restarted_at = unix_ms();
    let groups_at_restart = watch_log.groups();
    let (mut second, second_log) = publisher(&relay, broadcast, None);
    let accepted_at = match announced(&mut second, &second_log, Duration::from_secs(10)).await {
        Ok(at) => at,
        Err((status, stderr)) => panic!(
            "the relay refused the restarted publisher's PUBLISH_NAMESPACE (no takeover); it exited \
             with {status}:\n{stderr}"
        ),
    };
    // The new publisher's media keeps coming: at least 4 more groups (2 s of media).
    until(
        Duration::from_secs(15),
        "the watcher receives the new publisher's groups",
        &watch_log,
        || watch_log.groups() >= groups_at_restart + 4,
    )
    .await;
    let summary = stop_watcher(watch, &watch_log, &summary_path).await;
    assert!(
        second.try_wait().unwrap().is_none(),
        "the new publisher is still on air:\n{}",
        second_log.text()
    );

    let runs = runs(&summary);
    let video = &summary["tracks"]["video"];
    let incomplete = video["incomplete_groups"].as_u64().unwrap();
    let stall_ms = video["longest_stall_ms"].as_f64().unwrap();
    eprintln!(
        "takeover: PUBLISH_NAMESPACE accepted {} ms after the restart; group runs {runs:?}; \
         incomplete groups {incomplete}; longest stall {stall_ms} ms",
        accepted_at.saturating_sub(restarted_at)
    );
    // One run per publisher: no group lost inside either (a lost group would split a run).
    assert_eq!(
        runs.len(),
        2,
        "the old publisher's groups, then the new one's, each without a hole: {summary}"
    );
    let (old_first, old_last, _) = runs[0];
    let (new_first, new_last, new_first_received) = runs[1];
    assert!(old_last >= old_first + 2, "{summary}");
    // The new run is the restarted publisher's: it numbers groups from its start (unix ms).
    assert!(
        new_first >= restarted_at,
        "group {new_first} is not from a publisher started at {restarted_at}: {summary}"
    );
    let on_air_ms = new_first_received.saturating_sub(restarted_at);
    eprintln!(
        "takeover: kill → first new group at the viewer {} ms; restart → first new group {on_air_ms} ms; \
         groups lost at the switch: {incomplete} incomplete, 0 missing inside either publisher's run",
        new_first_received.saturating_sub(killed_at)
    );
    assert!(
        on_air_ms < ON_AIR_WITHIN_MS,
        "the new publisher reached the viewer {on_air_ms} ms after its restart: {summary}"
    );
    // At most the group the old publisher died in arrived in part.
    assert!(incomplete <= 1, "{summary}");
    // The viewer never noticed beyond the pause: same session, same subscriptions.
    assert_eq!(summary["sessions"], 1, "{summary}");
    assert_eq!(summary["reconnects"], 0, "{summary}");
    assert_eq!(summary["resubscribes"], 0, "{summary}");
    assert_eq!(video["subscriptions"], 1, "{summary}");
    assert!(!watch_log.contains("reconnecting"), "{}", watch_log.text());
    // And kept receiving: at least 4 of the new publisher's groups, so over 2 s of media.
    assert!(new_last >= new_first + 3, "{summary}");
    // The pause is the switch: less than the on-air bound plus a group.
    assert!(
        stall_ms < (ON_AIR_WITHIN_MS + GROUP_MS) as f64,
        "longest stall {stall_ms} ms: {summary}"
    );

    kill(&mut second).await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_without_rights_to_the_broadcast_cannot_take_it_over() {
    let relay = TestRelay::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let summary_path = dir.path().join("summary.json");
    let broadcast = "takeover/auth";

    let owner = token(broadcast, true, false);
    let (mut first, first_log) = publisher(&relay, broadcast, Some(&owner));
    announced(&mut first, &first_log, Duration::from_secs(20))
        .await
        .expect("the first publisher is accepted");
    let viewer = token(broadcast, false, true);
    let (watch, watch_log) = watcher(&relay, broadcast, &summary_path, Some(&viewer));
    until(
        Duration::from_secs(20),
        "the watcher receives 3 groups",
        &watch_log,
        || watch_log.groups() >= 3,
    )
    .await;

    // A token to publish another broadcast, and one to watch this one: neither may publish it.
    for (what, intruder) in [
        (
            "publish rights on another namespace",
            token("takeover/other", true, true),
        ),
        (
            "subscribe-only rights on this namespace",
            token(broadcast, false, true),
        ),
    ] {
        let (mut second, second_log) = publisher(&relay, broadcast, Some(&intruder));
        let refused = announced(&mut second, &second_log, Duration::from_secs(20)).await;
        let Err((status, stderr)) = refused else {
            kill(&mut second).await;
            panic!("a publisher with {what} was accepted:\n{}", second_log.text());
        };
        assert!(!status.success(), "{what}: exit {status}: {stderr}");
        assert!(
            stderr.contains("error: PUBLISH_NAMESPACE takeover/auth") && stderr.contains("Unauthorized"),
            "{what}: the refusal says what and why: {stderr}"
        );
        eprintln!(
            "takeover: a publisher with {what}: refused, exit {status}: {}",
            stderr.trim()
        );
    }
    // The owner is still on air and the viewer still receives it, untouched.
    let groups = watch_log.groups();
    until(
        Duration::from_secs(10),
        "the watcher keeps receiving the first publisher",
        &watch_log,
        || watch_log.groups() >= groups + 2,
    )
    .await;
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first publisher still runs:\n{}",
        first_log.text()
    );
    let summary = stop_watcher(watch, &watch_log, &summary_path).await;
    assert_eq!(runs(&summary).len(), 1, "one publisher throughout: {summary}");
    assert_eq!(
        (summary["sessions"].as_u64(), summary["resubscribes"].as_u64()),
        (Some(1), Some(0)),
        "{summary}"
    );
    kill(&mut first).await;
    relay.shutdown().await;
}
