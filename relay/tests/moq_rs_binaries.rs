//! Proves the banyan-relay binary interoperates with cloudflare/moq-rs's own tools as separate
//! processes: `moq-clock-ietf --publish` publishes a clock through the relay (over raw QUIC,
//! WebTransport, or datagrams) and `moq-clock-ietf` subscribers on both transports print
//! well-formed, advancing clock lines that came through it.
//!
//! The peers come from `scripts/install-peers` (target/peers/bin). When they are not installed
//! each test prints why and returns early; CI installs them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader};
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
    let Some(clock) = peer("moq-clock-ietf") else {
        return;
    };
    let relay = Relay::start();
    let mut args = vec![
        relay.url(publisher),
        "--publish".into(),
        "--tls-disable-verify".into(),
    ];
    args.extend(publisher_flags.iter().map(|f| f.to_string()));
    // No readiness wait needed: a SUBSCRIBE that arrives before the namespace is published
    // waits for it at the relay (--namespace-wait).
    let _publishing = Process::spawn("clock publisher", &clock, &args, false);
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

/// The installed peer binary `name`: in `$BANYAN_PEERS_BIN`, then target/peers/bin (where
/// scripts/install-peers puts it), then on `PATH`. `None`, after saying so, when missing.
fn peer(name: &str) -> Option<PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut dirs: Vec<PathBuf> = std::env::var_os("BANYAN_PEERS_BIN")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    dirs.push(workspace.join("target/peers/bin"));
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    let found = dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file());
    if found.is_none() {
        println!(
            "SKIPPED: {name} is not installed (looked in $BANYAN_PEERS_BIN, target/peers/bin and PATH); \
             run scripts/install-peers to install cloudflare/moq-rs's tools"
        );
    }
    found
}

/// The banyan-relay binary on ephemeral ports, killed on drop.
struct Relay {
    port: u16,
    _process: Process,
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
            "--namespace-wait",
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
        Self {
            port,
            _process: process,
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
        // Tests run in parallel and share process names: number each log.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let log = std::env::temp_dir().join(format!(
            "banyan-moq-rs-binaries-{}-{}-{}.log",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            name.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        ));
        let stderr = std::fs::File::create(&log).expect("stderr log file");
        let mut child = Command::new(program)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(if capture { Stdio::piped() } else { Stdio::null() })
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({}): {e}", program.display()));
        let lines = child.stdout.take().map(|stdout| {
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
        Self {
            name: name.to_string(),
            child,
            lines,
            log,
        }
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
