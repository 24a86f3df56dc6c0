//! Proves an SRT encoder that drops (ffmpeg killed: no SRT shutdown) and calls again at once
//! with the same streamid takes its broadcast over from the dead connection, long before the
//! gateway's idle timeout would notice it: the watcher sees no reconnect, at most one group gap
//! and no stall over 2 s, and the gateway counts one encoder reconnect. Needs ffmpeg (with libsrt) and ffprobe on
//! PATH.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

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
            "10s",
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
    // The encoder calls again at once, as OBS does, long before the gateway could notice the
    // silent old connection (--idle-timeout 10s here): the same key takes the broadcast over.
    let connections_before = gateway.metric("banyan_ingest_connections_total").await;
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
