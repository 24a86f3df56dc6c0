//! Shared helpers: an in-process control plane on 127.0.0.1:0 and a tiny HTTP/1.1 client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use banyan_control::api::{BroadcastLoad, Capacity, Heartbeat, Load, ParentLink, RelayUrls};
use banyan_control::config::ControlConfig;
use banyan_control::Control;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running control plane; dropping it shuts it down.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Shut down and wait until the listener is closed.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A config for tests: no spawner, listen on 127.0.0.1:0, plus `args`.
pub fn config(args: &[&str]) -> ControlConfig {
    let base = ["banyan-control", "--listen", "127.0.0.1:0", "--spawner", "none"];
    ControlConfig::load_from(base.iter().chain(args.iter()).copied(), |_| None).unwrap()
}

/// Start a control plane with `config`.
pub async fn start(config: &ControlConfig) -> Running {
    let control = Control::bind(config).await.unwrap();
    start_control(control)
}

/// Run an already bound control plane.
pub fn start_control(control: Control) -> Running {
    let addr = control.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        control
            .run(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Running {
        addr,
        stop: Some(tx),
        task: Some(task),
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request over a fresh connection (`Connection: close`).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<Reply> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let body = body.unwrap_or("");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nOrigin: http://example.test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_owned() };
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, None).await.unwrap()
}

pub async fn post(addr: SocketAddr, path: &str, body: &str) -> Reply {
    request(addr, "POST", path, Some(body)).await.unwrap()
}

/// A heartbeat for relay `id` in `region` with capacity `cap` and `sessions`.
pub fn heartbeat(id: &str, region: &str, cap: u32, sessions: u32) -> Heartbeat {
    Heartbeat {
        relay_id: id.into(),
        urls: RelayUrls {
            moqt: Some(format!("moqt://{id}.test:4443")),
            webtransport: Some(format!("https://{id}.test:4443/")),
            websocket: Some(format!("ws://{id}.test:8080/")),
            http: None,
        },
        cert_sha256: Some("0f".repeat(32)),
        region: region.into(),
        capacity: Capacity {
            max_viewers: cap,
            egress_bps: 1_000_000_000,
        },
        load: Load {
            sessions,
            egress_bps: 0,
            cpu: 0.1,
            accepted: 0,
        },
        broadcasts: vec![],
        parents: vec![],
        draining: false,
    }
}

/// `heartbeat` for the origin of `namespace`.
pub fn origin(id: &str, region: &str, cap: u32, namespace: &str) -> Heartbeat {
    let mut h = heartbeat(id, region, cap, 1);
    h.broadcasts.push(BroadcastLoad {
        namespace: namespace.into(),
        viewers: 0,
        local: true,
        rooms: Default::default(),
    });
    h
}

/// Add a reported parent link.
pub fn with_parent(mut h: Heartbeat, namespace: &str, parent: &str) -> Heartbeat {
    h.parents.push(ParentLink {
        namespace: namespace.into(),
        upstream: format!("moqt://{parent}.test:4443"),
    });
    h
}

pub async fn send(addr: SocketAddr, h: &Heartbeat) -> Reply {
    let reply = post(addr, "/v1/relays/heartbeat", &serde_json::to_string(h).unwrap()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply
}

/// Poll `check` every 20 ms until it is true or `timeout` passes; returns whether it became true.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `banyan-relay` binary of this build (see [`workspace_binary`]).
pub fn relay_binary() -> PathBuf {
    workspace_binary("banyan-relay")
}

/// Binary `bin` of another workspace package, from the target directory this test runs from
/// (target/<profile>/deps/<test> → target/<profile>/).
///
/// Cargo builds only this package's binaries for its tests, so this makes sure the others are
/// current by asking Cargo for the build `scripts/test` runs, `cargo test --workspace --no-run`
/// with this test's profile and features: a no-op (a second) under `scripts/test` or after a workspace
/// build. It must be that command and not `cargo build -p PACKAGE`: a different package
/// selection resolves dependency features differently and rebuilds half the dependency graph
/// (four minutes in CI).
pub fn workspace_binary(bin: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command
        .args(["test", "--workspace", "--no-run", "--locked", "--quiet"])
        .env("CARGO_TARGET_DIR", profile_dir.parent().unwrap());
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            command.arg("--release");
        }
        Some(profile) => {
            command.args(["--profile", profile]);
        }
    }
    if cfg!(feature = "kubernetes") {
        command.args(["--features", "banyan-control/kubernetes"]);
    }
    // Cargo runs this test with variables describing its package (CARGO_MANIFEST_DIR,
    // CARGO_PKG_NAME, OUT_DIR, ...). Build scripts that watch those (ring's does) would see them
    // change and rerun, rebuilding everything above them, so the inner Cargo gets the
    // environment the outer one had.
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        let set_by_cargo = ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_BIN_", "CARGO_CRATE_"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
            || [
                "OUT_DIR",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
            ]
            .contains(&name.as_ref());
        if set_by_cargo {
            command.env_remove(&key);
        }
    }
    let status = command.status().unwrap();
    assert!(status.success(), "building the workspace (for {bin}) failed");
    let binary = profile_dir.join(format!("{bin}{}", std::env::consts::EXE_SUFFIX));
    assert!(binary.exists(), "{} missing", binary.display());
    binary
}

/// Start a `banyan-relay` process (dev certificate, no auth) that reports to the control plane
/// at `control` with `--relay-id=id`; returns it and its UDP address. Its stdout is drained.
pub async fn relay_process(
    binary: &std::path::Path,
    control: SocketAddr,
    id: &str,
    capacity: u64,
) -> (tokio::process::Child, SocketAddr) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(binary)
        .args([
            "--listen=127.0.0.1:0",
            "--http-listen=127.0.0.1:0",
            "--dev-cert",
            "--insecure-no-auth",
            "--upstream-insecure",
            "--public-host=127.0.0.1",
            "--region=local",
        ])
        .arg(format!("--relay-id={id}"))
        .arg(format!("--control=http://{control}"))
        .arg(format!("--capacity-viewers={capacity}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let udp = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("relay exited before listening");
        if let Some(rest) = line.strip_prefix("listening: udp ") {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, udp)
}
