//! Proves a stream key that is a publish JWT is checked by the relay before the encoder's
//! `publish` is accepted: against a relay with auth, a token signed with the wrong secret is
//! refused (ffmpeg fails, `refused_keys` counts it, no broadcast starts), and a good token
//! publishes the broadcast its `ns` claim names, which a watcher with a subscribe token plays.
//! Needs ffmpeg and ffprobe on PATH.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use banyan_control::api::Claims;
use banyan_relay::auth::mint_hs256;
use common::*;

fn token(ns: &str, publish: bool, secret: &[u8]) -> String {
    let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 600;
    let claims = Claims {
        sub: Some("ingest-test".into()),
        ns: ns.into(),
        publish,
        subscribe: !publish,
        exp,
        room: None,
        ..Default::default()
    };
    mint_hs256(&claims, secret).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_stream_key_is_decided_by_the_relay() {
    require_tool("ffmpeg");
    require_tool("ffprobe");
    let dir = tempfile::tempdir().unwrap();
    let secret = b"an hs256 secret of at least thirty-two bytes!";
    let key_file = dir.path().join("auth.key");
    std::fs::write(&key_file, secret).unwrap();
    let origin = relay_with(None, "origin", &["--auth-key", key_file.to_str().unwrap()]).await;
    let gateway = gateway(&origin, "", &[]).await;

    // Signed with another secret: the relay refuses the session; the encoder's publish fails.
    let forged = token("live/jwt", true, b"not the relay's secret, but long enough too");
    let wrong = ffmpeg_push(&gateway.rtmp_url(&forged), Some(2), "flv");
    let wrong = tokio::time::timeout(Duration::from_secs(20), wrong.wait_with_output())
        .await
        .expect("ffmpeg with a forged key gives up")
        .unwrap();
    assert!(!wrong.status.success(), "a forged key must be refused");
    assert_eq!(gateway.metric("banyan_ingest_refused_keys_total").await, 1.0);
    assert_eq!(gateway.metric("banyan_ingest_streams_total").await, 0.0);

    // A good publish token: the broadcast is its `ns`.
    let out = dir.path().join("jwt.mp4");
    let viewer_token = token("live/jwt", false, secret);
    let watcher = watch_with(&origin, "live/jwt", &out, Some(&viewer_token));
    let good = ffmpeg_push(
        &gateway.rtmp_url(&token("live/jwt", true, secret)),
        Some(4),
        "flv",
    );
    let summary = watch_summary(watcher, 40).await;
    ffmpeg_done(good, "the JWT-keyed").await;
    check_decoded(&out, &summary, "jwt key");
    assert_eq!(gateway.metric("banyan_ingest_streams_total").await, 1.0);
    let status = gateway.terminate(10).await;
    assert!(status.success(), "{status:?}");
}
