//! Proves an encoder that drops (ffmpeg killed) and reconnects with the same key within the
//! grace period resumes the same broadcast: the watcher sees no reconnect and at most one group
//! gap, and the gateway counts one encoder reconnect. Needs ffmpeg and ffprobe on PATH.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::*;

const KEYS: &str = "[keys.\"cam-key\"]\nbroadcast = \"live/cam\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_encoder_resumes_the_same_broadcast() {
    require_tool("ffmpeg");
    require_tool("ffprobe");
    let origin = relay(None, "origin").await;
    let gateway = gateway(&origin, KEYS, &["--reconnect-grace", "10s"]).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cam.mp4");
    let watcher = watch(&origin, "live/cam", &out);

    let mut first = ffmpeg_push(&gateway.rtmp_url("cam-key"), None, "flv");
    let frames_after = |n: f64| {
        let gateway = &gateway;
        async move {
            tokio::time::timeout(Duration::from_secs(20), async {
                while gateway.metric("banyan_ingest_frames_total").await < n {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
            .await
            .expect("frames flow")
        }
    };
    frames_after(200.0).await; // about 2 s of video and audio
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    // The gateway notices the drop (the connection count falls) before the encoder returns.
    tokio::time::timeout(Duration::from_secs(10), async {
        while gateway.metric("banyan_ingest_connections_open").await > 0.0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the dropped connection is noticed");
    let before = gateway.metric("banyan_ingest_frames_total").await;

    let second = ffmpeg_push(&gateway.rtmp_url("cam-key"), Some(4), "flv");
    frames_after(before + 50.0).await;
    check_resumed(&gateway, watcher, second, &out, "reconnect").await;
    let status = gateway.terminate(10).await;
    assert!(status.success(), "{status:?}");
}
