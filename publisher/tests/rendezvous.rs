//! Proves `banyan-watch --rendezvous` against a draft-18 relay, with real processes: a watcher
//! started before the broadcaster has its SUBSCRIBE held (default 5 s) and plays the broadcast
//! once it starts, in the same session; one that asks for no wait (`--rendezvous 0s`) is
//! refused at once with DOES_NOT_EXIST; one that asks for 300 ms of a broadcast that never
//! comes is answered TIMEOUT.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{announced, kill, publisher, stop_watcher, until, watcher, within, TestRelay, WATCH};

/// Run `banyan-watch` for `broadcast` with `extra` flags to its end (bounded): whether it
/// succeeded, its stderr, how long it ran.
async fn watch_once(relay: &TestRelay, broadcast: &str, extra: &[&str]) -> (bool, String, Duration) {
    let url = relay.url();
    let mut args = vec![url.as_str(), "--broadcast", broadcast, "--tls-hash", &relay.hash];
    args.extend(extra);
    let mut command = common::command(WATCH, &args);
    command.stdout(Stdio::null());
    let started = Instant::now();
    let out = within(Duration::from_secs(20), "banyan-watch exits", command.output())
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_started_before_the_broadcaster_waits_for_it() {
    let relay = TestRelay::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let summary_path = dir.path().join("summary.json");
    let broadcast = "rendezvous/late";

    // Nobody publishes yet. Asking for no wait: refused at once (the relay's cap is 5 s, so an
    // answer well under it is not a wait that ran out).
    let (ok, stderr, took) = watch_once(&relay, broadcast, &["--rendezvous", "0s"]).await;
    eprintln!(
        "rendezvous: --rendezvous 0s answered in {took:?}: {}",
        stderr.trim()
    );
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("SUBSCRIBE catalog") && stderr.contains("DoesNotExist"),
        "{stderr}"
    );
    assert!(
        took < Duration::from_millis(2500),
        "refused at once, not after {took:?}"
    );

    // Asking for a short wait of a broadcast that never comes: TIMEOUT when it runs out.
    let (ok, stderr, took) = watch_once(&relay, "rendezvous/never", &["--rendezvous", "300ms"]).await;
    eprintln!(
        "rendezvous: --rendezvous 300ms answered in {took:?}: {}",
        stderr.trim()
    );
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("SUBSCRIBE catalog") && stderr.contains("Timeout"),
        "{stderr}"
    );
    assert!(
        took >= Duration::from_millis(300),
        "held for the wait asked, not {took:?}"
    );

    // The default wait: the watcher's catalog SUBSCRIBE is held until the broadcaster starts.
    let (watch, watch_log) = watcher(&relay, broadcast, &summary_path, None, &[]);
    let held = relay.metrics.clone();
    until(
        Duration::from_secs(10),
        "the relay holds the watcher's SUBSCRIBE",
        &watch_log,
        || held.tracks_awaiting_publisher.get() >= 1,
    )
    .await;
    let (mut broadcaster, broadcaster_log) = publisher(&relay, broadcast, None);
    announced(&mut broadcaster, &broadcaster_log, Duration::from_secs(10))
        .await
        .expect("the broadcaster is accepted");
    until(
        Duration::from_secs(10),
        "the watcher plays the broadcast",
        &watch_log,
        || watch_log.groups() >= 2,
    )
    .await;
    let summary = stop_watcher(watch, &watch_log, &summary_path).await;
    assert_eq!(
        (summary["sessions"].as_u64(), summary["resubscribes"].as_u64()),
        (Some(1), Some(0)),
        "the first session's SUBSCRIBEs were answered: {summary}"
    );
    kill(&mut broadcaster).await;
    relay.shutdown().await;
}
