//! Proves real media flows end to end: ffmpeg-made H.264+Opus and AV1 clips → `banyan-publish`
//! → `banyan-relay` → `banyan-watch --output file` (both over `wss://`, QMux over WebSocket, for
//! the H.264 clip) decode in ffprobe with the same frame counts and codecs; bad input (non-MP4,
//! truncated, unsupported codec, unreachable relay) exits non-zero with a clear message and no
//! hang; a publisher survives a relay restart (GOAWAY) while the watcher, over QUIC or over
//! WebSocket, sees exactly one gap and carries on; and SIGTERM ends a broadcast cleanly.
//! Needs ffmpeg and ffprobe on PATH.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use banyan_certs::{DevOptions, Identity};
use banyan_relay::config::RelayConfig;
use banyan_relay::Relay;
use banyan_tests::media_tools::ffprobe_frames as ffprobe;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

const PUBLISH: &str = env!("CARGO_BIN_EXE_banyan-publish");
const WATCH: &str = env!("CARGO_BIN_EXE_banyan-watch");
const FRAG: &str = "frag_keyframe+empty_moov+default_base_moof";

/// An in-process relay serving a certificate from files (so a restart keeps its hash).
struct TestRelay {
    addr: SocketAddr,
    /// The `wss://` listener (on the same certificate).
    ws: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

struct Certs {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    hash: String,
}

fn certs() -> Certs {
    let dir = tempfile::tempdir().unwrap();
    let identity = Identity::mint_dev(&DevOptions::default()).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    identity.write_pem(&cert, &key).unwrap();
    Certs {
        hash: identity.sha256().to_hex(),
        _dir: dir,
        cert,
        key,
    }
}

async fn relay(certs: &Certs, listen: &str, ws_listen: &str) -> TestRelay {
    let args = [
        "banyan-relay",
        "--listen",
        listen,
        "--ws-listen",
        ws_listen,
        "--http-listen",
        "127.0.0.1:0",
        "--tls-cert",
        certs.cert.to_str().unwrap(),
        "--tls-key",
        certs.key.to_str().unwrap(),
        "--insecure-no-auth",
        "--drain-timeout",
        "1s",
    ];
    let config = RelayConfig::load_from(args, |_| None).expect("relay config");
    // A restarted relay may find its port still held for a moment by the old endpoint's
    // last tasks: retry (bounded) until it is free.
    let mut attempts = 0;
    let relay = loop {
        match Relay::bind(&config).await {
            Ok(relay) => break relay,
            Err(e) if attempts < 200 => {
                attempts += 1;
                tracing_free_wait(&e).await;
            }
            Err(e) => panic!("bind relay: {e:#}"),
        }
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], relay.local_addr().unwrap().port()));
    let (scheme, ws) = relay.ws_addr().expect("websocket listener");
    assert_eq!(scheme, "wss", "a relay with --tls-cert serves wss://");
    let ws = SocketAddr::from(([127, 0, 0, 1], ws.port()));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(relay.run(async move {
        let _ = stopped.await;
    }));
    TestRelay {
        addr,
        ws,
        stop: Some(stop),
        task,
    }
}

async fn tracing_free_wait(_e: &anyhow::Error) {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

impl TestRelay {
    fn url(&self) -> String {
        format!("moqt://localhost:{}", self.addr.port())
    }

    /// The URL a publisher or watcher dials over `via`.
    fn url_via(&self, via: Via) -> String {
        match via {
            Via::Quic => self.url(),
            Via::WebSocket => format!("wss://localhost:{}/", self.ws.port()),
        }
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), &mut self.task).await;
    }
}

fn ffmpeg(args: &[&str], out: &Path) {
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(args)
        .arg(out)
        .status()
        .expect("ffmpeg must be installed (scripts/test installs it; apt-get install ffmpeg)");
    assert!(status.success(), "ffmpeg {args:?}");
}

fn command(bin: &str, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.args(args)
        .env_remove("BANYAN_TOKEN")
        .env_remove("BANYAN_LOG")
        .kill_on_drop(true);
    c
}

