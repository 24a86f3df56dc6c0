//! Shared by the ingest tests: the built binaries, relay and gateway processes, ffmpeg pushes,
//! banyan-watch runs and ffprobe counts.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use banyan_tests::media_tools::ffprobe_frames;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const INGEST: &str = env!("CARGO_BIN_EXE_banyan-ingest");

/// Another workspace binary, next to this test's own in the same profile directory. Tests do
/// not build it (that would change feature unification): `cargo test --workspace` builds every
/// workspace binary first.
pub fn workspace_binary(bin: &str) -> PathBuf {
    let ingest = PathBuf::from(INGEST);
    let path = ingest
        .parent()
        .expect("the banyan-ingest binary has a directory")
        .join(format!("{bin}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: run `cargo test --workspace --no-run` (or `cargo test --workspace`) first so every workspace binary is built",
        path.display()
    );
    path
}

/// Fail clearly when a tool the test needs is missing.
pub fn require_tool(tool: &str) {
    let found = std::process::Command::new(tool)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{tool} must be installed (scripts/test installs it; apt-get install ffmpeg)"
    );
}

/// A child process whose stdout lines are read for `listening:`-style announcements; the rest
/// of its output is drained in the background (and echoed to stderr for failures).
pub struct Proc {
    pub child: Child,
    pub lines: Vec<String>,
}

