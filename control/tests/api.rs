//! The HTTP API over real HTTP on 127.0.0.1:0: heartbeats build the registry; viewer assignment
//! respects capacity, high-water and region and mints tokens the relay accepts; route lookups
//! bound fan-out and depth and prefer the region; drain, CORS, metrics, status page.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use banyan_control::api::BroadcastLoad;
use banyan_relay::auth::Authenticator;
use common::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

#[tokio::test]
async fn watch_fills_region_below_high_water_then_spills_then_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("hs.key");
    std::fs::write(&key, format!("{SECRET}\n")).unwrap();
    let c = start(&config(&["--auth-key", key.to_str().unwrap()])).await;
    // Origin in eu (capacity 5, one session: its publisher), two eu edges and one us edge of 10.
    send(c.addr, &origin("o", "eu", 5, "live/a")).await;
    for (id, region) in [("e1", "eu"), ("e2", "eu"), ("u1", "us")] {
        send(c.addr, &heartbeat(id, region, 10, 0)).await;
    }
    let auth = Authenticator::from_key(SECRET.as_bytes()).unwrap();
    let mut order = Vec::new();
    loop {
        let r = get(c.addr, "/v1/watch/live/a?region=eu").await;
        if r.status != 200 {
            assert_eq!(r.status, 503, "{}", r.body);
            assert_eq!(r.json()["error"], "no_capacity");
            break;
        }
        let j = r.json();
        let claims = auth
            .verify(j["token"].as_str().unwrap())
            .expect("the relay accepts the token");
        assert!(claims.subscribe && !claims.publish, "subscribe-only: {claims:?}");
        assert_eq!(claims.ns, "live/a");
        assert_eq!(
            claims.room.as_deref(),
            j["chat_room"].as_str(),
            "the token holds the viewer to its chat room"
        );
        assert!(j["webtransport"].as_str().unwrap().starts_with("https://"));
        assert_eq!(
            j["websocket"].as_str().unwrap(),
            format!("ws://{}.test:8080/", j["relay_id"].as_str().unwrap()),
            "the relay's WebSocket URL, for browsers without WebTransport"
        );
        assert_eq!(j["cert_sha256"].as_str().unwrap().len(), 64);
        order.push(j["relay_id"].as_str().unwrap().to_owned());
        assert!(order.len() <= 100, "never refuses");
    }
    let count = |id: &str, upto: usize| order.iter().take(upto).filter(|r| *r == id).count();
    // A carrier is filled to high-water (8 of 10) before another eu edge starts pulling.
    assert_eq!(count("e1", 8), 8, "{order:?}");
    assert_eq!(count("e2", 16), 8, "{order:?}");
    // Then the us edge (below high-water beats same region above it) up to its high-water.
    assert_eq!(count("u1", 24), 8, "{order:?}");
    // Then the origin (below its high-water: 1 session + 3 = 4 of 5), then everything to
    // capacity, the origin last.
    assert_eq!(
        order.iter().skip(24).take(3).filter(|r| *r == "o").count(),
        3,
        "{order:?}"
    );
    assert_eq!(order.last().map(String::as_str), Some("o"), "{order:?}");
    let totals: HashMap<&str, usize> = ["o", "e1", "e2", "u1"]
        .iter()
        .map(|id| (*id, count(id, order.len())))
        .collect();
    assert_eq!(totals["e1"], 10);
    assert_eq!(totals["e2"], 10);
    assert_eq!(totals["u1"], 10);
    assert_eq!(totals["o"], 4, "origin: capacity 5 minus its publisher session");
    assert_eq!(order.len(), 34);
    let metrics = get(c.addr, "/metrics").await.body;
    assert!(
        metrics.contains("banyan_control_watch_assigned_total 34"),
        "{metrics}"
    );
    assert!(
        metrics.contains("banyan_control_watch_no_capacity_total 1"),
        "{metrics}"
    );
}