/// Run to completion within `secs`: (success, stdout, stderr).
async fn run(mut c: Command, secs: u64) -> (bool, String, String) {
    c.stdin(Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(secs), c.output())
        .await
        .expect("the process exits by itself (no hang)")
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// How the publisher and the watcher reach the relay.
#[derive(Clone, Copy, Debug)]
enum Via {
    Quic,
    WebSocket,
}

/// Publish `clip` through a relay and watch it into a file; compare with ffprobe.
async fn through_relay(
    clip: &Path,
    broadcast: &str,
    via: Via,
) -> (Vec<(String, u64)>, Vec<(String, u64)>, Value) {
    let certs = certs();
    let relay = relay(&certs, "127.0.0.1:0", "127.0.0.1:0").await;
    let url = relay.url_via(via);
    let out = clip.with_extension("watched.mp4");
    let mut publisher = command(
        PUBLISH,
        &[
            &url,
            "--broadcast",
            broadcast,
            "--input",
            clip.to_str().unwrap(),
            "--wait-subscribers",
            "--tls-hash",
            &certs.hash,
        ],
    );
    publisher
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let publisher = publisher.spawn().unwrap();
    let watch = command(
        WATCH,
        &[
            &url,
            "--broadcast",
            broadcast,
            "--output",
            out.to_str().unwrap(),
            "--tls-hash",
            &certs.hash,
        ],
    );
    let (ok, stdout, stderr) = run(watch, 60).await;
    let publisher = tokio::time::timeout(Duration::from_secs(30), publisher.wait_with_output())
        .await
        .expect("publisher exits at the end of the file")
        .unwrap();
    assert!(ok, "watch failed: {stderr}");
    assert!(
        publisher.status.success(),
        "publish failed: {}",
        String::from_utf8_lossy(&publisher.stderr)
    );
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    relay.shutdown().await;
    (ffprobe(clip), ffprobe(&out), summary)
}

fn assert_summary_keys(summary: &Value) {
    for key in [
        "objects",
        "groups",
        "bytes",
        "gaps",
        "ttff_ms",
        "groups_skipped",
        "stalls",
        "stall_ms_total",
    ] {
        assert!(summary[key].is_number(), "summary key {key}: {summary}");
    }
    for distribution in ["latency_ms", "behind_live_ms"] {
        for key in ["p50", "p90", "p99", "max"] {
            assert!(
                summary[distribution][key].is_number(),
                "{distribution}.{key}: {summary}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_and_opus_clip_arrives_frame_for_frame() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("h264.mp4");
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "2",
            "-c:v",
            "libx264",
            "-tune",
            "zerolatency",
            "-g",
            "30",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "libopus",
            "-b:a",
            "48k",
            "-f",
            "mp4",
            "-movflags",
            FRAG,
        ],
        &clip,
    );
    let (source, watched, summary) = through_relay(&clip, "e2e/h264", Via::WebSocket).await;
    assert_eq!(source.len(), 2);
    assert_eq!(source[0], ("h264".to_string(), 60));
    assert_eq!(
        watched, source,
        "same codecs and frame counts after the relay: {summary}"
    );
    assert_summary_keys(&summary);
    assert_eq!(summary["gaps"], 0);
    assert_eq!(
        summary["groups_skipped"], 0,
        "nothing to skip on loopback: {summary}"
    );
    assert_eq!(summary["tracks"]["video"]["objects"], 60);
    assert_eq!(summary["tracks"]["video"]["groups"], 2, "one group per GOP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn av1_clip_arrives_frame_for_frame() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("av1.mp4");
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=30",
            "-t",
            "2",
            "-c:v",
            "libaom-av1",
            "-usage",
            "realtime",
            "-cpu-used",
            "8",
            "-g",
            "30",
            "-pix_fmt",
            "yuv420p",
            "-f",
            "mp4",
            "-movflags",
            &format!("{FRAG}+delay_moov"),
        ],
        &clip,
    );
    let (source, watched, summary) = through_relay(&clip, "e2e/av1", Via::Quic).await;
    assert_eq!(source, vec![("av1".to_string(), 60)]);
    assert_eq!(watched, source);
    assert_eq!(summary["objects"], 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_fails_clearly() {
    let certs = certs();
    let relay = relay(&certs, "127.0.0.1:0", "127.0.0.1:0").await;
    let url = relay.url();
    let dir = tempfile::tempdir().unwrap();

    // Not MP4 on stdin.
    let mut c = command(
        PUBLISH,
        &[&url, "--broadcast", "bad/stdin", "--tls-hash", &certs.hash],
    );
    c.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"this is not a video\n").await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("not an MP4 stream"), "{err}");

    // Truncated file.
    let clip = dir.path().join("clip.mp4");
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x64:rate=10",
            "-t",
            "1",
            "-c:v",
            "libx264",
            "-f",
            "mp4",
            "-movflags",
            FRAG,
        ],
        &clip,
    );
    let data = std::fs::read(&clip).unwrap();
    let truncated = dir.path().join("truncated.mp4");
    std::fs::write(&truncated, &data[..data.len() - 50]).unwrap();
    let (ok, _, err) = run(
        command(
            PUBLISH,
            &[
                &url,
                "--broadcast",
                "bad/trunc",
                "-i",
                truncated.to_str().unwrap(),
                "--tls-hash",
                &certs.hash,
            ],
        ),
        30,
    )
    .await;
    assert!(!ok);
    assert!(err.contains("truncated MP4"), "{err}");

    // Unsupported codec (MPEG-4 Part 2).
    let mpeg4 = dir.path().join("mpeg4.mp4");
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x64:rate=10",
            "-t",
            "1",
            "-c:v",
            "mpeg4",
            "-f",
            "mp4",
            "-movflags",
            FRAG,
        ],
        &mpeg4,
    );
    let (ok, _, err) = run(
        command(
            PUBLISH,
            &[
                &url,
                "--broadcast",
                "bad/codec",
                "-i",
                mpeg4.to_str().unwrap(),
                "--tls-hash",
                &certs.hash,
            ],
        ),
        30,
    )
    .await;
    assert!(!ok);
    assert!(err.contains("unsupported codec"), "{err}");
    relay.shutdown().await;

    // Nobody listening: both binaries give up after the connect timeout.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = format!("moqt://localhost:{}", socket.local_addr().unwrap().port());
    drop(socket);
    for bin in [PUBLISH, WATCH] {
        let mut args = vec![
            dead.as_str(),
            "--broadcast",
            "x",
            "--tls-hash",
            &certs.hash,
            "--connect-timeout",
            "2s",
        ];
        if bin == PUBLISH {
            args.push("--synthetic");
        }
        let (ok, _, err) = run(command(bin, &args), 30).await;
        assert!(!ok, "{bin} must fail");
        assert!(err.contains("connecting to"), "{bin}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_survives_a_relay_restart() {
    restart_case(Via::Quic, "e2e/restart").await;
}

/// The same with the watcher on WebSocket: GOAWAY moves it like a QUIC viewer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_watcher_follows_a_relay_restart() {
    restart_case(Via::WebSocket, "e2e/restart-ws").await;
}

