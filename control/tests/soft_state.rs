//! Soft state: a relay that misses heartbeats is dropped, and a restarted control plane
//! rebuilds its whole view from heartbeats within two heartbeat intervals.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use banyan_control::api::{Heartbeat, HeartbeatResponse};
use common::*;

fn relay_count(status: &serde_json::Value) -> usize {
    status["relays"].as_array().map(Vec::len).unwrap_or(0)
}

#[tokio::test]
async fn a_relay_that_stops_heartbeating_is_dropped() {
    let c = start(&config(&[
        "--heartbeat-interval",
        "100ms",
        "--heartbeat-expiry",
        "400ms",
        "--tick",
        "50ms",
    ]))
    .await;
    send(c.addr, &origin("o", "eu", 100, "live/x")).await;
    let r = send(c.addr, &heartbeat("e", "eu", 100, 0)).await.json();
    assert_eq!(
        (r["interval_ms"].as_u64(), r["expiry_ms"].as_u64()),
        (Some(100), Some(400))
    );
    assert_eq!(relay_count(&get(c.addr, "/v1/status").await.json()), 2);
    // Keep the origin alive; let e go silent.
    let start = Instant::now();
    let gone = eventually(Duration::from_secs(5), || async {
        send(c.addr, &origin("o", "eu", 100, "live/x")).await;
        relay_count(&get(c.addr, "/v1/status").await.json()) == 1
    })
    .await;
    assert!(gone, "e was never dropped");
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "dropped before the expiry: {:?}",
        start.elapsed()
    );
    assert_eq!(get(c.addr, "/v1/watch/live/x").await.json()["relay_id"], "o");
    assert_eq!(
        get(c.addr, "/v1/route/live/x?relay=e").await.status,
        404,
        "e is unknown now"
    );
    assert!(get(c.addr, "/metrics")
        .await
        .body
        .contains("banyan_control_relays_expired_total 1"));
    // The origin goes silent too: its broadcast is unknown.
    let unknown = eventually(Duration::from_secs(5), || async {
        get(c.addr, "/v1/watch/live/x").await.status == 404
    })
    .await;
    assert!(unknown);
}

/// A simulated relay: posts its heartbeat every interval the control plane asks for, and
/// retries at the last interval while the control plane is unreachable.
fn heartbeat_loop(
    addr: SocketAddr,
    hb: Heartbeat,
    stop: Arc<tokio::sync::Notify>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let body = serde_json::to_string(&hb).unwrap();
        let mut interval = Duration::from_millis(250);
        loop {
            if let Ok(reply) = request(addr, "POST", "/v1/relays/heartbeat", Some(&body)).await {
                if let Ok(r) = serde_json::from_str::<HeartbeatResponse>(&reply.body) {
                    interval = Duration::from_millis(r.interval_ms);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.notified() => return,
            }
        }
    })
}

#[tokio::test]
async fn a_restarted_control_plane_rebuilds_from_heartbeats_within_two_intervals() {
    let interval = Duration::from_millis(500);
    let args = ["--heartbeat-interval", "500ms", "--heartbeat-expiry", "2s"];
    let first = start(&config(&args)).await;
    let addr = first.addr;
    let stop = Arc::new(tokio::sync::Notify::new());
    let mut relays = vec![heartbeat_loop(
        addr,
        origin("o", "eu", 100, "live/r"),
        stop.clone(),
    )];
    for i in 0..5 {
        relays.push(heartbeat_loop(
            addr,
            heartbeat(&format!("e{i}"), "eu", 100, 0),
            stop.clone(),
        ));
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            relay_count(&get(addr, "/v1/status").await.json()) == 6
        })
        .await
    );
    first.stop().await;
    assert!(
        request(addr, "GET", "/health", None).await.is_err(),
        "the first instance is down"
    );

    // A new instance on the same address starts with nothing and hears from every relay.
    let mut config = config(&args);
    config.listen = addr;
    let restarted = Instant::now();
    let second = start(&config).await;
    let rebuilt = eventually(Duration::from_secs(10), || async {
        relay_count(&get(addr, "/v1/status").await.json()) == 6
    })
    .await;
    let took = restarted.elapsed();
    assert!(rebuilt, "state never rebuilt");
    assert!(
        took <= 2 * interval,
        "rebuilt in {took:?}, more than two intervals"
    );
    let w = get(addr, "/v1/watch/live/r").await;
    assert_eq!(w.status, 200, "{}", w.body);
    assert_ne!(w.json()["relay_id"], "o");
    stop.notify_waiters();
    for r in relays {
        r.abort();
    }
    second.stop().await;
}