/// Moderators: a user the broadcaster named (`--moderator BROADCAST=USER`) gets a token with
/// the `mod` claim for that broadcast only; other viewers are named by `user` or anonymously
/// (distinct names) without it; a malformed `user` is a clear 400.
#[tokio::test]
async fn watch_mints_the_mod_claim_for_named_moderators_only() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("hs.key");
    std::fs::write(&key, format!("{SECRET}\n")).unwrap();
    let c = start(&config(&[
        "--auth-key",
        key.to_str().unwrap(),
        "--moderator",
        "live/a=alice",
    ]))
    .await;
    send(c.addr, &origin("o", "eu", 50, "live/a")).await;
    send(c.addr, &origin("o2", "eu", 50, "live/b")).await;
    let auth = Authenticator::from_key(SECRET.as_bytes()).unwrap();
    let claims = |path: &'static str| {
        let auth = &auth;
        async move {
            let r = get(c.addr, path).await;
            assert_eq!(r.status, 200, "{}", r.body);
            let j = r.json();
            let claims = auth.verify(j["token"].as_str().unwrap()).unwrap();
            assert_eq!(
                claims.sub.as_deref(),
                j["sub"].as_str(),
                "the page learns its name"
            );
            assert_eq!(claims.moderator, j["moderator"].as_bool().unwrap_or(false));
            claims
        }
    };
    let alice = claims("/v1/watch/live/a?user=alice").await;
    assert!(alice.moderator && alice.sub.as_deref() == Some("alice"));
    assert!(
        !claims("/v1/watch/live/b?user=alice").await.moderator,
        "only where named"
    );
    assert!(!claims("/v1/watch/live/a?user=bob").await.moderator);
    let (a, b) = (claims("/v1/watch/live/a").await, claims("/v1/watch/live/a").await);
    assert!(a.sub.as_deref().unwrap().starts_with("anon-") && a.sub != b.sub);
    let r = get(c.addr, "/v1/watch/live/a?user=a%20b").await;
    assert_eq!((r.status, r.json()["error"].as_str()), (400, Some("bad_user")));
}

/// Chat rooms over HTTP: the edges' heartbeats say who is in which room; a returning viewer
/// naming its room gets it back while it has space; a malformed room is a clear 400.
#[tokio::test]
async fn watch_fills_chat_rooms_from_heartbeats_and_returns_a_viewer_to_its_room() {
    let c = start(&config(&["--chat-room-size", "2"])).await;
    send(c.addr, &origin("o", "eu", 100, "live/a")).await;
    let mut edge = heartbeat("e1", "eu", 100, 3);
    edge.broadcasts.push(BroadcastLoad {
        namespace: "live/a".into(),
        viewers: 3,
        local: false,
        rooms: [(0, 2), (1, 1)].into(),
    });
    send(c.addr, &edge).await;
    let room = |path: &'static str| async move {
        let r = get(c.addr, path).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["chat_room"].as_str().unwrap().to_owned()
    };
    // Room 0 is full; the returning viewer of room 1 goes back there, which fills it.
    assert_eq!(room("/v1/watch/live/a?room=1").await, "1");
    assert_eq!(room("/v1/watch/live/a").await, "2");
    assert_eq!(room("/v1/watch/live/a?room=0").await, "2", "room 0 is full");
    let r = get(c.addr, "/v1/watch/live/a?room=first").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"], "bad_room");
}

