//! Proves an SRT encoder that drops (ffmpeg killed: no SRT shutdown, noticed by `--idle-timeout`)
//! and calls again with the same streamid within the
//! grace period resumes the same broadcast: the watcher sees no reconnect and at most one group
//! gap, and the gateway counts one encoder reconnect. Needs ffmpeg (with libsrt) and ffprobe on
//! PATH.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::*;

const KEYS: &str = "[keys.\"cam-key\"]\nbroadcast = \"live/srtcam\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_srt_encoder_resumes_the_same_broadcast() {
    require_tool("ffmpeg");
    require_tool("ffprobe");
    let origin = relay(None, "origin").await;
    let gateway = gateway(
        &origin,
        KEYS,
        &[
            "--srt-listen",
            "127.0.0.1:0",
            "--reconnect-grace",
            "3s",
            "--idle-timeout",
            "2s",
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cam.mp4");
    let watcher = watch(&origin, "live/srtcam", &out);

    let mut first = ffmpeg_push(&gateway.srt_url("cam-key", 120), None, "mpegts");
    let frames = "banyan_ingest_frames_total";
    assert!(
        gateway.metric_reaches(frames, 200.0, 20).await >= 200.0,
        "frames flow"
    );
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    // The gateway notices the silent caller (--idle-timeout) before the encoder returns.
    let connections_before = gateway.metric("banyan_ingest_connections_total").await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while gateway.metric("banyan_ingest_connections_open").await > 0.0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the dropped connection is noticed");
    let before = gateway.metric(frames).await;

    let second = ffmpeg_push(&gateway.srt_url("cam-key", 120), Some(4), "mpegts");
    assert!(
        gateway.metric_reaches(frames, before + 50.0, 20).await >= before + 50.0,
        "frames flow again"
    );
    assert_eq!(
        gateway.metric("banyan_ingest_connections_total").await,
        connections_before + 1.0
    );
    check_resumed(&gateway, watcher, second, &out, "srt reconnect").await;
    let status = gateway.terminate(10).await;
    assert!(status.success(), "{status:?}");
}
