//! The `process` spawner: child `banyan-relay` processes on this host.
//!
//! Each relay gets an id (`<prefix>-<n>`), a generated TOML config in the spawn directory
//! (`<id>.toml`: listen on `<host>:0` for UDP and HTTP, so the kernel picks free ports and no
//! port is ever raced for), and flags `--control`, `--region`, `--capacity-viewers` and
//! `--public-host` so it registers by heartbeat with URLs that reach it. (Flags the binary's
//! `--help` does not list are left out, with a warning.) Its stdout (where it prints `listening: udp ADDR http ADDR`) goes
//! to `<id>.out` and its stderr to `<id>.log`.
//!
//! Supervision ([`Spawner::supervise`]): a relay that exits while not being stopped (or
//! drained, [`Spawner::expect_exit`]) is restarted with the same id after a backoff (200 ms doubling to 10 s); a stopped relay gets
//! SIGTERM (the relay drains on it), is SIGKILLed if still there after `kill_after`, and is
//! reaped. Dropping the spawner kills every child.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{BoxFuture, SpawnError, Spawner};

/// How the process spawner starts relays.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// The `banyan-relay` binary.
    pub binary: PathBuf,
    /// The control URL spawned relays send heartbeats to (`--control`).
    pub control_url: String,
    /// Region for spawned relays.
    pub region: String,
    /// `--capacity-viewers` for spawned relays.
    pub capacity_viewers: u32,
    /// Host to bind and advertise.
    pub host: String,
    /// Extra arguments for every relay.
    pub extra_args: Vec<String>,
    /// `--auth-key` for the relays; without it they run `--insecure-no-auth`.
    pub auth_key: Option<PathBuf>,
    /// Directory for generated configs and logs.
    pub dir: PathBuf,
    /// Relay id prefix.
    pub id_prefix: String,
    /// SIGKILL a stopped relay still running after this.
    pub kill_after: Duration,
}

impl ProcessConfig {
    /// Defaults for `binary`, talking to `control_url`, files in `dir`.
    pub fn new(binary: PathBuf, control_url: String, dir: PathBuf) -> Self {
        Self {
            binary,
            control_url,
            region: "local".into(),
            capacity_viewers: 100,
            host: "127.0.0.1".into(),
            extra_args: Vec::new(),
            auth_key: None,
            dir,
            id_prefix: "spawned".into(),
            kill_after: Duration::from_secs(15),
        }
    }
}

/// The `banyan-relay` beside the current executable (the default `--relay-binary`).
pub fn sibling_relay_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(
        exe.parent()?
            .join(format!("banyan-relay{}", std::env::consts::EXE_SUFFIX)),
    )
}

#[derive(Debug)]
struct Child {
    process: Option<tokio::process::Child>,
    restarts: u32,
    stopping: Option<Instant>,
    restart_at: Option<Instant>,
}

/// Child relay processes, supervised.
#[derive(Debug)]
pub struct ProcessSpawner {
    config: ProcessConfig,
    /// Which of `--control`, `--region`, `--capacity-viewers`, `--public-host` the binary accepts.
    supported: Vec<&'static str>,
    children: Mutex<HashMap<String, Child>>,
    next: AtomicU64,
    restarts: AtomicU64,
}

impl ProcessSpawner {
    /// A spawner for `config`; checks that the binary runs (`--help`) and which control
    /// flags it knows.
    pub fn new(config: ProcessConfig) -> Result<Self, SpawnError> {
        std::fs::create_dir_all(&config.dir).map_err(|source| SpawnError::Io {
            what: format!("creating {}", config.dir.display()),
            source,
        })?;
        let help = std::process::Command::new(&config.binary)
            .arg("--help")
            .stdin(Stdio::null())
            .output()
            .map_err(|_| SpawnError::NoBinary(config.binary.display().to_string()))?;
        let help = String::from_utf8_lossy(&help.stdout);
        let supported: Vec<&'static str> = ["--control", "--region", "--capacity-viewers", "--public-host"]
            .into_iter()
            .filter(|flag| help.contains(&format!("{flag} ")))
            .collect();
        if supported.len() < 4 {
            tracing::warn!(
                binary = %config.binary.display(),
                ?supported,
                "banyan-relay lacks some control flags (--control/--region/--capacity-viewers/--public-host); spawned relays may not register by heartbeat"
            );
        }
        Ok(Self {
            config,
            supported,
            children: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            restarts: AtomicU64::new(0),
        })
    }

