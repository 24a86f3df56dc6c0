//! Proves SRT ingest end to end: ffmpeg (libsrt, caller mode) pushes a 10 s H.264 + AAC test
//! pattern (and a 5 s one with Opus audio) as MPEG-TS to `banyan-ingest --srt-listen` with the stream key as its streamid; the
//! gateway publishes it into an origin relay; `banyan-watch` on an edge relay receives it,
//! ffprobe decodes ≥ 95 % of its video frames (and of the Opus packets), and the capture-to-watch latency is printed. SRT
//! has no unpublish: the broadcast ends `--reconnect-grace` after the caller leaves.
//! Needs ffmpeg (with libsrt) and ffprobe on PATH.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::*;

const KEYS: &str = "[keys.\"srt-key\"]\nbroadcast = \"live/srt\"\n";
/// The SRT latency the encoder asks for (ms): libsrt's default, and the gateway's.
const LATENCY_MS: u32 = 120;

/// A gateway listening for SRT in front of `origin`, ending a broadcast 1 s after its caller.
async fn srt_gateway(origin: &Relay) -> Gateway {
    gateway(
        origin,
        KEYS,
        &["--srt-listen", "127.0.0.1:0", "--reconnect-grace", "1s"],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_srt_reaches_a_watcher_through_an_edge() {
    require_tool("ffmpeg");
    require_tool("ffprobe");
    let origin = relay(None, "origin").await;
    let edge = relay(Some(&origin), "edge").await;
    let gateway = srt_gateway(&origin).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("watched.mp4");

    let watcher = watch(&edge, "live/srt", &out);
    let ffmpeg = ffmpeg_push(&gateway.srt_url("srt-key", LATENCY_MS), Some(10), "mpegts");
    let summary = watch_summary(watcher, 45).await;
    ffmpeg_done(ffmpeg, "the SRT").await;

    let decoded = check_decoded(&out, &summary, &format!("srt (latency {LATENCY_MS} ms) via edge"));
    // 10 s at 30 fps; the watcher may join a GOP or two late.
    assert!(decoded >= 200, "only {decoded} video frames decoded");
    assert_eq!(summary["reconnects"], 0, "{summary}");
    assert_eq!(gateway.metric("banyan_ingest_streams_total").await, 1.0);
    assert!(gateway.metric("banyan_ingest_frames_total").await >= 300.0);
    assert!(gateway.metric("banyan_ingest_bytes_total").await > 100_000.0);
    assert_eq!(gateway.metric("banyan_ingest_refused_keys_total").await, 0.0);
    assert_eq!(
        gateway.metric("banyan_ingest_ts_skipped_packets_total").await,
        0.0
    );

    let status = gateway.terminate(10).await;
    assert!(status.success(), "the gateway exits 0 after SIGTERM: {status:?}");
}

/// Opus in MPEG-TS (what OBS sends over SRT with its Opus encoder): the gateway finds it by
/// its registration descriptor, strips each access unit's control header, and the watcher's
/// file decodes as H.264 + Opus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_srt_with_opus_audio_decodes_as_opus() {
    require_tool("ffmpeg");
    require_tool("ffprobe");
    let origin = relay(None, "origin").await;
    let gateway = srt_gateway(&origin).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("watched.mp4");

    let watcher = watch(&origin, "live/srt", &out);
    let ffmpeg = ffmpeg_push_audio(
        &gateway.srt_url("srt-key", LATENCY_MS),
        Some(5),
        "mpegts",
        "libopus",
    );
    let summary = watch_summary(watcher, 30).await;
    ffmpeg_done(ffmpeg, "the SRT").await;

    let (_, opus) = check_decoded_with(&out, &summary, "srt with opus", "opus");
    let received = summary["tracks"]["audio"]["objects"].as_u64().unwrap();
    // 20 ms packets: 250 in 5 s; the watcher may join a group late.
    assert!(
        received >= 150,
        "only {received} Opus packets received: {summary}"
    );
    assert!(
        opus * 100 >= received * 95,
        "ffprobe decoded {opus} of {received} Opus packets"
    );
    assert_eq!(
        gateway.metric("banyan_ingest_ts_skipped_packets_total").await,
        0.0,
        "every Opus access unit parsed"
    );
    let status = gateway.terminate(10).await;
    assert!(status.success(), "the gateway exits 0 after SIGTERM: {status:?}");
}
