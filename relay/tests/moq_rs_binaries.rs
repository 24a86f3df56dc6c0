//! Proves the banyan-relay binary interoperates with cloudflare/moq-rs's own tools as separate
//! processes: `moq-clock-ietf --publish` publishes a clock through the relay (over raw QUIC,
//! WebTransport, or datagrams) and `moq-clock-ietf` subscribers on both transports print
//! well-formed, advancing clock lines that came through it. `moq-pub` publishes an H.264
//! fragmented-MP4 clip (made with ffmpeg) through the relay and `moq-sub` writes what it receives
//! back out as fMP4, which must be the published fragments byte for byte and decode (ffprobe).
//!
//! The peers come from `scripts/install-peers` (target/peers/bin); ffmpeg and ffprobe from the
//! system (`.ci/run` installs them). When one is missing the test prints why and returns early.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the relay may take to print its address (it mints a certificate first).
const RELAY_START: Duration = Duration::from_secs(30);

/// How long a subscriber may take to print its lines: the publisher connects, the relay's
/// SUBSCRIBE for a namespace not yet published waits for it, then one line a second.
const CLOCK_LINES_WITHIN: Duration = Duration::from_secs(40);

/// Clock lines each subscriber must print (one per second).
const LINES: usize = 4;

/// The transports moq-native-ietf chooses by URL scheme.
#[derive(Clone, Copy, Debug)]
enum Transport {
    /// `moqt://`: raw QUIC, ALPN `moqt-18`.
    Quic,
    /// `https://`: WebTransport over HTTP/3.
    WebTransport,
}

#[test]
fn clock_published_over_quic_reaches_subscribers_on_both_transports() {
    clock_case(Transport::Quic, &[], &[Transport::Quic, Transport::WebTransport]);
}

#[test]
fn clock_published_over_webtransport_reaches_subscribers_on_both_transports() {
    clock_case(
        Transport::WebTransport,
        &[],
        &[Transport::Quic, Transport::WebTransport],
    );
}

#[test]
fn clock_published_as_datagrams_reaches_subscribers_on_both_transports() {
    clock_case(
        Transport::Quic,
        &["--datagrams"],
        &[Transport::Quic, Transport::WebTransport],
    );
}

/// Start the relay, a clock publisher over `publisher` (with `publisher_flags`), and one clock
/// subscriber per entry of `subscribers`; each must print [`LINES`] clock lines.
fn clock_case(publisher: Transport, publisher_flags: &[&str], subscribers: &[Transport]) {
    let clock = peer("moq-clock-ietf");
    let relay = Relay::start();
    let mut args = vec![
        relay.url(publisher),
        "--publish".into(),
        "--tls-disable-verify".into(),
    ];
    args.extend(publisher_flags.iter().map(|f| f.to_string()));
    // moq-clock's SUBSCRIBE carries no RENDEZVOUS_TIMEOUT: one arriving before the namespace
    // is published is refused at once (draft-18), so subscribers start once it is.
    let _publishing = Process::spawn("clock publisher", &clock, &args, false);
    relay.wait_log("namespace published", CLOCK_LINES_WITHIN);
    let subscribing: Vec<Process> = subscribers
        .iter()
        .map(|&transport| {
            let args = [relay.url(transport), "--tls-disable-verify".into()];
            Process::spawn(&format!("clock subscriber ({transport:?})"), &clock, &args, true)
        })
        .collect();
    for subscriber in subscribing {
        let lines = subscriber.lines(LINES, CLOCK_LINES_WITHIN);
        assert_clock(&subscriber.name, &lines);
        println!("{}: {lines:?}", subscriber.name);
    }
}

/// Every line is a `YYYY-MM-DD HH:MM:SS` time, and each is later than the one before (the
/// fixed-width format orders like the times it spells).
fn assert_clock(who: &str, lines: &[String]) {
    for line in lines {
        let well_formed = line.len() == 19
            && line.char_indices().all(|(i, c)| match i {
                4 | 7 => c == '-',
                10 => c == ' ',
                13 | 16 => c == ':',
                _ => c.is_ascii_digit(),
            });
        assert!(
            well_formed,
            "{who} printed a malformed clock line {line:?} in {lines:?}"
        );
    }
    for pair in lines.windows(2) {
        assert!(pair[0] < pair[1], "{who}: the clock does not advance: {lines:?}");
    }
}

