//! Proves a short `banyan-bench` run against an in-process `banyan-relay` on loopback delivers
//! every group to every subscriber and produces a report whose JSON has the documented fields.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::SocketAddr;

use banyan_bench::{Args, Bench, Report};
use banyan_relay::config::RelayConfig;
use banyan_relay::Relay;
use clap::Parser;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_publisher_ten_subscribers_on_loopback() {
    let config = RelayConfig::load_from(
        [
            "banyan-relay",
            "--listen",
            "[::]:0",
            "--http-listen",
            "127.0.0.1:0",
            "--dev-cert",
            "--insecure-no-auth",
        ],
        |_| None,
    )
    .expect("relay config");
    let relay = Relay::bind(&config).await.expect("bind relay");
    let addr = SocketAddr::from(([127, 0, 0, 1], relay.local_addr().unwrap().port()));
    let hash = relay.cert_hash().expect("dev cert").to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay_task = tokio::spawn(relay.run(async move {
        let _ = stopped.await;
    }));

    // The relay runs in this process, so this process's /proc entry is the relay's.
    let pid = std::process::id().to_string();
    let url = format!("moqt://{addr}/");
    let args = Args::try_parse_from([
        "banyan-bench",
        url.as_str(),
        "--publishers",
        "1",
        "--subscribers",
        "10",
        "--duration",
        "3s",
        "--ramp-up",
        "500ms",
        "--transport",
        "mixed",
        "--relay-pid",
        pid.as_str(),
        "--tls-hash",
        hash.as_str(),
        "--json",
    ])
    .unwrap();
    let bench = Bench::from_args(&args).unwrap();
    let mut progress_lines = 0;
    let report = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        bench.run(|_| progress_lines += 1),
    )
    .await
    .expect("the run ends")
    .expect("the run succeeds");
    let _ = stop.send(());
    let _ = relay_task.await;

    let json = serde_json::to_string(&report).unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    for path in [
        "/latency_ms/p50",
        "/latency_ms/p90",
        "/latency_ms/p99",
        "/latency_ms/max",
        "/ttff_ms/p50",
        "/ttff_ms/p95",
        "/delivered/objects_per_s",
        "/delivered/gbit_per_s",
        "/delivered/objects",
        "/delivered/bytes",
        "/groups/expected",
        "/groups/received",
        "/groups/skipped",
        "/connections/failed",
        "/relay/cpu_percent",
        "/relay/rss_bytes",
        "/profile/subscribers",
    ] {
        let field = value
            .pointer(path)
            .unwrap_or_else(|| panic!("{path} missing in {json}"));
        assert!(!field.is_null(), "{path} is null in {json}");
    }
    let parsed: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed, report, "the JSON round-trips");

    assert!(progress_lines >= 2, "progress every second");
    assert_eq!(report.connections.established, 10, "{json}");
    assert_eq!(report.connections.failed, 0, "{json}");
    assert!(report.delivered.objects > 0, "{json}");
    assert!(report.delivered.gbit_per_s > 0.0, "{json}");
    assert_eq!(
        report.delivered.without_timestamp, 0,
        "every object has a timestamp"
    );
    assert!(report.latency_ms.samples > 0, "{json}");
    assert!(report.groups.expected > 0, "{json}");
    assert_eq!(report.groups.delivery_ratio, Some(1.0), "{json}");
    assert_eq!(report.groups.skipped, 0, "{json}");
    assert_eq!(
        report.connections.completed, 10,
        "every subscriber got the last object: {json}"
    );
}
