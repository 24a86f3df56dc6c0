//! Proves the MoQ interop runner's 14 cases pass in both directions over raw QUIC and WebTransport: aiomoqt's client against the banyan-relay binary, and Banyan's client against banyan-relay, aiomoqt's relay and moq-relay-ietf (whose known deviations, by spec section, are asserted).
//!
//! Columns: aiomoqt's reference client (`moq-interop-client --draft 18`) → banyan-relay; Banyan's
//! client (`banyan_tests::interop`) → banyan-relay, → aiomoqt's stand-in relay
//! (`moq-interop-relay --dual`, both transports on one port) and → cloudflare's `moq-relay-ietf`
//! 0.8.0. A case listed in `MOQ_RELAY_IETF_DEVIATIONS` must fail (and every other must pass), so
//! the list cannot go stale silently; today it is empty: moq-relay-ietf passes all 14.
//!
//! The peers come from `scripts/install-peers` (aiomoqt's venv in target/peers/aiomoqt, or
//! `$BANYAN_AIOMOQT_BIN`; moq-relay-ietf in target/peers/bin, or `$BANYAN_PEERS_BIN`). A missing
//! peer fails the test with that instruction: nothing here is skipped.
//!
//! The whole matrix (case × transport × direction) is printed as a table, with each failure's
//! message, before anything is asserted. docs/interop.md holds a measured copy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use banyan_certs::{DevOptions, Identity};
use banyan_moq::session::TransportKind;
use banyan_tests::interop::{self, tap, Case, Config};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use common::process::{relay_command, start};

const TRANSPORTS: [TransportKind; 2] = [TransportKind::Quic, TransportKind::WebTransport];

/// How long a peer relay may take to answer its first SETUP.
const PEER_READY: Duration = Duration::from_secs(60);
/// How long one `moq-interop-client` run (a dozen cases) may take.
const CLIENT_RUN: Duration = Duration::from_secs(240);

/// A relay under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    Banyan,
    Aiomoqt,
    MoqRelayIetf,
}

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Peer::Banyan => "banyan-relay",
            Peer::Aiomoqt => "aiomoqt moq-interop-relay",
            Peer::MoqRelayIetf => "moq-relay-ietf 0.8.0",
        }
    }
}

/// Who plays the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    Aiomoqt,
    Banyan,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Aiomoqt => "aiomoqt client",
            Client::Banyan => "banyan client",
        }
    }
}

/// A case that moq-relay-ietf 0.8.0 fails, with the draft-18 section it departs from. The
/// test fails if one of these passes (update the list and docs/interop.md) as surely as when
/// any other case fails.
struct Deviation {
    case: Case,
    /// The transports it fails on.
    transports: &'static [TransportKind],
    /// The section of draft-ietf-moq-transport-18 and what it says.
    section: &'static str,
    /// What moq-relay-ietf does instead.
    observed: &'static str,
}

const MOQ_RELAY_IETF_DEVIATIONS: &[Deviation] = &[];