/// Frames per second and frames per group (GOP) of the test clip.
const FPS: u32 = 30;
const GOP: u32 = 30;
/// Clip length in seconds: published in real time, so this is also how long publishing takes.
const CLIP_SECONDS: u32 = 4;

/// How long the subscriber may take to receive the init segment once it is published (its
/// SUBSCRIBE waits at the relay for the namespace), and the last fragment once it is published.
const MEDIA_WITHIN: Duration = Duration::from_secs(30);

/// How long ffmpeg may take to encode the clip, and ffprobe to decode it.
const FFMPEG_WITHIN: Duration = Duration::from_secs(60);

/// `moq-pub` publishes an H.264 fMP4 clip (one frame per fragment, a keyframe every [`GOP`]
/// frames) through the relay, paced in real time as a live source; `moq-sub` subscribes through
/// the relay before anything is published and writes what it receives to stdout. Its output must
/// be the clip's init segment followed by a run of the clip's fragments, byte for byte, that
/// ends with the last one (live join: it may start after the first), and ffprobe must decode it.
#[test]
fn moq_pub_to_moq_sub_through_banyan_relay() {
    let started = Instant::now();
    let (ffmpeg, ffprobe) = (system_tool("ffmpeg"), system_tool("ffprobe"));
    let (moq_pub, moq_sub) = (peer("moq-pub"), peer("moq-sub"));
    let dir = TempDir::new("media");
    let clip_path = dir.0.join("clip.mp4");
    // moq-pub's documented input: fragmented MP4, empty moov, a moof+mdat per frame.
    let clip_arg = clip_path.to_str().unwrap();
    let encode = format!(
        "-hide_banner -v error -nostdin -y -f lavfi -i testsrc=size=320x240:rate={FPS} \
         -t {CLIP_SECONDS} -c:v libx264 -preset ultrafast -g {GOP} -keyint_min {GOP} \
         -sc_threshold 0 -pix_fmt yuv420p -an -f mp4 \
         -movflags empty_moov+frag_every_frame+separate_moof+omit_tfhd_offset"
    );
    let mut args: Vec<&str> = encode.split_whitespace().collect();
    args.push(clip_arg);
    run_bounded(&ffmpeg, &args, FFMPEG_WITHIN);
    let (init, fragments) = split_fmp4(&std::fs::read(&clip_path).expect("the clip"));
    // The clip as published (see `ends_in_newline`), probed as such.
    std::fs::write(&clip_path, [init.clone(), fragments.concat()].concat()).unwrap();
    let published_frames = count_frames(&ffprobe, &clip_path).0;
    assert_eq!(
        fragments.len(),
        published_frames,
        "one fragment per frame in the clip"
    );

    let relay = Relay::start();
    let url = relay.url(Transport::Quic);
    let name = "banyan/media".to_string();
    let mut publisher = Process::spawn_piped(
        "moq-pub",
        &moq_pub,
        &[
            url.clone(),
            "--name".into(),
            name.clone(),
            "--tls-disable-verify".into(),
        ],
        true,
    );
    // Held open until the end: moq-pub spins on EOF (its README: "never stop sending it media").
    let mut input = publisher.child.stdin.take().unwrap();
    // The init segment first; the media starts once the subscriber has it, so its SUBSCRIBE for
    // the video track (sent when the init segment arrives) races only the first frames.
    input.write_all(&init).unwrap();
    input.flush().unwrap();
    // moq-sub's SUBSCRIBEs carry no RENDEZVOUS_TIMEOUT: it starts once the namespace is
    // published, or the relay would refuse them at once (draft-18).
    relay.wait_log("namespace published", MEDIA_WITHIN);
    let mut subscriber = Process::spawn_piped(
        "moq-sub",
        &moq_sub,
        &[url, "--name".into(), name, "--tls-disable-verify".into()],
        false,
    );
    let received = ByteSink::start(subscriber.child.stdout.take().unwrap());
    if !received.wait_for(|bytes| bytes.len() >= init.len(), MEDIA_WITHIN) {
        panic!(
            "moq-sub received {} bytes, not the {}-byte init segment, within {MEDIA_WITHIN:?}\n{}{}",
            received.len(),
            init.len(),
            subscriber.stderr(),
            publisher.stderr()
        );
    }
    let interval = Duration::from_secs(1) / FPS;
    let media_start = Instant::now();
    for (i, fragment) in fragments.iter().enumerate() {
        let due = media_start + interval * i as u32;
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        input.write_all(fragment).unwrap();
        input.flush().unwrap();
    }
    let last = fragments.last().unwrap();
    if !received.wait_for(|bytes| bytes.ends_with(last), MEDIA_WITHIN) {
        panic!(
            "moq-sub did not receive the last fragment within {MEDIA_WITHIN:?} ({} bytes)\n{}{}",
            received.len(),
            subscriber.stderr(),
            publisher.stderr()
        );
    }
    let output = received.bytes();
    drop(input);
    drop(publisher);
    drop(subscriber);

    // Byte for byte: the init segment, then published fragments `first..` in order.
    assert!(
        output.starts_with(&init),
        "moq-sub's output does not start with the clip's init segment (ftyp+moov)"
    );
    let media = &output[init.len()..];
    let first = (0..fragments.len())
        .find(|&k| {
            let tail: Vec<u8> = fragments[k..].concat();
            tail == media
        })
        .unwrap_or_else(|| {
            panic!(
                "moq-sub's media ({} bytes) is not a run of the published fragments ending with the last",
                media.len()
            )
        });

    let output_path = dir.0.join("received.mp4");
    std::fs::write(&output_path, &output).unwrap();
    let (received_frames, probe) = count_frames(&ffprobe, &output_path);
    println!(
        "moq-pub published {published_frames} frames ({} groups of {GOP}); moq-sub received \
         fragments {first}..{published_frames} ({} bytes), ffprobe decoded {received_frames} \
         frames [{probe}]; {:?} in all",
        published_frames.div_ceil(GOP as usize),
        output.len(),
        started.elapsed()
    );
    assert!(received_frames > 0, "ffprobe decoded no frames");
    assert_eq!(
        received_frames,
        published_frames - first,
        "ffprobe decodes every fragment moq-sub received"
    );
    // Live join: the video SUBSCRIBE goes out as soon as the init segment arrives, before the
    // first frame is published; allow it to miss at most the first group on a slow machine.
    assert!(
        first <= GOP as usize,
        "moq-sub joined at fragment {first}, after the first group of {GOP}"
    );
}

