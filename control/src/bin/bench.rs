//! `banyan-control-bench`: viewer assignments per second, two ways.
//!
//! 1. **Registry**: `Registry::watch` called in a loop on one thread (the placement work alone,
//!    under no lock contention) — the ceiling of the service.
//! 2. **HTTP**: an in-process control plane on 127.0.0.1:0 (rate limiter set out of the way)
//!    and `--clients` concurrent keep-alive HTTP/1.1 clients issuing
//!    `GET /v1/watch/{broadcast}` for `--seconds`; only 200 answers are counted. Client and
//!    server share the machine, so this is a lower bound of what the service does alone.
//!
//! The fleet: `--relays` relays (heartbeats with capacity large enough never to fill),
//! `--broadcasts` broadcasts each originated on one of them, HS256 tokens minted per answer.
//!
//! Usage: `cargo run --release -p banyan-control --bin banyan-control-bench -- [--relays 50]
//! [--broadcasts 10] [--clients 32] [--seconds 5]`

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use banyan_control::api::{BroadcastLoad, Capacity, Heartbeat, Load, RelayUrls};
use banyan_control::config::ControlConfig;
use banyan_control::registry::{Policy, Registry};
use banyan_control::Control;
use clap::Parser;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

#[derive(Debug, Parser)]
#[command(about = "Measure banyan-control viewer assignments per second")]
struct Args {
    /// Relays in the fleet.
    #[arg(long, default_value_t = 50)]
    relays: usize,
    /// Broadcasts.
    #[arg(long, default_value_t = 10)]
    broadcasts: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let fleet = fleet(args.relays, args.broadcasts);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "fleet: {} relays, {} broadcasts; machine: {cores} cores",
        args.relays, args.broadcasts
    );

    registry_alone(&args, &fleet)?;
    over_http(&args, &fleet).await
}

/// First measurement, the registry alone: assignments per second on one thread, no HTTP, no token.
fn registry_alone(args: &Args, fleet: &[Heartbeat]) -> anyhow::Result<()> {
    let mut registry = Registry::new(Policy::default());
    let now = Instant::now();
    for hb in fleet {
        registry.heartbeat(hb.clone(), now);
    }
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(args.seconds) {
        // The real clock, as the HTTP layer passes it: chat room assignments pending longer
        // than the grace expire, as they do in service.
        let now = Instant::now();
        for _ in 0..1000 {
            let b = format!("live/b{}", n % args.broadcasts as u64);
            registry.watch(&b, "eu", None, now).context("assignment failed")?;
            n += 1;
        }
        // A heartbeat round every 100k assignments, as relays would report them.
        if n % 100_000 == 0 {
            for hb in fleet {
                registry.heartbeat(hb.clone(), now);
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "registry: {n} assignments in {secs:.2} s = {:.0} assignments/s (one thread, no HTTP, no token)",
        n as f64 / secs
    );
    Ok(())
}

/// Second measurement, over HTTP: assignments per second through the control plane's listener, `clients`
/// keep-alive connections, each answer with a signed token, the fleet heartbeating meanwhile.
async fn over_http(args: &Args, fleet: &[Heartbeat]) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let key = dir.join("hs.key");
    std::fs::write(&key, "bench-secret-bench-secret-bench-secret").context("writing the key")?;
    let config = ControlConfig::load_from(
        [
            "banyan-control",
            "--listen",
            "127.0.0.1:0",
            "--spawner",
            "none",
            "--watch-rate",
            "100000000",
            "--watch-burst",
            "100000000",
            "--auth-key",
            key.to_str().context("key path")?,
        ],
        |_| None,
    )?;
    let control = Control::bind(&config).await?;
    let addr = control.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(control.run(async {
        let _ = stop_rx.await;
    }));
    for hb in fleet {
        let body = serde_json::to_string(hb)?;
        let (status, _) = one_request(addr, "POST", "/v1/relays/heartbeat", &body).await?;
        anyhow::ensure!(status == 200, "heartbeat refused: {status}");
    }
    let done = Arc::new(AtomicBool::new(false));
    // The relays keep heartbeating (every 500 ms) so none expires during the run.
    let beats = {
        let (done, fleet) = (done.clone(), fleet.to_vec());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(500)).await;
                for hb in &fleet {
                    let body = serde_json::to_string(hb)?;
                    one_request(addr, "POST", "/v1/relays/heartbeat", &body).await?;
                }
            }
            anyhow::Ok(())
        })
    };
    let ok = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..args.clients {
        let (done, ok, other) = (done.clone(), ok.clone(), other.clone());
        let broadcasts = args.broadcasts;
        clients.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            let mut stream = BufReader::new(stream);
            let mut i = c;
            while !done.load(Ordering::Relaxed) {
                let path = format!("/v1/watch/live/b{}?region=eu", i % broadcasts);
                i += 1;
                let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n");
                stream.get_mut().write_all(request.as_bytes()).await?;
                let status = read_response(&mut stream).await?;
                if status == 200 { &ok } else { &other }.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    done.store(true, Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    for c in clients {
        c.await??;
    }
    beats.await??;
    let ok = ok.load(Ordering::Relaxed);
    println!(
        "http: {ok} assignments in {secs:.2} s = {:.0} assignments/s ({} clients, keep-alive, HS256 token per answer; {} non-200)",
        ok as f64 / secs,
        args.clients,
        other.load(Ordering::Relaxed)
    );
    let _ = stop_tx.send(());
    server.await??;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn fleet(relays: usize, broadcasts: usize) -> Vec<Heartbeat> {
    (0..relays)
        .map(|i| Heartbeat {
            relay_id: format!("r{i}"),
            urls: RelayUrls {
                moqt: Some(format!("moqt://10.0.0.{i}:4443")),
                webtransport: Some(format!("https://10.0.0.{i}:4443/")),
                websocket: None,
                http: None,
            },
            cert_sha256: None,
            region: if i % 2 == 0 { "eu" } else { "us" }.into(),
            capacity: Capacity {
                max_viewers: u32::MAX / 2,
                egress_bps: 0,
            },
            load: Load::default(),
            broadcasts: (0..broadcasts)
                .filter(|b| b % relays == i)
                .map(|b| BroadcastLoad {
                    namespace: format!("live/b{b}"),
                    viewers: 0,
                    local: true,
                    rooms: Default::default(),
                })
                .collect(),
            parents: vec![],
            draining: false,
        })
        .collect()
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("banyan-control-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).context("creating a temp dir")?;
    Ok(dir)
}

async fn one_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let mut stream = BufReader::new(stream);
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.get_mut().write_all(request.as_bytes()).await?;
    let status = read_response(&mut stream).await?;
    Ok((status, String::new()))
}

/// Read one response with a Content-Length body; returns its status.
async fn read_response(stream: &mut BufReader<tokio::net::TcpStream>) -> anyhow::Result<u16> {
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("bad status line")?;
    let mut length = 0usize;
    loop {
        line.clear();
        stream.read_line(&mut line).await?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().context("bad content-length")?;
            }
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await?;
    Ok(status)
}