    /// The relay's HTTP listener address, once it has printed it.
    pub fn http_addr(&self, relay_id: &str) -> Option<SocketAddr> {
        self.listening(relay_id)?.1
    }

    /// The relay's UDP address, once it has printed it.
    pub fn udp_addr(&self, relay_id: &str) -> Option<SocketAddr> {
        self.listening(relay_id)?.0
    }

    /// The OS process id of a running relay.
    pub fn pid(&self, relay_id: &str) -> Option<u32> {
        let children = self.children.lock();
        children.get(relay_id)?.process.as_ref()?.id()
    }

    /// How many crashed relays were restarted.
    pub fn restart_count(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// The stderr log file of a relay.
    pub fn log_path(&self, relay_id: &str) -> PathBuf {
        self.config.dir.join(format!("{relay_id}.log"))
    }

    fn out_path(&self, relay_id: &str) -> PathBuf {
        self.config.dir.join(format!("{relay_id}.out"))
    }

    fn listening(&self, relay_id: &str) -> Option<(Option<SocketAddr>, Option<SocketAddr>)> {
        let text = std::fs::read_to_string(self.out_path(relay_id)).ok()?;
        let line = text.lines().rev().find_map(|l| l.strip_prefix("listening: "))?;
        let mut words = line.split_whitespace();
        let mut udp = None;
        let mut http = None;
        while let Some(word) = words.next() {
            match word {
                "udp" => udp = words.next().and_then(|a| a.parse().ok()),
                "http" => http = words.next().and_then(|a| a.parse().ok()),
                _ => {}
            }
        }
        Some((udp, http))
    }

    fn start(&self, relay_id: &str) -> Result<tokio::process::Child, SpawnError> {
        let c = &self.config;
        let config_path = c.dir.join(format!("{relay_id}.toml"));
        let uses_tls = c.extra_args.iter().any(|a| a.starts_with("--tls-cert"));
        let mut toml = format!(
            "listen = \"{host}:0\"\nhttp-listen = \"{host}:0\"\nrelay-id = \"{relay_id}\"\n",
            host = toml_escape(&bracket_v6(&c.host)),
            relay_id = toml_escape(relay_id),
        );
        if !uses_tls && !c.extra_args.iter().any(|a| a.starts_with("--dev-cert")) {
            toml.push_str("dev-cert = true\n");
        }
        write(&config_path, &toml)?;
        let out = create(&self.out_path(relay_id))?;
        let log = create(&self.log_path(relay_id))?;
        let mut command = tokio::process::Command::new(&c.binary);
        command.arg("--config").arg(&config_path);
        for (flag, value) in [
            ("--control", c.control_url.clone()),
            ("--region", c.region.clone()),
            ("--capacity-viewers", c.capacity_viewers.to_string()),
            ("--public-host", c.host.clone()),
        ] {
            if self.supported.contains(&flag) {
                command.arg(format!("{flag}={value}"));
            }
        }
        match &c.auth_key {
            Some(key) => command.arg("--auth-key").arg(key),
            None => command.arg("--insecure-no-auth"),
        };
        command
            .args(&c.extra_args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(log)
            .kill_on_drop(true);
        let child = command.spawn().map_err(|source| SpawnError::Io {
            what: format!("starting {}", c.binary.display()),
            source,
        })?;
        tracing::info!(relay = %relay_id, pid = ?child.id(), "spawned relay process");
        Ok(child)
    }

    fn supervise_now(&self, now: Instant) -> Result<(), SpawnError> {
        let mut children = self.children.lock();
        let mut reaped = Vec::new();
        let mut restart = Vec::new();
        for (id, child) in children.iter_mut() {
            let exited = match child.process.as_mut() {
                Some(p) => p.try_wait().map_err(|source| SpawnError::Io {
                    what: format!("waiting for relay {id}"),
                    source,
                })?,
                None => None,
            };
            if let Some(since) = child.stopping {
                if exited.is_some() || child.process.is_none() {
                    tracing::info!(relay = %id, status = ?exited, "relay process reaped");
                    reaped.push(id.clone());
                } else if now.saturating_duration_since(since) >= self.config.kill_after {
                    if let Some(p) = child.process.as_mut() {
                        tracing::warn!(relay = %id, "relay did not exit after SIGTERM; killing it");
                        let _ = p.start_kill();
                    }
                }
                continue;
            }
            if let Some(status) = exited {
                let backoff = Duration::from_millis(200)
                    .saturating_mul(1u32 << child.restarts.min(6))
                    .min(Duration::from_secs(10));
                tracing::warn!(relay = %id, %status, ?backoff, log = %self.log_path(id).display(), "relay process exited; restarting");
                child.process = None;
                child.restart_at = Some(now + backoff);
            }
            if child.process.is_none() && child.restart_at.is_some_and(|t| now >= t) {
                restart.push(id.clone());
            }
        }
        for id in reaped {
            children.remove(&id);
        }
        for id in restart {
            let process = self.start(&id)?;
            if let Some(child) = children.get_mut(&id) {
                child.process = Some(process);
                child.restarts += 1;
                child.restart_at = None;
                self.restarts.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

impl Spawner for ProcessSpawner {
    fn name(&self) -> &'static str {
        "process"
    }

    fn spawn(&self) -> BoxFuture<'_, Result<String, SpawnError>> {
        Box::pin(async move {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let id = format!("{}-{n}", self.config.id_prefix);
            let process = self.start(&id)?;
            self.children.lock().insert(
                id.clone(),
                Child {
                    process: Some(process),
                    restarts: 0,
                    stopping: None,
                    restart_at: None,
                },
            );
            Ok(id)
        })
    }

    fn stop(&self, relay_id: String) -> BoxFuture<'_, Result<(), SpawnError>> {
        Box::pin(async move {
            let pid = {
                let mut children = self.children.lock();
                let child = children
                    .get_mut(&relay_id)
                    .ok_or_else(|| SpawnError::Unknown(relay_id.clone()))?;
                child.stopping.get_or_insert(Instant::now());
                child.process.as_ref().and_then(|p| p.id())
            };
            if let Some(pid) = pid {
                tracing::info!(relay = %relay_id, pid, "stopping relay (SIGTERM)");
                let status = tokio::process::Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .stdin(Stdio::null())
                    .status()
                    .await;
                if !status.is_ok_and(|s| s.success()) {
                    // No `kill` or it failed: fall back to SIGKILL.
                    let mut children = self.children.lock();
                    if let Some(p) = children.get_mut(&relay_id).and_then(|c| c.process.as_mut()) {
                        let _ = p.start_kill();
                    }
                }
            }
            Ok(())
        })
    }

    fn expect_exit(&self, relay_id: &str) {
        if let Some(child) = self.children.lock().get_mut(relay_id) {
            child.stopping.get_or_insert(Instant::now());
        }
    }

    fn supervise(&self) -> BoxFuture<'_, Result<(), SpawnError>> {
        Box::pin(async move { self.supervise_now(Instant::now()) })
    }

    fn running(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.children.lock().keys().cloned().collect();
        ids.sort();
        ids
    }
}

fn bracket_v6(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

fn toml_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn write(path: &Path, text: &str) -> Result<(), SpawnError> {
    std::fs::write(path, text).map_err(|source| SpawnError::Io {
        what: format!("writing {}", path.display()),
        source,
    })
}

fn create(path: &Path) -> Result<std::fs::File, SpawnError> {
    std::fs::File::create(path).map_err(|source| SpawnError::Io {
        what: format!("creating {}", path.display()),
        source,
    })
}