/// One cell of the matrix.
#[derive(Clone, Debug)]
struct Cell {
    client: Client,
    peer: Peer,
    transport: TransportKind,
    case: String,
    passed: bool,
    message: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interop_runner_matrix() {
    common::init_tracing();
    let client = aiomoqt_tool("moq-interop-client");
    let aiomoqt_relay = aiomoqt_tool("moq-interop-relay");
    let ietf_relay = peer_tool("moq-relay-ietf");
    let certs = Certs::mint();
    let started = Instant::now();

    let banyan = start(relay_command(&[
        "--dev-cert",
        "--insecure-no-auth",
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
    ]))
    .await;
    let banyan_port = banyan.udp.port();
    let aiomoqt = PeerProcess::aiomoqt_relay(&aiomoqt_relay, &certs);
    let ietf = PeerProcess::moq_relay_ietf(&ietf_relay, &certs);

    // The four columns run concurrently; each runs its cases one after another.
    let (a, b, c, d) = tokio::join!(
        aiomoqt_client_column(&client, banyan_port),
        banyan_client_column(Peer::Banyan, banyan_port),
        async {
            aiomoqt.ready().await;
            banyan_client_column(Peer::Aiomoqt, aiomoqt.port).await
        },
        async {
            ietf.ready().await;
            banyan_client_column(Peer::MoqRelayIetf, ietf.port).await
        },
    );
    let cells: Vec<Cell> = [a, b, c, d].into_iter().flatten().collect();
    println!("{}", table(&cells));
    println!("matrix measured in {:.1} s", started.elapsed().as_secs_f64());

    let mut wrong = Vec::new();
    for cell in &cells {
        let deviation = known_deviation(cell);
        match (cell.passed, deviation) {
            (false, None) => wrong.push(format!(
                "{} → {} over {}: {} failed: {}",
                cell.client.name(),
                cell.peer.name(),
                cell.transport,
                cell.case,
                cell.message
            )),
            (true, Some(d)) => wrong.push(format!(
                "{} → {} over {}: {} passed but is listed as a known deviation ({}); update \
                 MOQ_RELAY_IETF_DEVIATIONS and docs/interop.md",
                cell.client.name(),
                cell.peer.name(),
                cell.transport,
                cell.case,
                d.section
            )),
            _ => {}
        }
    }
    // Every case is in every column exactly once.
    for client in [Client::Aiomoqt, Client::Banyan] {
        for peer in [Peer::Banyan, Peer::Aiomoqt, Peer::MoqRelayIetf] {
            if client == Client::Aiomoqt && peer != Peer::Banyan {
                continue;
            }
            for transport in TRANSPORTS {
                for case in Case::ALL {
                    let n = cells
                        .iter()
                        .filter(|c| {
                            c.client == client
                                && c.peer == peer
                                && c.transport == transport
                                && c.case == case.name()
                        })
                        .count();
                    if n != 1 {
                        wrong.push(format!(
                            "{} → {} over {transport}: {case} reported {n} times",
                            client.name(),
                            peer.name()
                        ));
                    }
                }
            }
        }
    }
    if !MOQ_RELAY_IETF_DEVIATIONS.is_empty() {
        println!("known deviations of moq-relay-ietf 0.8.0:");
        for d in MOQ_RELAY_IETF_DEVIATIONS {
            println!(
                "  {} ({:?}): {} — {}",
                d.case, d.transports, d.section, d.observed
            );
        }
    }
    if !wrong.is_empty() {
        println!(
            "--- aiomoqt relay stderr ---\n{}\n--- moq-relay-ietf stderr ---\n{}",
            aiomoqt.log(),
            ietf.log()
        );
    }
    assert!(
        wrong.is_empty(),
        "{} unexpected cell(s) in the interop matrix:\n  {}",
        wrong.len(),
        wrong.join("\n  ")
    );
}

fn known_deviation(cell: &Cell) -> Option<&'static Deviation> {
    if cell.peer != Peer::MoqRelayIetf || cell.client != Client::Banyan {
        return None;
    }
    MOQ_RELAY_IETF_DEVIATIONS
        .iter()
        .find(|d| d.case.name() == cell.case && d.transports.contains(&cell.transport))
}

/// Banyan's client against `peer` on `port`, every case over both transports.
async fn banyan_client_column(peer: Peer, port: u16) -> Vec<Cell> {
    let mut cells = Vec::new();
    for transport in TRANSPORTS {
        let mut config = Config::new(url(transport, port).parse().unwrap());
        config.tls_disable_verify = true;
        for outcome in interop::run(&config, &Case::ALL).await {
            cells.push(Cell {
                client: Client::Banyan,
                peer,
                transport,
                case: outcome.case.name().to_string(),
                passed: outcome.passed,
                message: outcome.message,
            });
        }
    }
    cells
}