/// The init segment (everything before the first `moof`) and each `moof`+`mdat` pair, of a
/// fragmented MP4 file, each ending in a newline byte ([`ends_in_newline`]); boxes after the
/// last pair (e.g. `mfra`) are left out.
fn split_fmp4(file: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut boxes = Vec::new();
    let mut at = 0;
    while at + 8 <= file.len() {
        let size = u32::from_be_bytes(file[at..at + 4].try_into().unwrap()) as usize;
        assert!(size >= 8 && at + size <= file.len(), "box of size {size} at {at}");
        boxes.push((&file[at + 4..at + 8], &file[at..at + size]));
        at += size;
    }
    let first_moof = boxes
        .iter()
        .position(|(kind, _)| kind == b"moof")
        .expect("a fragmented MP4");
    let init = boxes[..first_moof]
        .iter()
        .flat_map(|&(kind, b)| {
            if kind == b"moov" {
                ends_in_newline(b)
            } else {
                b.to_vec()
            }
        })
        .collect();
    let fragments = boxes[first_moof..]
        .windows(2)
        .filter(|w| w[0].0 == b"moof" && w[1].0 == b"mdat")
        .map(|w| [w[0].1.to_vec(), ends_in_newline(w[1].1)].concat())
        .collect();
    (init, fragments)
}