async fn restart_case(via: Via, broadcast: &str) {
    let certs = certs();
    let first = relay(&certs, "127.0.0.1:0", "127.0.0.1:0").await;
    let port = first.addr.port();
    let ws_port = first.ws.port();
    let url = first.url();
    let watch_url = first.url_via(via);
    let dir = tempfile::tempdir().unwrap();
    let summary_path = dir.path().join("summary.json");

    let mut publisher = command(
        PUBLISH,
        &[
            &url,
            "--broadcast",
            broadcast,
            "--synthetic",
            "--fps",
            "50",
            "--gop",
            "5",
            "--bitrate",
            "400k",
            "--tls-hash",
            &certs.hash,
        ],
    );
    publisher
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut publisher: Child = publisher.spawn().unwrap();
    let mut watch = command(
        WATCH,
        &[
            &watch_url,
            "--broadcast",
            broadcast,
            "--duration",
            "8s",
            "--summary",
            summary_path.to_str().unwrap(),
            "--tls-hash",
            &certs.hash,
        ],
    );
    watch
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut watcher = watch.spawn().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let mut lines = BufReader::new(watcher.stderr.take().unwrap()).lines();
    let sink = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let mut l = sink.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });

    // Wait (bounded) until media is flowing, then restart the relay on the same port.
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if log
                .lock()
                .unwrap()
                .lines()
                .any(|l| l.starts_with("watch: objects") && !l.starts_with("watch: objects 0 "))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the watcher receives objects");
    first.shutdown().await;
    let second = relay(
        &certs,
        &format!("127.0.0.1:{port}"),
        &format!("127.0.0.1:{ws_port}"),
    )
    .await;

    let out = tokio::time::timeout(Duration::from_secs(30), watcher.wait_with_output())
        .await
        .expect("the watcher stops after --duration")
        .unwrap();
    assert!(out.status.success(), "watch: {}", log.lock().unwrap());
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(&summary_path).unwrap()).unwrap();
    let stdout_summary: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(summary, stdout_summary, "--summary and stdout agree");
    assert_eq!(summary["reconnects"], 1, "{summary}");
    assert_eq!(summary["gaps"], 1, "exactly one gap: {summary}");
    // The groups the outage cost were not played: each is a skipped group.
    let missing = summary["missing_groups"].as_u64().unwrap();
    assert!(missing >= 1, "{summary}");
    assert!(
        summary["groups_skipped"].as_u64().unwrap() >= missing,
        "{summary}"
    );
    // 8 s at 50 fps is 400 frames; well over half must have arrived around the outage.
    assert!(summary["objects"].as_u64().unwrap() > 200, "{summary}");
    assert!(
        log.lock().unwrap().contains("reconnecting"),
        "{}",
        log.lock().unwrap()
    );

    // The publisher is still running, connected to the new relay.
    assert!(publisher.try_wait().unwrap().is_none(), "publisher still running");
    publisher.start_kill().unwrap();
    let _ = publisher.wait().await;
    second.shutdown().await;
}