/// aiomoqt's client against banyan-relay on `port`: its standard run (12 cases), then `fetch`
/// and `join`, which it only runs when named, over both transports.
async fn aiomoqt_client_column(program: &Path, port: u16) -> Vec<Cell> {
    let mut cells = Vec::new();
    for transport in TRANSPORTS {
        for only in [None, Some("fetch"), Some("join")] {
            let mut args = vec![
                "--draft".to_string(),
                "18".into(),
                "--tls-disable-verify".into(),
                "-r".into(),
                url(transport, port),
            ];
            if let Some(case) = only {
                args.extend(["-t".into(), case.into()]);
            }
            let results = run_aiomoqt_client(program, &args).await;
            match results {
                Ok(results) => cells.extend(results.into_iter().map(|r| Cell {
                    client: Client::Aiomoqt,
                    peer: Peer::Banyan,
                    transport,
                    case: r.name,
                    passed: r.passed && r.directive.as_deref().is_none_or(|d| !d.starts_with("SKIP")),
                    message: match r.directive {
                        Some(d) => format!("{} [# {d}]", r.message.unwrap_or_default()),
                        None => r.message.unwrap_or_default(),
                    },
                })),
                Err(why) => cells.extend(
                    Case::ALL
                        .iter()
                        .filter(|c| only.is_none_or(|o| o == c.name()))
                        .filter(|c| only.is_some() || !matches!(c, Case::Fetch | Case::Join))
                        .map(|c| Cell {
                            client: Client::Aiomoqt,
                            peer: Peer::Banyan,
                            transport,
                            case: c.name().to_string(),
                            passed: false,
                            message: why.clone(),
                        }),
                ),
            }
        }
    }
    cells
}

