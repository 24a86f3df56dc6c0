//! Control restart mid-broadcast, with real processes: `banyan-control` + an origin and an edge
//! `banyan-relay` reporting to it, `banyan-publish --synthetic` on the origin, a `banyan-watch`
//! viewer placed by `GET /v1/watch`. The control plane is killed (SIGKILL: no goodbye) while the
//! viewer watches, stays down for several heartbeat expiries, and comes back on the same port
//! with an empty registry. Proves: the viewer sees no gap, no reconnect and no stall (the relays
//! never need the control plane on the media path); the restarted control plane knows both
//! relays and the broadcast again within two heartbeat intervals (soft state); a new viewer is
//! placed and gets media.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

const BROADCAST: &str = "live/restart";
/// The heartbeat interval control hands out; relays keep it while control is unreachable.
const INTERVAL: Duration = Duration::from_millis(300);
/// Allowance on top of two intervals for scheduling on a loaded 2-core CI machine (a
/// heartbeat is one small HTTP request; on a quiet machine the rebuild takes under one interval).
const REBUILD_MARGIN: Duration = Duration::from_millis(700);

/// Start `banyan-control` on `port` and wait until it listens.
async fn control_process(port: u16) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_banyan-control"))
        .args([
            "--spawner",
            "none",
            "--tick",
            "100ms",
            "--heartbeat-expiry",
            "1500ms",
        ])
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg(format!("--heartbeat-interval={}ms", INTERVAL.as_millis()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("banyan-control exited before listening");
        if line.starts_with("listening: http ") {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

/// Ask control for a relay and start `banyan-watch` there for `duration`; returns the process,
/// the relay it was placed on and where its JSON summary goes.
async fn viewer(control: SocketAddr, watch: &Path, duration: &str, summary: &Path) -> (Child, String) {
    let reply = get(control, &format!("/v1/watch/{BROADCAST}")).await;
    assert_eq!(reply.status, 200, "no assignment: {}", reply.body);
    let a = reply.json();
    let child = Command::new(watch)
        .arg(a["moqt"].as_str().unwrap())
        .args([
            "--broadcast",
            BROADCAST,
            "--output",
            "none",
            "--duration",
            duration,
        ])
        .arg(format!("--tls-hash={}", a["cert_sha256"].as_str().unwrap()))
        .arg(format!("--token={}", a["token"].as_str().unwrap()))
        .arg("--summary")
        .arg(summary)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    (child, a["relay_id"].as_str().unwrap().to_owned())
}

async fn finish(mut child: Child, summary: &Path) -> serde_json::Value {
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("banyan-watch did not stop after its duration")
        .unwrap();
    assert!(status.success(), "banyan-watch failed: {status}");
    serde_json::from_str(&std::fs::read_to_string(summary).unwrap()).unwrap()
}

/// The control plane's view: (relays known, whether the broadcast can be assigned).
async fn view(control: SocketAddr) -> (usize, bool) {
    let relays = get(control, "/v1/status").await.json()["relays"]
        .as_array()
        .map_or(0, Vec::len);
    let placed = get(control, &format!("/v1/watch/{BROADCAST}")).await.status == 200;
    (relays, placed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_keep_watching_through_a_control_restart_and_state_is_rebuilt() {
    let relay = relay_binary();
    let publish = workspace_binary("banyan-publish");
    let watch = workspace_binary("banyan-watch");
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    let mut control = control_process(port).await;
    let (_origin, origin_udp) = relay_process(&relay, addr, "origin", 10_000).await;
    let (_edge, _) = relay_process(&relay, addr, "edge", 100).await;
    let _publisher = Command::new(&publish)
        .arg(format!("moqt://127.0.0.1:{}", origin_udp.port()))
        .args([
            "--broadcast",
            BROADCAST,
            "--synthetic",
            "--bitrate",
            "500k",
            "--tls-insecure",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let ready = eventually(Duration::from_secs(15), || async {
        view(addr).await == (2, true)
    })
    .await;
    assert!(
        ready,
        "origin, edge and broadcast never all known to control: {:?}",
        view(addr).await
    );

    // A viewer watches for 10 s; control dies 2 s in and is gone for 3 s (two expiries).
    let watched_for = Duration::from_secs(10);
    let summary_a = dir.path().join("a.json");
    let (viewer_a, relay_a) = viewer(addr, &watch, "10s", &summary_a).await;
    let a_started = Instant::now();
    // The scenario: the viewer (already placed: `viewer` awaited its assignment) has been
    // watching a while when control dies.
    tokio::time::sleep(Duration::from_secs(2)).await;
    control.start_kill().unwrap();
    control.wait().await.unwrap();
    let killed_at = a_started.elapsed();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "control still accepts connections after SIGKILL"
    );
    // The scenario: control stays down for 3 s (two heartbeat expiries).
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Back on the same port with nothing: heartbeats rebuild the fleet and the broadcast.
    let restarted = Instant::now();
    let _control = control_process(port).await;
    let listening = restarted.elapsed();
    let rebuilt = eventually(Duration::from_secs(10), || async {
        view(addr).await == (2, true)
    })
    .await;
    let rebuild = restarted.elapsed() - listening;
    assert!(
        rebuilt,
        "registry never rebuilt after the restart: {:?}",
        view(addr).await
    );

    // A new viewer is placed by the restarted control plane and gets media.
    let summary_b = dir.path().join("b.json");
    let (viewer_b, relay_b) = viewer(addr, &watch, "3s", &summary_b).await;
    let b = finish(viewer_b, &summary_b).await;
    let a = finish(viewer_a, &summary_a).await;

    let max_ms = a["latency_ms"]["max"].as_f64().unwrap_or(f64::INFINITY);
    println!(
        "control restart: killed {:.1} s into a {} s watch, down 3 s, listening again after {} ms, \
         registry rebuilt {} ms later (interval {} ms); viewer A on {relay_a}: {} objects, {} gaps, \
         {} missing groups, {} reconnects, latency p50 {} / p99 {} / max {max_ms} ms; \
         new viewer B on {relay_b}: {} objects, {} gaps",
        killed_at.as_secs_f64(),
        watched_for.as_secs(),
        listening.as_millis(),
        rebuild.as_millis(),
        INTERVAL.as_millis(),
        a["objects"],
        a["gaps"],
        a["missing_groups"],
        a["reconnects"],
        a["latency_ms"]["p50"],
        a["latency_ms"]["p99"],
        b["objects"],
        b["gaps"],
    );
    assert!(
        rebuild <= 2 * INTERVAL + REBUILD_MARGIN,
        "registry took {rebuild:?} to rebuild (two intervals are {:?})",
        2 * INTERVAL
    );
    // Viewer A: every group, one session, and the media never stalled while control was away
    // (a stall would show up as latency: objects are timestamped at capture).
    assert_eq!(
        (
            a["gaps"].as_u64(),
            a["missing_groups"].as_u64(),
            a["reconnects"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "viewer A was disturbed: {a}"
    );
    // 30 fps for 10 s, less the time to the first frame and a generous allowance.
    assert!(
        a["objects"].as_u64().unwrap() >= 240,
        "viewer A got too little: {a}"
    );
    assert!(max_ms < 1000.0, "viewer A stalled (max latency {max_ms} ms): {a}");
    assert!(
        b["objects"].as_u64().unwrap() >= 30,
        "viewer B got too little: {b}"
    );
    assert_eq!(b["gaps"].as_u64(), Some(0), "viewer B: {b}");
}