/// `kill` (SIGTERM, what service managers send) ends a live publisher cleanly: it ends the
/// broadcast, so a watcher without `--duration` sees the end of the tracks and exits by itself
/// with every group it was sent, and the publisher exits 0. A watcher sent SIGTERM stops with
/// its summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_broadcast_cleanly() {
    let certs = certs();
    let relay = relay(&certs, "127.0.0.1:0", "127.0.0.1:0").await;
    let url = relay.url();
    let mut publisher = command(
        PUBLISH,
        &[
            &url,
            "--broadcast",
            "e2e/term",
            "--synthetic",
            "--bitrate",
            "300k",
        ],
    );
    publisher
        .args(["--tls-hash", &certs.hash])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut publisher: Child = publisher.spawn().unwrap();
    let mut publisher_log = BufReader::new(publisher.stderr.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = publisher_log.next_line().await.unwrap() {
            if line.starts_with("publish: connected") {
                return;
            }
        }
        panic!("publisher exited before connecting");
    })
    .await
    .expect("the publisher connects");
    let mut watch = command(
        WATCH,
        &[&url, "--broadcast", "e2e/term", "--tls-hash", &certs.hash],
    );
    watch
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let watcher = watch.spawn().unwrap();
    let mut stopped_watch = command(
        WATCH,
        &[&url, "--broadcast", "e2e/term", "--tls-hash", &certs.hash],
    );
    stopped_watch
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let stopped_watcher = stopped_watch.spawn().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A watcher told to stop (SIGTERM) stops and still prints its summary.
    terminate(&stopped_watcher);
    let out = tokio::time::timeout(Duration::from_secs(10), stopped_watcher.wait_with_output())
        .await
        .expect("the watcher exits after SIGTERM")
        .unwrap();
    assert!(out.status.success(), "watcher exit status {}", out.status);
    let summary: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert!(summary["objects"].as_u64().unwrap() > 0, "{summary}");

    terminate(&publisher);
    let mut rest = String::new();
    let status = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = publisher_log.next_line().await.unwrap() {
            rest.push_str(&line);
            rest.push('\n');
        }
        publisher.wait().await.unwrap()
    })
    .await
    .expect("the publisher exits after SIGTERM");
    assert!(status.success(), "publisher exit status {status}: {rest}");
    assert!(rest.contains("broadcast complete"), "{rest}");

    // The watcher has no --duration: it stops only because the broadcast ended.
    let out = tokio::time::timeout(Duration::from_secs(10), watcher.wait_with_output())
        .await
        .expect("the watcher sees the broadcast end and exits")
        .unwrap();
    assert!(out.status.success());
    let summary: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(
        (summary["gaps"].as_u64(), summary["reconnects"].as_u64()),
        (Some(0), Some(0)),
        "{summary}"
    );
    assert!(summary["objects"].as_u64().unwrap() >= 30, "{summary}");
    relay.shutdown().await;
}

/// Send SIGTERM to `child`.
fn terminate(child: &Child) {
    let pid = child.id().expect("still running").to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success(), "kill -TERM {pid}");
}