/// Run `moq-interop-client` (bounded) and read its TAP.
async fn run_aiomoqt_client(program: &Path, args: &[String]) -> Result<Vec<tap::TapResult>, String> {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command
        .spawn()
        .map_err(|e| format!("starting {}: {e}", program.display()))?;
    let output = match tokio::time::timeout(CLIENT_RUN, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return Err(format!("moq-interop-client {args:?}: {e}")),
        Err(_) => {
            return Err(format!(
                "moq-interop-client {args:?} did not finish within {CLIENT_RUN:?}"
            ))
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    tap::parse(&stdout).map_err(|e| {
        format!(
            "moq-interop-client {args:?} exited {} without a TAP report ({e}); stderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
    })
}

fn url(transport: TransportKind, port: u16) -> String {
    match transport {
        TransportKind::Quic => format!("moqt://127.0.0.1:{port}/"),
        TransportKind::WebTransport => format!("https://127.0.0.1:{port}/"),
        TransportKind::WebSocket => panic!("the interop runner's cases run over QUIC and WebTransport"),
    }
}

/// The matrix as a table: one row per case and transport, one column per client → relay.
fn table(cells: &[Cell]) -> String {
    let columns = [
        (Client::Aiomoqt, Peer::Banyan),
        (Client::Banyan, Peer::Banyan),
        (Client::Banyan, Peer::Aiomoqt),
        (Client::Banyan, Peer::MoqRelayIetf),
    ];
    let mut out = String::from("\nMoQ interop runner matrix (draft-18)\n");
    let _ = write!(out, "{:<31} {:<13}", "case", "transport");
    for (client, peer) in columns {
        let _ = write!(out, " | {:<34}", format!("{} → {}", client.name(), peer.name()));
    }
    out.push('\n');
    let mut failures = Vec::new();
    for case in Case::ALL {
        for transport in TRANSPORTS {
            let _ = write!(out, "{:<31} {:<13}", case.name(), transport.as_str());
            for (client, peer) in columns {
                let cell = cells.iter().find(|c| {
                    c.client == client && c.peer == peer && c.transport == transport && c.case == case.name()
                });
                let mark = match cell {
                    None => "missing".to_string(),
                    Some(c) if c.passed => "pass".to_string(),
                    Some(c) => {
                        failures.push(c.clone());
                        let known = if known_deviation(c).is_some() {
                            " (known)"
                        } else {
                            ""
                        };
                        format!("FAIL [{}]{known}", failures.len())
                    }
                };
                let _ = write!(out, " | {mark:<34}");
            }
            out.push('\n');
        }
    }
    out.push_str("\nwhat each cell observed:\n");
    for (client, peer) in columns {
        let _ = writeln!(out, "  {} → {}:", client.name(), peer.name());
        for transport in TRANSPORTS {
            for c in cells
                .iter()
                .filter(|c| c.client == client && c.peer == peer && c.transport == transport)
            {
                let mark = if c.passed { "pass" } else { "FAIL" };
                let _ = writeln!(
                    out,
                    "    {:<12} {:<31} {mark}: {}",
                    transport.as_str(),
                    c.case,
                    c.message
                );
            }
        }
    }
    if !failures.is_empty() {
        out.push_str("\nfailures:\n");
    }
    for (i, c) in failures.iter().enumerate() {
        let _ = writeln!(
            out,
            "[{}] {} → {} over {}, {}: {}",
            i + 1,
            c.client.name(),
            c.peer.name(),
            c.transport,
            c.case,
            c.message
        );
    }
    out
}

/// The aiomoqt tool `name`: in `$BANYAN_AIOMOQT_BIN`, else target/peers/aiomoqt/bin. Fails the
/// test, saying how to install it, when it is in neither.
fn aiomoqt_tool(name: &str) -> PathBuf {
    let dir = std::env::var_os("BANYAN_AIOMOQT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/peers/aiomoqt/bin"));
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/install-peers (it installs aiomoqt 0.13.3 into \
         target/peers/aiomoqt; or point BANYAN_AIOMOQT_BIN at a venv's bin directory)",
        path.display()
    );
    path
}

/// The cargo-installed peer `name`: in `$BANYAN_PEERS_BIN`, else target/peers/bin. Fails the
/// test, saying how to install it, when it is in neither.
fn peer_tool(name: &str) -> PathBuf {
    let dir = std::env::var_os("BANYAN_PEERS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/peers/bin"));
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/install-peers (it installs moq-relay-ietf 0.8.0 into \
         target/peers/bin; or point BANYAN_PEERS_BIN at a directory holding it)",
        path.display()
    );
    path
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A development certificate and key as PEM files, removed on drop.
struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    fn mint() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity::mint_dev(&DevOptions::default()).unwrap();
        identity
            .write_pem(&dir.path().join("cert.pem"), &dir.path().join("key.pem"))
            .unwrap();
        Self { dir }
    }

    fn cert(&self) -> String {
        self.dir.path().join("cert.pem").display().to_string()
    }

    fn key(&self) -> String {
        self.dir.path().join("key.pem").display().to_string()
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// A peer relay process on a free UDP port, killed on drop; its output is kept for failures.
struct PeerProcess {
    name: &'static str,
    port: u16,
    _child: Child,
    log: Arc<Mutex<String>>,
}

impl PeerProcess {
    /// `moq-interop-relay --dual`: raw QUIC and WebTransport on one port.
    fn aiomoqt_relay(program: &Path, certs: &Certs) -> Self {
        let port = free_udp_port();
        let args = [
            "--dual".to_string(),
            "--draft".into(),
            "18".into(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string(),
            "--cert".into(),
            certs.cert(),
            "--key".into(),
            certs.key(),
        ];
        Self::spawn("aiomoqt moq-interop-relay", program, &args, port)
    }

    /// `moq-relay-ietf` with its own coordinator file (the default is shared in /tmp).
    fn moq_relay_ietf(program: &Path, certs: &Certs) -> Self {
        let port = free_udp_port();
        let args = [
            "--bind".to_string(),
            format!("127.0.0.1:{port}"),
            "--tls-cert".into(),
            certs.cert(),
            "--tls-key".into(),
            certs.key(),
            "--coordinator-file".into(),
            certs.path("coordinator.json"),
        ];
        Self::spawn("moq-relay-ietf", program, &args, port)
    }

    fn spawn(name: &'static str, program: &Path, args: &[String], port: u16) -> Self {
        let mut child = Command::new(program)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({}): {e}", program.display()));
        let log = Arc::new(Mutex::new(String::new()));
        for out in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            let log = log.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(out).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut log = log.lock().unwrap();
                    // Keep the most recent output only: a failing run can be chatty.
                    if log.len() > 64 * 1024 {
                        let cut = log.len() - 32 * 1024;
                        let cut = (cut..log.len()).find(|&i| log.is_char_boundary(i)).unwrap_or(0);
                        log.drain(..cut);
                    }
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        Self {
            name,
            port,
            _child: child,
            log,
        }
    }

    /// Wait (bounded) until a Banyan client completes SETUP with it over raw QUIC.
    async fn ready(&self) {
        let mut config = Config::new(url(TransportKind::Quic, self.port).parse().unwrap());
        config.tls_disable_verify = true;
        config.setup_timeout = Duration::from_secs(2);
        let deadline = Instant::now() + PEER_READY;
        loop {
            let outcome = interop::run_case(&config, Case::SetupOnly).await;
            if outcome.passed {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not complete SETUP on port {} within {PEER_READY:?} (last: {}); its output:\n{}",
                self.name,
                self.port,
                outcome.message,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

/// A UDP port nobody is using right now, chosen by the OS.
fn free_udp_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}
