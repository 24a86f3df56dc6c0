//! Bad input never takes the service down: malformed heartbeats get 400 naming the problem,
//! unknown relays and broadcasts get 404, and a flood of assignment requests gets 429 while
//! heartbeats and health keep working.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::*;

#[tokio::test]
async fn malformed_heartbeats_are_refused_with_a_clear_error() {
    let c = start(&config(&[])).await;
    let valid = serde_json::to_value(heartbeat("r", "eu", 10, 0)).unwrap();
    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), "malformed heartbeat"),
        ("{}".into(), "relay_id"),
        (
            r#"{"relay_id":"r","urls":{"moqt":"moqt://h:1"}}"#.into(),
            "capacity",
        ),
        (
            r#"{"relay_id":"r","urls":{"moqt":"moqt://h:1"},"capacity":{"max_viewers":-1}}"#.into(),
            "max_viewers",
        ),
        (
            r#"{"relay_id":"r","urls":{"moqt":"moqt://h:1"},"capacity":{"max_viewers":0}}"#.into(),
            "max_viewers",
        ),
        (
            r#"{"relay_id":"","urls":{"moqt":"moqt://h:1"},"capacity":{"max_viewers":1}}"#.into(),
            "relay_id",
        ),
        (
            r#"{"relay_id":"r","urls":{},"capacity":{"max_viewers":1}}"#.into(),
            "urls",
        ),
        (
            r#"{"relay_id":"r","urls":{"moqt":"ftp://h"},"capacity":{"max_viewers":1}}"#.into(),
            "urls.moqt",
        ),
        (
            {
                let mut v = valid.clone();
                v["cert_sha256"] = "xyz".into();
                v.to_string()
            },
            "cert_sha256",
        ),
        (
            {
                let mut v = valid.clone();
                v["broadcasts"] = serde_json::json!([{"namespace": ""}]);
                v.to_string()
            },
            "namespace",
        ),
        ("[1,2,3]".into(), "malformed heartbeat"),
        ("\u{0}\u{1}".into(), "malformed heartbeat"),
    ];
    for (body, needle) in cases {
        let r = post(c.addr, "/v1/relays/heartbeat", &body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        let j = r.json();
        assert_eq!(j["error"], "bad_heartbeat");
        assert!(
            j["message"].as_str().unwrap().contains(needle),
            "{body}: {}",
            j["message"]
        );
    }
    // A body over the limit is refused without being read whole.
    let huge = format!("{{\"relay_id\":\"{}\"}}", "x".repeat(2 << 20));
    assert_eq!(post(c.addr, "/v1/relays/heartbeat", &huge).await.status, 413);
    // None of that registered anything; a good heartbeat still works.
    assert_eq!(
        get(c.addr, "/v1/status").await.json()["relays"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    send(c.addr, &heartbeat("r", "eu", 10, 0)).await;
    let metrics = get(c.addr, "/metrics").await.body;
    assert!(
        metrics.contains("banyan_control_heartbeats_rejected_total 12"),
        "{metrics}"
    );
}

#[tokio::test]
async fn unknown_relays_and_broadcasts_are_404_with_the_reason() {
    let c = start(&config(&[])).await;
    send(c.addr, &origin("o", "eu", 10, "live/known")).await;
    let r = get(c.addr, "/v1/watch/live/nope").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "unknown_broadcast");
    assert!(r.json()["message"].as_str().unwrap().contains("live/nope"));
    let r = get(c.addr, "/v1/route/live/known?relay=ghost").await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (404, Some("unknown_relay"))
    );
    let r = get(c.addr, "/v1/route/live/nope?relay=o").await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (404, Some("unknown_broadcast"))
    );
    let r = get(c.addr, "/v1/route/live/known").await;
    assert_eq!((r.status, r.json()["error"].as_str()), (400, Some("bad_request")));
    let r = post(c.addr, "/v1/relays/ghost/drain", "").await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (404, Some("unknown_relay"))
    );
    let r = post(c.addr, "/v1/publish/a//b", "").await;
    assert_eq!(r.status, 400);
    let r = get(c.addr, "/v2/nothing").await;
    assert_eq!((r.status, r.json()["error"].as_str()), (404, Some("not_found")));
    // Percent-encoded names reach the same broadcast.
    assert_eq!(get(c.addr, "/v1/watch/live%2Fknown").await.status, 200);
}

#[tokio::test]
async fn an_assignment_flood_is_rate_limited_and_the_service_stays_up() {
    let c = start(&config(&["--watch-rate", "50", "--watch-burst", "100"])).await;
    send(c.addr, &origin("o", "eu", 100_000, "live/f")).await;
    send(c.addr, &heartbeat("e", "eu", 100_000, 0)).await;
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let addr = c.addr;
        tasks.push(tokio::spawn(async move {
            let mut codes = Vec::new();
            for _ in 0..40 {
                let r = get(addr, "/v1/watch/live/f").await;
                if r.status == 429 {
                    assert_eq!(r.json()["error"], "rate_limited");
                    assert!(r.header("retry-after").is_some());
                }
                codes.push(r.status);
            }
            codes
        }));
    }
    let mut ok = 0usize;
    let mut limited = 0usize;
    for t in tasks {
        for code in t.await.unwrap() {
            match code {
                200 => ok += 1,
                429 => limited += 1,
                other => panic!("unexpected status {other}"),
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(ok + limited, 640);
    assert!(limited > 0, "nothing was limited");
    let allowed = 100.0 + 50.0 * elapsed + 1.0;
    assert!(
        (ok as f64) <= allowed,
        "{ok} admitted in {elapsed:.2}s, at most {allowed:.0} allowed"
    );
    // Heartbeats and health are not rate limited, and assignments resume once the bucket refills.
    send(c.addr, &heartbeat("e", "eu", 100_000, 0)).await;
    assert_eq!(get(c.addr, "/health").await.status, 200);
    assert!(
        eventually(Duration::from_secs(5), || async {
            get(c.addr, "/v1/watch/live/f").await.status == 200
        })
        .await
    );
    let metrics = get(c.addr, "/metrics").await.body;
    let counted: usize = metrics
        .lines()
        .find_map(|l| l.strip_prefix("banyan_control_rate_limited_total "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(counted >= limited, "{counted} < {limited}");
}
