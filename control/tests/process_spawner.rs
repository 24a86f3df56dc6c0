//! The process spawner really runs `banyan-relay`: a spawned relay becomes healthy on its
//! own free ports, is restarted with the same id after a crash, and is reaped when stopped.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use banyan_control::spawner::process::{ProcessConfig, ProcessSpawner};
use banyan_control::spawner::Spawner;
use common::*;

async fn healthy(spawner: &ProcessSpawner, id: &str) -> bool {
    eventually(Duration::from_secs(30), || async {
        let Some(addr) = spawner.http_addr(id) else {
            return false;
        };
        request(addr, "GET", "/health", None)
            .await
            .is_ok_and(|r| r.status == 200)
    })
    .await
}

fn alive(pid: u32) -> bool {
    std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_relay_is_healthy_restarted_after_a_crash_and_reaped_on_stop() {
    let dir = tempfile::tempdir().unwrap();
    // The control URL points at a control plane that is not there: the relay must still run.
    let spawner = ProcessSpawner::new(ProcessConfig::new(
        relay_binary(),
        "http://127.0.0.1:9".into(),
        dir.path().into(),
    ))
    .unwrap();
    let id = spawner.spawn().await.unwrap();
    assert!(
        healthy(&spawner, &id).await,
        "never healthy; log: {}",
        std::fs::read_to_string(spawner.log_path(&id)).unwrap_or_default()
    );
    let config = std::fs::read_to_string(dir.path().join(format!("{id}.toml"))).unwrap();
    assert!(config.contains(&format!("relay-id = \"{id}\"")), "{config}");
    let first_pid = spawner.pid(&id).unwrap();
    let first_http = spawner.http_addr(&id).unwrap();

    // Crash it: supervision restarts it under the same id.
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &first_pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let restarted = eventually(Duration::from_secs(30), || async {
        spawner.supervise().await.unwrap();
        spawner.pid(&id).is_some_and(|p| p != first_pid)
            && spawner.http_addr(&id).is_some_and(|a| a != first_http)
    })
    .await;
    assert!(restarted, "not restarted");
    assert_eq!(spawner.restart_count(), 1);
    assert!(healthy(&spawner, &id).await, "restarted relay not healthy");
    assert!(!alive(first_pid), "the crashed process is gone");

    // Stop: SIGTERM, the relay drains and exits, supervision reaps it.
    let pid = spawner.pid(&id).unwrap();
    spawner.stop(id.clone()).await.unwrap();
    let reaped = eventually(Duration::from_secs(30), || async {
        spawner.supervise().await.unwrap();
        spawner.running().is_empty()
    })
    .await;
    assert!(reaped, "not reaped");
    assert!(!alive(pid), "process {pid} still running after reaping");
    assert_eq!(spawner.restart_count(), 1, "a stopped relay is not restarted");
}

#[test]
fn a_missing_binary_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = ProcessSpawner::new(ProcessConfig::new(
        dir.path().join("no-such-relay"),
        "http://127.0.0.1:9".into(),
        dir.path().into(),
    ))
    .unwrap_err();
    assert!(err.to_string().contains("no-such-relay"), "{err}");
}
