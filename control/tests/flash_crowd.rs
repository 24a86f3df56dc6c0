//! A flash crowd end to end on loopback with real processes and media: control (process
//! spawner) + an origin relay + one edge of small capacity; a publisher sends a synthetic live
//! stream; viewers arrive fast, each asking control where to go, and subscribe there (the
//! `banyan-bench flash` driver, in this process). Proves:
//! no relay ever exceeds its capacity, spawned relays join the tree (pull from a parent and
//! serve viewers), at least 99 % of viewers receive media; prints time-to-first-frame and the
//! spawn timeline. Then the viewers leave and the spawned relays drain and exit.
//!
//! Scaled to the 2-core CI machine: 120 viewers in 6 s onto relays of 20 viewers (the issue's
//! 1,000 in 10 s onto relays of 100 is the same shape, ~8 relays' worth, and is run with
//! `BANYAN_FLASH_VIEWERS=1000 BANYAN_FLASH_CAPACITY=100 BANYAN_FLASH_SECONDS=10`).
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use banyan_bench::flash::report::RelaySeen;
use banyan_bench::publisher::{self, Broadcast, Stream};
use banyan_bench::{FlashArgs, FlashBench};
use banyan_certs::ServerVerification;
use banyan_moq::coding::TrackNamespace;
use banyan_moq::session::{Client, ClientOptions, SessionConfig, TransportConfig};
use bytes::Bytes;
use clap::Parser;
use common::*;
use tokio::time::Instant;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flash_crowd_spawns_relays_that_serve_media_without_overfilling() {
    let viewers = env_or("BANYAN_FLASH_VIEWERS", 120);
    let capacity = env_or("BANYAN_FLASH_CAPACITY", 20);
    let arrival = Duration::from_secs(env_or("BANYAN_FLASH_SECONDS", 6));
    let binary = relay_binary();
    let dir = tempfile::tempdir().unwrap();
    let spawn_dir = dir.path().join("relays");
    let capacity_arg = capacity.to_string();
    let c = start(&config(&[
        "--spawner",
        "process",
        "--relay-binary",
        binary.to_str().unwrap(),
        "--spawn-dir",
        spawn_dir.to_str().unwrap(),
        "--spawn-region",
        "local",
        "--spawn-capacity-viewers",
        &capacity_arg,
        "--spawn-relay-arg=--upstream-insecure",
        "--spawn-relay-arg=--drain-timeout=2s",
        "--heartbeat-interval",
        "200ms",
        "--heartbeat-expiry",
        "1s",
        "--assignment-grace",
        "1s",
        "--tick",
        "100ms",
        "--join-rate-halflife",
        "500ms",
        "--replicate-lead",
        "2s",
        "--spawn-lead",
        "4s",
        "--idle-cooldown",
        "2s",
        "--max-spawned",
        "12",
    ]))
    .await;
    let (_origin, origin_udp) = relay_process(&binary, c.addr, "origin", 10_000).await;
    let (_edge, _) = relay_process(&binary, c.addr, "edge", capacity).await;

    // The publisher: a synthetic 30 fps stream, one group per second.
    let tls = banyan_certs::client_config(&ServerVerification::InsecureSkipVerify, &[]).unwrap();
    let new_client =
        || Client::new(tls.clone(), &TransportConfig::default(), SessionConfig::default()).unwrap();
    let broadcast = Arc::new(Broadcast::new(TrackNamespace::from_path("bench/0").unwrap()));
    let publisher_client = new_client();
    let origin_url = url::Url::parse(&format!("moqt://127.0.0.1:{}", origin_udp.port())).unwrap();
    let (session, driver) = publisher_client
        .connect(&origin_url, ClientOptions::default())
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = driver.run().await;
    });
    let publications = publisher::announce(&session, std::slice::from_ref(&broadcast))
        .await
        .unwrap();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let stream = Stream {
        interval: Duration::from_millis(33),
        gop: 30,
        payload: Bytes::from(vec![0x5a; 1000]),
    };
    tokio::spawn(publisher::serve(
        session.clone(),
        vec![broadcast.clone()],
        stream,
        stop.clone(),
    ));
    let known = eventually(Duration::from_secs(10), || async {
        get(c.addr, "/v1/status").await.json()["relays"]
            .as_array()
            .map(Vec::len)
            == Some(2)
            && get(c.addr, "/v1/watch/bench/0").await.status == 200
    })
    .await;
    assert!(known, "origin and edge never registered with the broadcast");

    // Watch the fleet for spawned relays that pull the broadcast from a parent and serve it.
    let carriers: Arc<Mutex<HashMap<String, (u64, bool)>>> = Arc::default();
    let (monitor_stop, mut monitor_rx) = tokio::sync::watch::channel(false);
    let monitor = {
        let (carriers, addr) = (carriers.clone(), c.addr);
        tokio::spawn(async move {
            loop {
                let status = get(addr, "/v1/status").await.json();
                for r in status["relays"].as_array().unwrap() {
                    let id = r["relay_id"].as_str().unwrap().to_owned();
                    let viewers = r["broadcasts"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|b| b["namespace"] == "bench/0")
                        .and_then(|b| b["viewers"].as_u64())
                        .unwrap_or(0);
                    let has_parent = r["parents"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|p| p["namespace"] == "bench/0");
                    let mut carriers = carriers.lock().unwrap();
                    let entry = carriers.entry(id).or_default();
                    entry.0 = entry.0.max(viewers);
                    entry.1 |= has_parent;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = monitor_rx.changed() => return,
                }
            }
        })
    };

    // The crowd: `banyan-bench flash`'s driver, each viewer asking control and subscribing
    // where it is told; it also polls /v1/status for each relay's peak load and first sighting.
    let args = FlashArgs::try_parse_from([
        "flash".to_owned(),
        format!("http://{}", c.addr),
        "--broadcast=bench/0".into(),
        format!("--viewers={viewers}"),
        format!("--arrival={}ms", arrival.as_millis()),
        // A second of video (30 objects) per viewer after the last arrives, and then some.
        "--watch=3s".into(),
        "--endpoints=8".into(),
        "--tls-insecure".into(),
        "--expect-media=99".into(),
    ])
    .unwrap();
    let t0 = Instant::now();
    let report = FlashBench::from_args(&args).unwrap().run(|_| {}).await.unwrap();
    eprint!("{}", report.summary());
    let spawned: Vec<(&str, f64)> = report
        .relays
        .iter()
        .filter(|r| r.spawned)
        .map(|r| (r.relay_id.as_str(), r.first_seen_s))
        .collect();
    println!(
        "flash crowd: {viewers} viewers in {arrival:?}, relays of {capacity}; assigned {:?}; refused {:?}; \
         received media {}/{viewers}; time to first frame p50 {:?} ms, p95 {:?} ms; spawned relays first seen at {spawned:?} s",
        report.assigned,
        report.viewers.refused,
        report.viewers.with_media,
        report.ttff.p50,
        report.ttff.p95,
    );
    assert_eq!(report.viewers.total, viewers);
    assert!(
        report.viewers.objects >= report.viewers.with_media * 30,
        "media stopped flowing: {} objects for {} viewers",
        report.viewers.objects,
        report.viewers.with_media
    );
    let overfull: Vec<&RelaySeen> = report
        .relays
        .iter()
        .filter(|r| r.over_capacity_polls > 0)
        .collect();
    assert!(overfull.is_empty(), "over capacity: {overfull:?}");
    assert!(
        report.viewers.with_media * 100 >= viewers * 99,
        "only {} of {viewers} viewers received media",
        report.viewers.with_media
    );
    assert!(
        report.verdict.as_ref().is_some_and(|v| v.pass),
        "{:?}",
        report.verdict
    );
    assert!(!spawned.is_empty(), "nothing was spawned");
    let joined: Vec<String> = carriers
        .lock()
        .unwrap()
        .iter()
        .filter(|(id, (viewers, parent))| id.starts_with("spawned-") && *viewers > 0 && *parent)
        .map(|(id, _)| id.clone())
        .collect();
    assert!(
        !joined.is_empty(),
        "no spawned relay pulled the broadcast from a parent and served viewers: {:?}",
        carriers.lock().unwrap()
    );

    // Everyone left: the spawned relays drain, exit and are reaped.
    let drained = eventually(Duration::from_secs(60), || async {
        let status = get(c.addr, "/v1/status").await.json();
        !status["relays"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["spawned"] == true)
    })
    .await;
    let m = get(c.addr, "/metrics").await.body;
    assert!(drained, "spawned relays still registered: {m}");
    println!(
        "after the crowd left: all spawned relays drained and exited ({:?} after the first viewer)",
        t0.elapsed()
    );
    let _ = stop_tx.send(true);
    let _ = monitor_stop.send(true);
    let _ = monitor.await;
    drop(publications);
    c.stop().await;
}