/// Spawn `bin args` and read stdout until `count` lines starting with `prefix` were seen.
pub async fn spawn_until(bin: &Path, args: &[&str], prefix: &str, count: usize, name: &'static str) -> Proc {
    let mut child = Command::new(bin)
        .args(args)
        .env_remove("BANYAN_TOKEN")
        .env_remove("BANYAN_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
    let stderr = child.stderr.take().unwrap();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("[{name}] {line}");
        }
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut lines = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        let mut seen = 0;
        while let Ok(Some(line)) = stdout.next_line().await {
            if line.starts_with(prefix) {
                seen += 1;
            }
            lines.push(line);
            if seen >= count {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "{name} did not print {prefix:?}: {lines:?}"
    );
    tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
    Proc { child, lines }
}

/// A relay process (dev certificate, no auth): its UDP address and certificate hash.
pub struct Relay {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub hash: String,
}

pub async fn relay(upstream: Option<&Relay>, name: &'static str) -> Relay {
    relay_with(upstream, name, &["--insecure-no-auth"]).await
}

/// A relay process with `auth` flags (`--insecure-no-auth`, or `--auth-key FILE`).
pub async fn relay_with(upstream: Option<&Relay>, name: &'static str, auth: &[&str]) -> Relay {
    let bin = workspace_binary("banyan-relay");
    // Distinct relay ids: the default (host:port) is the same for two `:0` listeners, which
    // the tree's loop check would take for one relay.
    let mut args = vec![
        "--relay-id",
        name,
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
        "--dev-cert",
        "--drain-timeout",
        "1s",
    ];
    args.extend_from_slice(auth);
    let up;
    if let Some(u) = upstream {
        up = format!("moqt://127.0.0.1:{}", u.addr.port());
        args.extend(["--upstream", &up, "--upstream-insecure"]);
    }
    let proc = spawn_until(&bin, &args, "listening: udp", 1, name).await;
    let hash = proc
        .lines
        .iter()
        .find_map(|l| l.strip_prefix("certificate sha256: "))
        .expect("certificate line")
        .trim()
        .to_string();
    let addr = proc
        .lines
        .iter()
        .find_map(|l| l.strip_prefix("listening: udp "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("udp address")
        .parse()
        .unwrap();
    Relay { proc, addr, hash }
}

impl Relay {
    pub fn url(&self) -> String {
        format!("moqt://127.0.0.1:{}", self.addr.port())
    }
}

/// A gateway process publishing into `relay`: its RTMP, SRT (with `--srt-listen`) and HTTP
/// addresses.
pub struct Gateway {
    pub proc: Proc,
    pub rtmp: SocketAddr,
    pub srt: Option<SocketAddr>,
    pub http: SocketAddr,
    _dir: tempfile::TempDir,
}

/// Start `banyan-ingest` with a `[keys]` table (`keys`: TOML) and extra flags.
pub async fn gateway(relay: &Relay, keys: &str, extra: &[&str]) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("keys.toml");
    std::fs::write(&keys_file, keys).unwrap();
    let url = relay.url();
    let mut args = vec![
        "--relay",
        &url,
        "--tls-hash",
        &relay.hash,
        "--rtmp-listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
        "--keys",
        keys_file.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let lines = if extra.contains(&"--srt-listen") { 3 } else { 2 };
    let proc = spawn_until(Path::new(INGEST), &args, "listening:", lines, "ingest").await;
    let addr = |kind: &str| -> Option<SocketAddr> {
        proc.lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("listening: {kind} ")))
            .map(|a| a.trim().parse().unwrap())
    };
    Gateway {
        rtmp: addr("rtmp").unwrap(),
        srt: addr("srt"),
        http: addr("http").unwrap(),
        proc,
        _dir: dir,
    }
}

impl Gateway {
    pub fn rtmp_url(&self, key: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{key}", self.rtmp.port())
    }

    /// The SRT URL an encoder calls with `key` as its streamid and SRT latency `latency_ms`
    /// (ffmpeg's `latency` is in microseconds).
    pub fn srt_url(&self, key: &str, latency_ms: u32) -> String {
        let port = self
            .srt
            .expect("the gateway was started with --srt-listen")
            .port();
        format!(
            "srt://127.0.0.1:{port}?streamid={key}&latency={}",
            latency_ms * 1000
        )
    }

    /// Wait (up to `secs`) until metric `name` reaches `at_least`; its value then.
    pub async fn metric_reaches(&self, name: &str, at_least: f64, secs: u64) -> f64 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let value = self.metric(name).await;
            if value >= at_least || tokio::time::Instant::now() > deadline {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One metric's value (summed over labels) from /metrics.
    pub async fn metric(&self, name: &str) -> f64 {
        let body = http_get(self.http, "/metrics").await;
        body.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Resident memory of the gateway process, KiB.
    pub fn rss_kib(&self) -> u64 {
        let pid = self.proc.child.id().unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    }

    /// SIGTERM, and the exit status within `secs`.
    pub async fn terminate(mut self, secs: u64) -> std::process::ExitStatus {
        let pid = self.proc.child.id().unwrap();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(secs), self.proc.child.wait())
            .await
            .expect("the gateway exits after SIGTERM")
            .unwrap()
    }
}

/// After an encoder reconnect: the second encoder ends well, the watcher ends with no reconnect
/// and at most one gap, the gateway counts one encoder reconnect and one broadcast, and ffprobe
/// decodes what the watcher wrote. Prints the figures.
pub async fn check_resumed(gateway: &Gateway, watcher: Child, second: Child, out: &Path, what: &str) {
    let summary = watch_summary(watcher, 40).await;
    ffmpeg_done(second, "the resuming").await;
    println!(
        "{what}: watcher reconnects {}, gaps {}, groups skipped {}, longest stall {} ms",
        summary["reconnects"], summary["gaps"], summary["groups_skipped"], summary["longest_stall_ms"]
    );
    assert_eq!(summary["reconnects"], 0, "{summary}");
    assert!(summary["gaps"].as_u64().unwrap() <= 1, "{summary}");
    // The bound: the broadcast resumes within 2 s of the encoder dropping (measured
    // 0.3 s over RTMP, 1.2 s over SRT on loopback: ffmpeg's restart, SRT's handshake and latency
    // window, the first complete frame).
    let stall = summary["longest_stall_ms"].as_f64().unwrap();
    assert!(stall < 2000.0, "viewers stalled {stall} ms: {summary}");
    assert_eq!(gateway.metric("banyan_ingest_reconnects_total").await, 1.0);
    assert_eq!(
        gateway.metric("banyan_ingest_streams_total").await,
        1.0,
        "the same broadcast"
    );
    check_decoded(out, &summary, &format!("{what}: encoder"));
}

/// A plain HTTP/1.0 GET on loopback; the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// ffmpeg pushing a test pattern (H.264 + AAC, 30 fps, a keyframe a second) of `secs` seconds
/// (None: until killed) in real time to `url` as `format` (`flv` or `mpegts`).
pub fn ffmpeg_push(url: &str, secs: Option<u32>, format: &str) -> Child {
    ffmpeg_push_audio(url, secs, format, "aac")
}

/// [`ffmpeg_push`] with another audio encoder (e.g. `libmp3lame`).
pub fn ffmpeg_push_audio(url: &str, secs: Option<u32>, format: &str, audio: &str) -> Child {
    let mut args: Vec<String> = [
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=640x360:rate=30",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(secs) = secs {
        args.extend(["-t".into(), secs.to_string()]);
    }
    args.extend(
        [
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-g",
            "30",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            audio,
            "-b:a",
            "96k",
            "-f",
            format,
            url,
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    Command::new("ffmpeg")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg must be installed (scripts/test installs it; apt-get install ffmpeg)")
}

/// Wait for an ffmpeg push to end by itself, and check that it succeeded.
pub async fn ffmpeg_done(ffmpeg: Child, what: &str) {
    let out = ffmpeg.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{what} ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Start `banyan-watch` on `relay` for `broadcast`, writing fMP4 to `out` and its JSON summary
/// to stdout.
pub fn watch(relay: &Relay, broadcast: &str, out: &Path) -> Child {
    watch_with(relay, broadcast, out, None)
}

/// [`watch`] presenting `token`.
pub fn watch_with(relay: &Relay, broadcast: &str, out: &Path, token: Option<&str>) -> Child {
    let mut command = Command::new(workspace_binary("banyan-watch"));
    if let Some(token) = token {
        command.args(["--token", token]);
    }
    command
        .args([
            &relay.url(),
            "--broadcast",
            broadcast,
            "--output",
            out.to_str().unwrap(),
            "--tls-hash",
            &relay.hash,
            "--rendezvous",
            "20s",
        ])
        .env_remove("BANYAN_TOKEN")
        .env_remove("BANYAN_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Wait (at most `secs`) for a watcher to end by itself; its JSON summary.
pub async fn watch_summary(child: Child, secs: u64) -> Value {
    let out = tokio::time::timeout(Duration::from_secs(secs), child.wait_with_output())
        .await
        .expect("banyan-watch ends when the broadcast does")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "banyan-watch failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().expect("a summary line"))
        .unwrap_or_else(|e| panic!("summary: {e}: {stdout}"))
}

/// Check what a watcher wrote: ffprobe decodes ≥ 95 % of the video objects it received, and
/// AAC audio is there. Prints the figures and the latency; returns the video frames decoded.
pub fn check_decoded(out: &Path, summary: &Value, what: &str) -> u64 {
    check_decoded_with(out, summary, what, "aac").0
}

/// [`check_decoded`] for audio in `audio_codec` (ffprobe's codec name); returns the video and
/// audio frames decoded.
pub fn check_decoded_with(out: &Path, summary: &Value, what: &str, audio_codec: &str) -> (u64, u64) {
    let received = summary["tracks"]["video"]["objects"]
        .as_u64()
        .expect("a video track");
    let probed = ffprobe_frames(out);
    let frames = |codec: &str| {
        probed
            .iter()
            .find(|(c, _)| c == codec)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    };
    let (video, audio) = (frames("h264"), frames(audio_codec));
    let latency = &summary["latency_ms"];
    println!(
        "{what}: video objects received {received}, decoded by ffprobe {video} ({:.1} %), {audio_codec} frames {audio}; \
         capture-to-watch latency ms p50 {} p90 {} p99 {} max {}",
        100.0 * video as f64 / received.max(1) as f64,
        latency["p50"], latency["p90"], latency["p99"], latency["max"]
    );
    assert!(received > 0, "{what}: no video received: {summary}");
    assert!(
        video * 100 >= received * 95,
        "{what}: ffprobe decoded {video} of {received} video frames"
    );
    assert!(audio > 0, "{what}: no {audio_codec} decoded: {probed:?}");
    (video, audio)
}
