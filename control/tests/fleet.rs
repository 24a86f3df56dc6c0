//! The control loop with the process spawner and real `banyan-relay` processes: a burst of
//! viewer assignments makes the autoscaler spawn relays, which register by heartbeat and take
//! the next viewers; when the viewers stop coming, the idle spawned relays are drained, exit
//! and are reaped.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;

fn spawned_live(status: &serde_json::Value) -> Vec<String> {
    status["relays"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["spawned"] == true)
        .map(|r| r["relay_id"].as_str().unwrap().to_owned())
        .collect()
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_viewers_spawns_relays_that_register_then_drain_and_exit_when_idle() {
    let binary = relay_binary();
    let dir = tempfile::tempdir().unwrap();
    let spawn_dir = dir.path().join("relays");
    let c = start(&config(&[
        "--spawner",
        "process",
        "--relay-binary",
        binary.to_str().unwrap(),
        "--spawn-dir",
        spawn_dir.to_str().unwrap(),
        "--spawn-capacity-viewers",
        "20",
        "--spawn-relay-arg=--drain-timeout=1s",
        "--heartbeat-interval",
        "200ms",
        "--heartbeat-expiry",
        "1s",
        "--assignment-grace",
        "600ms",
        // The viewers here only ask control and never connect.
        "--join-timeout",
        "1s",
        "--tick",
        "100ms",
        "--join-rate-halflife",
        "500ms",
        "--spawn-lead",
        "3s",
        "--idle-cooldown",
        "1s",
        "--max-spawned",
        "2",
    ]))
    .await;

    // The origin of live/crowd (simulated: only its heartbeats matter here).
    let stop = Arc::new(tokio::sync::Notify::new());
    let origin_loop = {
        let (addr, stop) = (c.addr, stop.clone());
        tokio::spawn(async move {
            let body = serde_json::to_string(&origin("origin", "local", 1000, "live/crowd")).unwrap();
            loop {
                let _ = request(addr, "POST", "/v1/relays/heartbeat", Some(&body)).await;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = stop.notified() => return,
                }
            }
        })
    };
    assert!(
        eventually(Duration::from_secs(5), || async {
            get(c.addr, "/v1/watch/live/crowd").await.status == 200
        })
        .await
    );

    // Viewers arrive at ~40/s: with no edge at all the autoscaler must spawn, and the spawned
    // relays (real processes) register by heartbeat and take the viewers from the origin.
    let on_spawned = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let registered = eventually(Duration::from_secs(60), || {
        let on_spawned = on_spawned.clone();
        async move {
            for _ in 0..2 {
                let r = get(c.addr, "/v1/watch/live/crowd").await;
                if r.status == 200 && r.json()["relay_id"].as_str().unwrap().starts_with("spawned-") {
                    on_spawned.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            on_spawned.load(std::sync::atomic::Ordering::Relaxed) >= 5
        }
    })
    .await;
    let status = get(c.addr, "/v1/status").await.json();
    assert!(registered, "no viewer reached a spawned relay; status: {status}");
    let spawned = spawned_live(&status);
    assert!(!spawned.is_empty() && spawned.len() <= 2, "{spawned:?}");
    for r in status["relays"].as_array().unwrap() {
        if r["spawned"] == true {
            assert!(
                r["urls"]["moqt"]
                    .as_str()
                    .unwrap()
                    .starts_with("moqt://127.0.0.1:"),
                "{r}"
            );
            assert_eq!(r["region"], "local");
            assert_eq!(r["capacity"]["max_viewers"], 20);
        }
    }

    // Nobody else comes: after the grace and the cool-down every spawned relay drains, exits
    // and is reaped.
    let gone = eventually(Duration::from_secs(60), || async {
        spawned_live(&get(c.addr, "/v1/status").await.json()).is_empty()
    })
    .await;
    assert!(gone, "spawned relays still registered");
    let reaped = eventually(Duration::from_secs(30), || async {
        let m = get(c.addr, "/metrics").await.body;
        let spawned = metric(&m, "banyan_control_relays_spawned_total");
        spawned > 0 && metric(&m, "banyan_control_relays_stopped_total") >= spawned
    })
    .await;
    let m = get(c.addr, "/metrics").await.body;
    assert!(reaped, "{m}");
    assert!(metric(&m, "banyan_control_drains_total") >= 1, "{m}");
    // Every relay process has exited (the pid files are the relays' own: check via their logs).
    for entry in std::fs::read_dir(&spawn_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            let log = std::fs::read_to_string(&path).unwrap();
            assert!(log.contains("drain"), "{}: {log}", path.display());
        }
    }
    stop.notify_waiters();
    origin_loop.abort();
    c.stop().await;
}