/// `moov` or `mdat` made to end in a newline byte that players ignore: a `free` box as the last
/// child of `moov`, one unreferenced byte at the end of `mdat`.
///
/// Why: moq-sub 0.5.0 writes live media to a tokio `Stdout`, which wraps std's line-buffered
/// stdout, and never flushes it, so whatever follows the last newline byte it has written stays
/// in its buffer (its init segment showed up cut off after its last 0x0a). With each object
/// ending in a newline, everything it receives reaches us as it arrives.
fn ends_in_newline(mp4_box: &[u8]) -> Vec<u8> {
    let padding: &[u8] = match &mp4_box[4..8] {
        b"moov" => b"\0\0\0\x09free\n",
        b"mdat" => b"\n",
        other => panic!("no padding for {other:?}"),
    };
    let size = u32::from_be_bytes(mp4_box[..4].try_into().unwrap());
    assert!(size >= 8, "a 32-bit box size");
    let size = size + padding.len() as u32;
    [&size.to_be_bytes()[..], &mp4_box[4..], padding].concat()
}

/// The video frames ffprobe decodes in `file`, and what it said about the stream.
fn count_frames(ffprobe: &Path, file: &Path) -> (usize, String) {
    let out = run_bounded(
        ffprobe,
        &[
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
            "-of",
            "default=noprint_wrappers=1",
            file.to_str().unwrap(),
        ],
        FFMPEG_WITHIN,
    );
    let frames = out
        .lines()
        .find_map(|l| l.strip_prefix("nb_read_frames="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("ffprobe printed no frame count for {}: {out}", file.display()));
    (frames, out.lines().collect::<Vec<_>>().join(" "))
}

/// Run `program` to completion within `within` (killed otherwise); its stdout. Panics, with
/// its stderr, unless it succeeds without printing errors (both run with `-v error`).
fn run_bounded(program: &Path, args: &[&str], within: Duration) -> String {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
    let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let read = |mut from: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = from.read_to_string(&mut s);
            s
        })
    };
    let (stdout, stderr) = (read(Box::new(stdout)), read(Box::new(stderr)));
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} {args:?} did not finish within {within:?}", program.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(
        status.success() && stderr.trim().is_empty(),
        "{} {args:?}: {status}\n{stderr}",
        program.display()
    );
    stdout
}

/// Bytes a child writes to stdout, collected by a reader thread; tests wait on a condition.
struct ByteSink(std::sync::Arc<(std::sync::Mutex<Vec<u8>>, std::sync::Condvar)>);

impl ByteSink {
    fn start(mut from: impl Read + Send + 'static) -> Self {
        let shared = std::sync::Arc::new((std::sync::Mutex::new(Vec::new()), std::sync::Condvar::new()));
        let writer = shared.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64 * 1024];
            while let Ok(n @ 1..) = from.read(&mut buf) {
                writer.0.lock().unwrap().extend_from_slice(&buf[..n]);
                writer.1.notify_all();
            }
        });
        Self(shared)
    }

    /// Whether the bytes satisfy `ready` within `within`.
    fn wait_for(&self, ready: impl Fn(&[u8]) -> bool, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut bytes = self.0 .0.lock().unwrap();
        while !ready(&bytes) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            bytes = self.0 .1.wait_timeout(bytes, left).unwrap().0;
        }
        true
    }

    fn len(&self) -> usize {
        self.0 .0.lock().unwrap().len()
    }

    fn bytes(&self) -> Vec<u8> {
        self.0 .0.lock().unwrap().clone()
    }
}

/// A directory under the system temp directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "banyan-moq-rs-binaries-{what}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A system tool on `PATH`; the test fails, saying how to install it, when it is missing
/// (scripts/test installs it: these tests never skip).
fn system_tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not on PATH: apt-get install ffmpeg (scripts/test does)"))
}

/// The installed peer binary `name`: in `$BANYAN_PEERS_BIN`, then target/peers/bin (where
/// scripts/install-peers puts it), then on `PATH`. `None`, after saying so, when missing.
fn peer(name: &str) -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut dirs: Vec<PathBuf> = std::env::var_os("BANYAN_PEERS_BIN")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    dirs.push(workspace.join("target/peers/bin"));
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed (looked in $BANYAN_PEERS_BIN, target/peers/bin and PATH): \
                 run scripts/install-peers to install cloudflare/moq-rs's tools"
            )
        })
}