#[tokio::test]
async fn publish_assigns_an_origin_that_watch_and_route_then_use() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("hs.key");
    std::fs::write(&key, SECRET).unwrap();
    let c = start(&config(&["--auth-key", key.to_str().unwrap()])).await;
    assert_eq!(
        post(c.addr, "/v1/publish/live/b", "").await.status,
        503,
        "no relays yet"
    );
    send(c.addr, &heartbeat("a", "eu", 100, 0)).await;
    send(c.addr, &heartbeat("b", "us", 100, 0)).await;
    let r = post(c.addr, "/v1/publish/live/b?region=us", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(j["relay_id"], "b", "same region first");
    let claims = Authenticator::from_key(SECRET.as_bytes())
        .unwrap()
        .verify(j["token"].as_str().unwrap())
        .unwrap();
    assert!(claims.publish && !claims.subscribe && claims.ns == "live/b");
    // Asking again gives the same origin.
    assert_eq!(
        post(c.addr, "/v1/publish/live/b", "").await.json()["relay_id"],
        "b"
    );
    // Viewers are known now, and relay a is routed to b.
    assert_eq!(
        get(c.addr, "/v1/watch/live/b").await.json()["relay_id"],
        "a",
        "origin last"
    );
    let route = get(c.addr, "/v1/route/live/b?relay=a").await.json();
    assert_eq!(route["upstream"][0], "moqt://b.test:4443");
    assert_eq!(
        get(c.addr, "/v1/route/live/b?relay=b").await.json()["upstream"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[tokio::test]
async fn route_bounds_fan_out_and_depth() {
    let c = start(&config(&[
        "--max-children",
        "2",
        "--max-depth",
        "2",
        "--route-alternatives",
        "1",
    ]))
    .await;
    send(c.addr, &origin("o", "eu", 100, "live/t")).await;
    let relays: Vec<String> = (1..=7).map(|i| format!("r{i}")).collect();
    for id in &relays {
        send(c.addr, &heartbeat(id, "eu", 100, 0)).await;
    }
    let mut parent_of: HashMap<String, String> = HashMap::new();
    let mut refused = Vec::new();
    for id in &relays {
        let r = get(c.addr, &format!("/v1/route/live/t?relay={id}")).await;
        if r.status == 200 {
            let url = r.json()["upstream"][0].as_str().unwrap().to_owned();
            let parent = url
                .trim_start_matches("moqt://")
                .trim_end_matches(".test:4443")
                .to_owned();
            parent_of.insert(id.clone(), parent);
        } else {
            assert_eq!(r.status, 503, "{}", r.body);
            refused.push(id.clone());
        }
    }
    fn depth(parent_of: &HashMap<String, String>, id: &str) -> usize {
        let mut d = 0;
        let mut at = id.to_owned();
        while let Some(p) = parent_of.get(&at) {
            d += 1;
            at = p.clone();
        }
        d
    }
    let mut children: HashMap<&str, usize> = HashMap::new();
    for p in parent_of.values() {
        *children.entry(p).or_default() += 1;
    }
    assert!(children.values().all(|n| *n <= 2), "fan-out ≤ 2: {parent_of:?}");
    assert!(
        relays.iter().all(|r| depth(&parent_of, r) <= 2),
        "depth ≤ 2: {parent_of:?}"
    );
    // o feeds 2, each of those feeds 2: 6 relays fit, the 7th is refused.
    assert_eq!(parent_of.len(), 6, "{parent_of:?}");
    assert_eq!(refused, vec!["r7".to_owned()]);
    // Reported links count as well as answered routes: a relay reporting o as its parent
    // re-resolving is not offered its own descendants.
    let child_of_r1: Vec<&String> = parent_of
        .iter()
        .filter(|(_, p)| *p == "r1")
        .map(|(c, _)| c)
        .collect();
    send(c.addr, &with_parent(heartbeat("r1", "eu", 100, 0), "live/t", "o")).await;
    let again = get(c.addr, "/v1/route/live/t?relay=r1").await.json();
    for child in child_of_r1 {
        assert!(
            !again["upstream"].to_string().contains(&format!("{child}.test")),
            "{again}"
        );
    }
}

#[tokio::test]
async fn route_prefers_the_askers_region() {
    let c = start(&config(&[])).await;
    send(c.addr, &origin("o", "eu", 100, "live/r")).await;
    send(
        c.addr,
        &with_parent(heartbeat("us1", "us", 100, 0), "live/r", "o"),
    )
    .await;
    send(c.addr, &heartbeat("us2", "us", 100, 0)).await;
    send(c.addr, &heartbeat("eu2", "eu", 100, 0)).await;
    let us = get(c.addr, "/v1/route/live/r?relay=us2").await.json();
    assert_eq!(
        us["upstream"][0], "moqt://us1.test:4443",
        "same region beats a shallower parent"
    );
    assert_eq!(
        us["upstream"][1], "moqt://o.test:4443",
        "the origin is the alternative"
    );
    let eu = get(c.addr, "/v1/route/live/r?relay=eu2").await.json();
    assert_eq!(eu["upstream"][0], "moqt://o.test:4443");
}

#[tokio::test]
async fn drained_relays_get_no_viewers_and_are_told_to_drain() {
    let c = start(&config(&[])).await;
    send(c.addr, &origin("o", "eu", 100, "live/d")).await;
    send(c.addr, &heartbeat("e1", "eu", 100, 0)).await;
    send(c.addr, &heartbeat("e2", "eu", 100, 50)).await;
    assert_eq!(
        get(c.addr, "/v1/watch/live/d").await.json()["relay_id"],
        "e1",
        "least loaded"
    );
    let r = post(c.addr, "/v1/relays/e1/drain", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["draining"], true);
    assert_eq!(
        send(c.addr, &heartbeat("e1", "eu", 100, 1)).await.json()["drain"],
        true
    );
    assert_eq!(
        send(c.addr, &heartbeat("e2", "eu", 100, 50)).await.json()["drain"],
        false
    );
    for _ in 0..5 {
        assert_eq!(get(c.addr, "/v1/watch/live/d").await.json()["relay_id"], "e2");
    }
}

#[tokio::test]
async fn cors_status_page_metrics_health() {
    let c = start(&config(&[])).await;
    let pre = request(c.addr, "OPTIONS", "/v1/watch/live/x", None)
        .await
        .unwrap();
    assert_eq!(pre.status, 204);
    assert_eq!(pre.header("access-control-allow-origin"), Some("*"));
    assert!(pre
        .header("access-control-allow-methods")
        .unwrap()
        .contains("GET"));
    let h = get(c.addr, "/health").await;
    assert_eq!((h.status, h.body.trim()), (200, "ok"));
    assert_eq!(h.header("access-control-allow-origin"), Some("*"));
    send(c.addr, &origin("o", "eu", 100, "live/s")).await;
    send(c.addr, &with_parent(heartbeat("e", "eu", 100, 3), "live/s", "o")).await;
    let status = get(c.addr, "/v1/status").await.json();
    let e = status["relays"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["relay_id"] == "e")
        .unwrap();
    assert_eq!(e["parents"][0]["relay_id"], "o", "parent URL mapped to its relay");
    assert_eq!(status["broadcasts"][0]["origin"], "o");
    let page = get(c.addr, "/").await;
    assert!(
        page.body.contains("<html") && page.body.contains("v1/status") && page.body.contains("v1/history")
    );
    // The control loop samples the fleet once a second for the page's graphs.
    let sampled = eventually(Duration::from_secs(5), || async {
        let h = get(c.addr, "/v1/history").await.json();
        h["samples"]
            .as_array()
            .is_some_and(|s| s.last().is_some_and(|s| s["relays"] == 2))
    })
    .await;
    let history = get(c.addr, "/v1/history").await.json();
    assert!(sampled, "{history}");
    assert_eq!(history["interval_ms"], 1000);
    let last = history["samples"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["broadcasts"][0]["broadcast"], "live/s", "{history}");
    assert!(last["at_ms"].as_u64().unwrap() <= history["now_ms"].as_u64().unwrap());
    let m = get(c.addr, "/metrics").await;
    assert!(m.body.contains("banyan_control_relays 2"), "{}", m.body);
    assert!(m.body.contains("banyan_control_heartbeats_total 2"), "{}", m.body);
}

/// `POST /v1/refresh` answers a token this control plane minted with a fresh one: the same
/// subject (unique per viewer), namespace, actions and room, a later expiry, accepted by a
/// relay with the same key (HS256 and ES256). A token signed with another key, a malformed
/// body or an expired token is refused (401 `bad_token`, 400) and counted.
#[tokio::test]
async fn refresh_keeps_the_subject_and_refuses_foreign_tokens() {
    use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let es256 = pem::encode(&pem::Pem::new("PRIVATE KEY", pair.to_pkcs8v1().unwrap().as_ref()));
    for key_text in [format!("{SECRET}\n"), es256] {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("jwt.key");
        std::fs::write(&key, &key_text).unwrap();
        let c = start(&config(&[
            "--auth-key",
            key.to_str().unwrap(),
            "--token-ttl",
            "30s",
        ]))
        .await;
        send(c.addr, &origin("o", "eu", 50, "live/a")).await;
        let auth = Authenticator::from_key(key_text.as_bytes()).unwrap();
        let first = get(c.addr, "/v1/watch/live/a?region=eu").await.json();
        let second = get(c.addr, "/v1/watch/live/a?region=eu").await.json();
        let token = first["token"].as_str().unwrap();
        let claims = auth.verify(token).unwrap();
        let other = auth.verify(second["token"].as_str().unwrap()).unwrap();
        assert!(claims.sub.as_deref().unwrap().starts_with("anon-"), "{claims:?}");
        assert_ne!(claims.sub, other.sub, "each viewer has its own subject");

        // Ask one second later, so the fresh token ends later than the first.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let body = serde_json::json!({ "token": token }).to_string();
        let r = post(c.addr, "/v1/refresh", &body).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let j = r.json();
        let fresh = auth
            .verify(j["token"].as_str().unwrap())
            .expect("the relay accepts the fresh token");
        assert_eq!(fresh.sub, claims.sub, "the same subject");
        assert_eq!(
            (&fresh.ns, fresh.subscribe, fresh.publish),
            (&claims.ns, true, false)
        );
        assert_eq!(fresh.room, claims.room);
        assert!(fresh.exp > claims.exp, "{} > {}", fresh.exp, claims.exp);
        assert_eq!(j["token_expires"].as_u64(), Some(fresh.exp));

        let foreign = banyan_relay::auth::mint_hs256(
            &banyan_control::api::Claims {
                exp: claims.exp + 3600,
                ..claims.clone()
            },
            b"another-secret-another-secret-0123456",
        )
        .unwrap();
        let expired = banyan_relay::auth::Authenticator::from_key(key_text.as_bytes())
            .unwrap()
            .mint(&banyan_control::api::Claims {
                exp: 1,
                ..claims.clone()
            })
            .unwrap();
        for (what, token) in [("another key", foreign), ("expired", expired)] {
            let body = serde_json::json!({ "token": token }).to_string();
            let r = post(c.addr, "/v1/refresh", &body).await;
            assert_eq!(r.status, 401, "{what}: {}", r.body);
            assert_eq!(r.json()["error"], "bad_token", "{what}");
        }
        let r = post(c.addr, "/v1/refresh", "{\"jwt\": 1}").await;
        assert_eq!(r.status, 400, "{}", r.body);
        let metrics = get(c.addr, "/metrics").await.body;
        assert!(metrics.contains("tokens_refreshed_total 1"), "{metrics}");
        assert!(metrics.contains("token_refreshes_refused_total 2"), "{metrics}");
        c.stop().await;
    }
}
