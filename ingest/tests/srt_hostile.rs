//! Proves the SRT listener survives hostile callers while it keeps serving a good ffmpeg SRT
//! stream: a wrong streamid is rejected at the SRT handshake, before any media (ffmpeg fails,
//! `refused_keys` counts it), and a caller sending garbage instead of MPEG-TS has its packets
//! skipped and counted (`ts_skipped_packets`) with no panic; the good stream still decodes
//! (≥ 95 % of its frames) and SIGTERM exits 0. Needs ffmpeg (with libsrt) and ffprobe on PATH.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Instant;

use bytes::Bytes;
use common::*;
use futures::SinkExt as _;
use srt_tokio::SrtSocket;

const KEYS: &str =
    "[keys.\"good-key\"]\nbroadcast = \"live/good\"\n[keys.\"junk-key\"]\nbroadcast = \"live/junk\"\n";

/// 7 TS-sized packets of garbage: 4 with a sync byte in front of a PID no PMT names and
/// nonsense, 3 without any sync byte. Each is one skipped packet.
fn garbage(n: usize) -> Bytes {
    let mut message = Vec::with_capacity(1316);
    for p in 0..7 {
        let mut packet = [0u8; 188];
        for (i, b) in packet.iter_mut().enumerate() {
            *b = match (i * 31 + n * 7 + p * 13) as u8 {
                0x47 => 0x48,
                other => other,
            };
        }
        if p % 2 == 0 {
            packet[..4].copy_from_slice(&[0x47, 0x1f, 0xf0, 0x10]);
        }
        message.extend_from_slice(&packet);
    }
    Bytes::from(message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_srt_callers_are_refused_while_a_good_stream_plays() {
    require_tool("ffmpeg");
    require_tool("ffprobe");
    let origin = relay(None, "origin").await;
    let gateway = gateway(
        &origin,
        KEYS,
        &["--srt-listen", "127.0.0.1:0", "--reconnect-grace", "1s"],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("good.mp4");
    let watcher = watch(&origin, "live/good", &out);
    let good = ffmpeg_push(&gateway.srt_url("good-key", 120), Some(10), "mpegts");

    // A wrong streamid: rejected at the handshake, ffmpeg fails.
    let wrong = ffmpeg_push(&gateway.srt_url("wrong-key", 120), Some(2), "mpegts");
    let wrong = wrong.wait_with_output().await.unwrap();
    assert!(!wrong.status.success(), "a wrong streamid must be refused");
    println!(
        "wrong streamid: ffmpeg says {:?}",
        String::from_utf8_lossy(&wrong.stderr)
            .lines()
            .last()
            .unwrap_or_default()
    );
    assert_eq!(gateway.metric("banyan_ingest_refused_keys_total").await, 1.0);

    // A caller with a good key sending garbage instead of MPEG-TS.
    let addr = gateway.srt.unwrap();
    let mut junk = SrtSocket::builder()
        .call(addr, Some("junk-key"))
        .await
        .expect("a known key is accepted");
    // One message at a time, each awaited in the metric (a burst would outrun SRT's live-mode
    // sender, which drops what it cannot send within its latency).
    let mut skipped = 0.0;
    for n in 0..20 {
        junk.send((Instant::now(), garbage(n)))
            .await
            .expect("the gateway keeps the caller");
        skipped = gateway
            .metric_reaches("banyan_ingest_ts_skipped_packets_total", 7.0 * (n + 1) as f64, 10)
            .await;
    }
    println!("garbage caller: {skipped} TS packets skipped");
    assert!(skipped >= 140.0, "each garbage packet is counted: {skipped}");
    let _ = junk.close().await;

    let summary = watch_summary(watcher, 45).await;
    ffmpeg_done(good, "the good").await;
    let decoded = check_decoded(&out, &summary, "srt beside hostile callers");
    assert!(decoded >= 200, "only {decoded} video frames decoded");
    assert_eq!(gateway.metric("banyan_ingest_refused_keys_total").await, 1.0);
    assert_eq!(http_get(gateway.http, "/health").await.trim(), "ok");
    let status = gateway.terminate(10).await;
    assert!(status.success(), "the gateway exits 0 after SIGTERM: {status:?}");
}