/// The banyan-relay binary on ephemeral ports, killed on drop.
struct Relay {
    port: u16,
    process: Process,
}

impl Relay {
    fn start() -> Self {
        let args = [
            "--dev-cert",
            "--insecure-no-auth",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--rendezvous-max",
            "30s",
        ]
        .map(String::from);
        let process = Process::spawn(
            "banyan-relay",
            Path::new(env!("CARGO_BIN_EXE_banyan-relay")),
            &args,
            true,
        );
        // `listening: udp ADDR http ADDR`, after `certificate sha256: HEX`.
        let deadline = Instant::now() + RELAY_START;
        let port = loop {
            let line = process.next_line(deadline).expect("the relay prints its address");
            if let Some(rest) = line.strip_prefix("listening: udp ") {
                let addr = rest.split_whitespace().next().expect("an address");
                let addr: std::net::SocketAddr = addr.parse().expect("a socket address");
                break addr.port();
            }
        };
        Self { port, process }
    }

    /// Wait (bounded) until the relay's log mentions `needle`, e.g. a namespace published.
    fn wait_log(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !std::fs::read_to_string(&self.process.log).is_ok_and(|log| log.contains(needle)) {
            assert!(
                Instant::now() < deadline,
                "the relay did not log {needle:?} within {within:?}\n{}",
                self.process.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn url(&self, transport: Transport) -> String {
        let scheme = match transport {
            Transport::Quic => "moqt",
            Transport::WebTransport => "https",
        };
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }
}

/// A child process, killed and reaped on drop. Its stdout lines (when captured) arrive on a
/// channel from a reader thread; its stderr is kept in a file named after it for failures.
struct Process {
    name: String,
    child: Child,
    lines: Option<mpsc::Receiver<String>>,
    log: PathBuf,
}

impl Process {
    fn spawn(name: &str, program: &Path, args: &[String], capture: bool) -> Self {
        let stdout = if capture { Stdio::piped() } else { Stdio::null() };
        let mut process = Self::start(name, program, args, Stdio::null(), stdout);
        process.lines = process.child.stdout.take().map(|stdout| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        });
        process
    }

    /// A process whose stdout (and, with `stdin`, stdin) the caller takes from `child`.
    fn spawn_piped(name: &str, program: &Path, args: &[String], stdin: bool) -> Self {
        let input = if stdin { Stdio::piped() } else { Stdio::null() };
        let output = if stdin { Stdio::null() } else { Stdio::piped() };
        Self::start(name, program, args, input, output)
    }

    fn start(name: &str, program: &Path, args: &[String], stdin: Stdio, stdout: Stdio) -> Self {
        // Tests run in parallel and share process names: number each log.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let log = std::env::temp_dir().join(format!(
            "banyan-moq-rs-binaries-{}-{}-{}.log",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            name.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        ));
        let stderr = std::fs::File::create(&log).expect("stderr log file");
        let child = Command::new(program)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(stdin)
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({}): {e}", program.display()));
        Self {
            name: name.to_string(),
            child,
            lines: None,
            log,
        }
    }

    /// Its stderr so far, headed by its name, for failure messages.
    fn stderr(&self) -> String {
        format!(
            "--- {} stderr ---\n{}\n",
            self.name,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }

    /// The next stdout line, or `None` at the deadline or when the process closes stdout.
    fn next_line(&self, deadline: Instant) -> Option<String> {
        let lines = self.lines.as_ref()?;
        lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .ok()
    }

    /// `n` stdout lines within `within`, or a panic showing what arrived and the stderr log.
    fn lines(&self, n: usize, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut lines = Vec::new();
        while lines.len() < n {
            match self.next_line(deadline) {
                Some(line) => lines.push(line),
                None => panic!(
                    "{} printed {} of {n} lines within {within:?}: {lines:?}\n--- its stderr ---\n{}",
                    self.name,
                    lines.len(),
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ),
            }
        }
        lines
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
