//! Harness for process-level tests: the real `banyan-relay` binary on ephemeral ports, what it
//! prints, its HTTP endpoints, and clients pinned to its development certificate.

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use banyan_certs::{client_config, parse_sha256_hex, ServerVerification};
use banyan_moq::session::{Client, ClientOptions, Error, Session, SessionConfig, TransportConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use url::Url;

pub const BIN: &str = env!("CARGO_BIN_EXE_banyan-relay");

/// The relay command with none of the test environment's `BANYAN_RELAY_*` variables.
pub fn relay_command(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("BANYAN_RELAY_") {
            command.env_remove(key);
        }
    }
    command.kill_on_drop(true);
    command
}

/// Run the relay to completion (bounded): its exit status, stdout and stderr.
pub async fn run_to_exit(mut command: Command) -> (ExitStatus, String, String) {
    command.stdin(Stdio::null());
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("the relay exits by itself")
        .unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Expect start-up to fail with a message containing every one of `needles`.
pub async fn refuses_to_start(args: &[&str], needles: &[&str]) {
    let (status, _stdout, stderr) = run_to_exit(relay_command(args)).await;
    assert!(!status.success(), "{args:?} must not start; stderr: {stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{args:?}: stderr should mention {needle:?}; got: {stderr}"
        );
    }
}

/// A relay process started with ephemeral ports, and what it printed.
pub struct Running {
    pub child: Child,
    pub hash: Option<String>,
    pub udp: SocketAddr,
    pub http: SocketAddr,
    pub stderr: Arc<Mutex<String>>,
}

/// Start the binary and wait (bounded) for its `listening:` line.
pub async fn start(mut command: Command) -> Running {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut err_lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let log = stderr.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = err_lines.next_line().await {
            let mut log = log.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut hash = None;
    let printed = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(hex) = line.strip_prefix("certificate sha256: ") {
                hash = Some(hex.trim().to_string());
            } else if let Some(rest) = line.strip_prefix("listening: udp ") {
                let (udp, http) = rest.split_once(" http ").expect("listening: udp ADDR http ADDR");
                return Some((udp.parse().unwrap(), http.trim().parse().unwrap()));
            }
        }
        None
    })
    .await;
    let Ok(Some((udp, http))) = printed else {
        panic!(
            "the relay did not print its addresses; stderr:\n{}",
            stderr.lock().unwrap()
        )
    };
    // Keep draining stdout so the process never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Running {
        child,
        hash,
        udp,
        http,
        stderr,
    }
}

impl Running {
    pub fn sigterm(&self) {
        let pid = self.child.id().expect("still running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM {pid}");
    }

    /// Wait (bounded) for the process to exit.
    pub async fn exit(&mut self, secs: u64) -> ExitStatus {
        match tokio::time::timeout(Duration::from_secs(secs), self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!(
                "the relay did not exit within {secs} s; stderr:\n{}",
                self.stderr.lock().unwrap()
            ),
        }
    }

    /// Stop the relay gracefully (used at the end of tests that are not about shutdown).
    pub async fn stop(mut self) {
        self.sigterm();
        let status = self.exit(30).await;
        assert!(status.success(), "exit status {status:?}");
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.http, path).await
    }

    pub async fn health(&self) -> serde_json::Value {
        let (status, body) = self.get("/health").await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// A client that trusts only the certificate with the printed hash.
    pub fn client(&self) -> Client {
        let hash = parse_sha256_hex(self.hash.as_deref().expect("--dev-cert prints a hash")).unwrap();
        let tls = client_config(&ServerVerification::PinnedSha256(vec![hash]), &[]).unwrap();
        let config = SessionConfig {
            setup_timeout: Duration::from_secs(10),
            ..Default::default()
        };
        Client::new(tls, &TransportConfig::default(), config).unwrap()
    }

    pub async fn connect(&self, client: &Client, scheme: &str) -> Result<Session, Error> {
        let url = Url::parse(&format!("{scheme}://localhost:{}/", self.udp.port())).unwrap();
        let (session, driver) = tokio::time::timeout(
            Duration::from_secs(20),
            client.connect(&url, ClientOptions::default()),
        )
        .await
        .expect("connect is bounded")?;
        tokio::spawn(async move {
            let _ = driver.run().await;
        });
        Ok(session)
    }
}

/// A minimal HTTP/1.1 GET: status code and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    try_http_get(addr, path)
        .await
        .unwrap_or_else(|| panic!("GET {path} from {addr} is answered"))
}

/// Like [`http_get`], but `None` when the listener is gone or the answer is not HTTP.
pub async fn try_http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, body.to_string()))
    })
    .await
    .ok()
    .flatten()
}

/// The usual development flags on ephemeral ports.
pub const DEV: &[&str] = &[
    "--dev-cert",
    "--listen",
    "[::]:0",
    "--http-listen",
    "127.0.0.1:0",
    "--insecure-no-auth",
];
