//! Proves `banyan-bench interactions` across an in-process origin ← mid ← {edge A, edge B}
//! tree on loopback: likes and comments sent on edge A are all seen on edge B (the final total
//! equals the likes sent, every comment arrives), with positive latencies, and the relays'
//! CPU and metrics are read.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::time::Duration;

use banyan_bench::{InteractArgs, InteractBench};
use banyan_relay::config::RelayConfig;
use banyan_relay::Relay;
use clap::Parser;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Running {
    addr: SocketAddr,
    http: SocketAddr,
    hash: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

async fn relay(id: &str, upstream: Option<&Running>) -> Running {
    let mut args = vec![
        "banyan-relay".to_string(),
        "--listen".into(),
        "[::]:0".into(),
        "--http-listen".into(),
        "127.0.0.1:0".into(),
        "--dev-cert".into(),
        "--insecure-no-auth".into(),
        // A parent's sessions are its children's upstream links: do not wait for them to leave.
        "--drain-timeout".into(),
        "200ms".into(),
        "--relay-id".into(),
        id.into(),
    ];
    if let Some(parent) = upstream {
        args.extend([
            "--upstream".into(),
            format!("moqt://localhost:{}", parent.addr.port()),
            "--upstream-insecure".into(),
        ]);
    }
    let config = RelayConfig::load_from(args, |_| None).expect("relay config");
    let relay = Relay::bind(&config).await.expect("bind relay");
    let addr = SocketAddr::from(([127, 0, 0, 1], relay.local_addr().unwrap().port()));
    let http = relay.http_addr().unwrap();
    let hash = relay.cert_hash().expect("dev cert").to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = relay
            .run(async move {
                let _ = stopped.await;
            })
            .await;
    });
    Running {
        addr,
        http,
        hash,
        stop,
        task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn likes_and_comments_from_edge_a_are_all_seen_on_edge_b() {
    let origin = relay("bi-0", None).await;
    let mid = relay("bi-1", Some(&origin)).await;
    let edge_a = relay("bi-2a", Some(&mid)).await;
    let edge_b = relay("bi-2b", Some(&mid)).await;

    // The relays run in this process, so its /proc entry is theirs (CPU of all four).
    let pid = std::process::id().to_string();
    let ingest = format!("moqt://{}/", edge_a.addr);
    let watch = format!("moqt://{}/", edge_b.addr);
    let ingest_metrics = format!("http://{}/metrics", edge_a.http);
    let watch_metrics = format!("http://{}/metrics", edge_b.http);
    // Within the relays' default limits: 10 likes/s (20/s allowed), 1 comment/s (1/s, burst 5).
    let args = InteractArgs::try_parse_from([
        "interactions",
        "--ingest",
        &ingest,
        "--watch",
        &watch,
        "--viewers",
        "4",
        "--likes-per-s",
        "10",
        "--comments-per-s",
        "1",
        "--watchers",
        "3",
        "--duration",
        "2s",
        "--drain-timeout",
        "8s",
        "--relay-pid",
        &pid,
        "--ingest-metrics",
        &ingest_metrics,
        "--watch-metrics",
        &watch_metrics,
        "--tls-hash",
        &edge_a.hash,
        "--tls-hash",
        &edge_b.hash,
        "--json",
    ])
    .unwrap();
    let bench = InteractBench::from_args(&args).unwrap();
    let t = std::time::Instant::now();
    let report = tokio::time::timeout(
        Duration::from_secs(30),
        bench.run(|line| eprintln!("{:?} {line}", t.elapsed())),
    )
    .await
    .expect("the run ends")
    .expect("the run succeeds");
    for r in [edge_a, edge_b, mid, origin] {
        let _ = r.stop.send(());
        let _ = r.task.await;
    }
    let json = serde_json::to_string(&report).unwrap();

    assert_eq!(report.sessions.viewers, 4, "{json}");
    assert_eq!(report.sessions.watchers, 3, "{json}");
    assert_eq!(report.sessions.failed, 0, "{json}");
    // 4 viewers × 10/s × 2 s.
    assert_eq!(report.likes.sent, 80, "{json}");
    assert_eq!(report.likes.final_total_min, Some(80), "{json}");
    assert!(report.likes.conserved, "{json}");
    assert_eq!(report.comments.sent, 8, "{json}");
    assert_eq!(report.comments.delivered_min, Some(8), "{json}");
    assert!(report.comments.all_delivered, "{json}");
    // Every like of every (timed) watcher has a latency, and latencies are positive.
    assert_eq!(report.like_to_visible_ms.samples, 3 * 80, "{json}");
    assert!(report.like_to_visible_ms.p50.unwrap() > 0.0, "{json}");
    assert!(report.like_to_visible_ms.p99.unwrap() >= report.like_to_visible_ms.p50.unwrap());
    assert_eq!(report.comment_latency_ms.samples, 3 * 8, "{json}");
    assert!(report.comment_latency_ms.p50.unwrap() > 0.0, "{json}");
    // The edge counted every like it took in; nothing was refused.
    let likes_in = report.ingest_relay.likes_in_per_s.unwrap() * report.window_s;
    assert!((likes_in - 80.0).abs() < 1.0, "{likes_in} likes in: {json}");
    assert_eq!(report.ingest_relay.refused, Some(0.0), "{json}");
    assert!(report.ingest_relay.cpu_percent.unwrap() > 0.0, "{json}");
    assert!(report.ingest_relay.likes_per_s_per_core.unwrap() > 0.0, "{json}");
    // Edge B sent the watchers their totals and comments.
    assert!(report.watch_relay.objects_out_per_s.unwrap() > 0.0, "{json}");
    assert!(report.watch.likes_objects_per_s > 0.0, "{json}");
}
