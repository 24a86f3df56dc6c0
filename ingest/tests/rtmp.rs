//! Proves RTMP ingest end to end: ffmpeg pushes a 10 s H.264 + AAC test pattern to
//! `banyan-ingest`, which publishes it into an origin relay; `banyan-watch` on an edge relay
//! receives it, ffprobe decodes ≥ 95 % of its video frames, and the capture-to-watch latency is
//! printed. The encoder's unpublish ends the broadcast (PUBLISH_DONE) and the watcher ends too.
//! Needs ffmpeg and ffprobe on PATH.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::*;

const KEYS: &str = "[keys.\"good-key\"]\nbroadcast = \"live/rtmp\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_rtmp_reaches_a_watcher_through_an_edge() {
    require_tool("ffmpeg");
    require_tool("ffprobe");
    let origin = relay(None, "origin").await;
    let edge = relay(Some(&origin), "edge").await;
    let gateway = gateway(&origin, KEYS, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("watched.mp4");

    let watcher = watch(&edge, "live/rtmp", &out);
    let ffmpeg = ffmpeg_push(&gateway.rtmp_url("good-key"), Some(10), "flv");
    let summary = watch_summary(watcher, 45).await;
    ffmpeg_done(ffmpeg, "the RTMP").await;

    let decoded = check_decoded(&out, &summary, "rtmp via edge");
    // 10 s at 30 fps; the watcher may join a GOP or two late.
    assert!(decoded >= 200, "only {decoded} video frames decoded");
    assert_eq!(summary["reconnects"], 0, "{summary}");
    assert_eq!(gateway.metric("banyan_ingest_streams_total").await, 1.0);
    assert!(gateway.metric("banyan_ingest_frames_total").await >= 300.0);
    assert!(gateway.metric("banyan_ingest_bytes_total").await > 100_000.0);
    assert_eq!(gateway.metric("banyan_ingest_refused_keys_total").await, 0.0);
    assert_eq!(http_get(gateway.http, "/health").await.trim(), "ok");

    let status = gateway.terminate(10).await;
    assert!(status.success(), "the gateway exits 0 after SIGTERM: {status:?}");
}
