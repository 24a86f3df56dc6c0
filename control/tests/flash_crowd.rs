//! A flash crowd end to end on loopback with real processes and media: control (process
//! spawner) + an origin relay + one edge of small capacity; a publisher sends a synthetic live
//! stream; viewers arrive fast, each asking control where to go, and subscribe there. Proves:
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

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use banyan_bench::publisher::{self, Broadcast, Stream};
use banyan_bench::subscriber::{self, Counters, Plan};
use banyan_certs::ServerVerification;
use banyan_moq::coding::TrackNamespace;
use banyan_moq::session::{Client, ClientOptions, SessionConfig, TransportConfig};
use bytes::Bytes;
use common::*;
use tokio::time::Instant;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
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

    // Watch the fleet: capacity never exceeded, when each spawned relay appeared.
    let t0 = Instant::now();
    let timeline: Arc<Mutex<BTreeMap<String, Duration>>> = Arc::default();
    let overfull: Arc<Mutex<Vec<String>>> = Arc::default();
    let carriers: Arc<Mutex<HashMap<String, (u64, bool)>>> = Arc::default();
    let (monitor_stop, mut monitor_rx) = tokio::sync::watch::channel(false);
    let monitor = {
        let (timeline, overfull, carriers, addr) =
            (timeline.clone(), overfull.clone(), carriers.clone(), c.addr);
        tokio::spawn(async move {
            loop {
                let status = get(addr, "/v1/status").await.json();
                for r in status["relays"].as_array().unwrap() {
                    let id = r["relay_id"].as_str().unwrap().to_owned();
                    let sessions = r["load"]["sessions"].as_u64().unwrap();
                    let cap = r["capacity"]["max_viewers"].as_u64().unwrap();
                    if sessions > cap {
                        overfull.lock().unwrap().push(format!("{id}: {sessions} > {cap}"));
                    }
                    if r["spawned"] == true {
                        timeline.lock().unwrap().entry(id.clone()).or_insert(t0.elapsed());
                    }
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

    // The crowd: each viewer asks control, then subscribes where it is told.
    let counters = Arc::new(Counters::default());
    let (abort_tx, abort) = tokio::sync::watch::channel(false);
    let clients: Vec<Client> = (0..8).map(|_| new_client()).collect();
    let mut subscribers = Vec::new();
    let mut assigned: BTreeMap<String, u64> = BTreeMap::new();
    let mut refused = 0;
    for j in 0..viewers {
        tokio::time::sleep_until(t0 + arrival.mul_f64(j as f64 / viewers as f64)).await;
        let r = get(c.addr, "/v1/watch/bench/0").await;
        if r.status != 200 {
            refused += 1;
            continue;
        }
        let j_ = r.json();
        *assigned
            .entry(j_["relay_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
        let plan = Plan {
            url: url::Url::parse(j_["moqt"].as_str().unwrap()).unwrap(),
            client: clients[(j % 8) as usize].clone(),
            options: ClientOptions::default(),
            broadcast: broadcast.clone(),
            start_at: Instant::now(),
        };
        subscribers.push(tokio::spawn(subscriber::run(
            plan,
            counters.clone(),
            abort.clone(),
        )));
    }
    // Let the last viewers get their first frames, then everyone leaves.
    let settle = eventually(Duration::from_secs(10), || async {
        counters.connected.load(std::sync::atomic::Ordering::Relaxed)
            + counters.failed.load(std::sync::atomic::Ordering::Relaxed)
            >= viewers - refused
    })
    .await;
    // Then about a second of video (30 objects) per viewer before everyone leaves.
    let target = counters.objects.load(std::sync::atomic::Ordering::Relaxed) + (viewers - refused) * 30;
    let watched = eventually(Duration::from_secs(20), || async {
        counters.objects.load(std::sync::atomic::Ordering::Relaxed) >= target
    })
    .await;
    let _ = abort_tx.send(true);
    let mut outcomes = Vec::new();
    for s in subscribers {
        outcomes.push(s.await.unwrap());
    }
    let received = outcomes.iter().filter(|o| o.objects > 0).count() as u64;
    let mut ttff: Vec<u64> = outcomes
        .iter()
        .filter_map(|o| o.ttff_us)
        .map(|us| us / 1000)
        .collect();
    ttff.sort_unstable();
    let timeline_now = timeline.lock().unwrap().clone();
    println!(
        "flash crowd: {viewers} viewers in {arrival:?}, relays of {capacity}; assigned {assigned:?}; refused {refused}; \
         received media {received}/{viewers}; time to first frame p50 {} ms, p95 {} ms; spawned relays first seen at {timeline_now:?}",
        percentile(&ttff, 50.0),
        percentile(&ttff, 95.0)
    );
    assert!(settle, "viewers never all connected or failed");
    assert!(watched, "media stopped flowing");
    assert!(
        overfull.lock().unwrap().is_empty(),
        "over capacity: {:?}",
        overfull.lock().unwrap()
    );
    assert!(
        received * 100 >= viewers * 99,
        "only {received} of {viewers} viewers received media"
    );
    assert!(!timeline_now.is_empty(), "nothing was spawned");
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
