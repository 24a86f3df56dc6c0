//! Proves the gateway survives hostile ingest while it keeps serving a good ffmpeg stream: a
//! wrong stream key is refused before any media (ffmpeg fails, `refused_keys` counts it), a
//! non-RTMP byte stream and 100 idle TCP connections are closed by the handshake timeout with
//! memory staying bounded, a truncated FLV tag closes its connection (`malformed_tags`), and an
//! MP3 audio track is refused by codec (`refused_codecs`);
//! the good stream still decodes (≥ 95 % of its frames) and SIGTERM exits 0.
//! Needs ffmpeg and ffprobe on PATH.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEYS: &str =
    "[keys.\"good-key\"]\nbroadcast = \"live/good\"\n[keys.\"trunc-key\"]\nbroadcast = \"live/trunc\"\n[keys.\"mp3-key\"]\nbroadcast = \"live/mp3\"\n";

/// Read until the peer closes (Ok) or `secs` pass (Err).
async fn closed_within(stream: &mut TcpStream, secs: u64) -> Result<(), ()> {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .map_err(|_| ())
}

fn packets(results: Vec<ClientSessionResult>) -> (Vec<u8>, Vec<ClientSessionEvent>) {
    let (mut bytes, mut events) = (Vec::new(), Vec::new());
    for r in results {
        match r {
            ClientSessionResult::OutboundResponse(p) => bytes.extend_from_slice(&p.bytes),
            ClientSessionResult::RaisedEvent(e) => events.push(e),
            ClientSessionResult::UnhandleableMessageReceived(_) => {}
        }
    }
    (bytes, events)
}

/// An RTMP client (rml_rtmp's) that connects and publishes with `key`; the stream and session.
async fn rtmp_publish(addr: SocketAddr, key: &str) -> (TcpStream, ClientSession) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut handshake = Handshake::new(PeerType::Client);
    stream
        .write_all(&handshake.generate_outbound_p0_and_p1().unwrap())
        .await
        .unwrap();
    let mut buf = vec![0u8; 8192];
    let leftover = loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the gateway closed during the handshake");
        match handshake.process_bytes(&buf[..n]).unwrap() {
            HandshakeProcessResult::InProgress { response_bytes } => {
                stream.write_all(&response_bytes).await.unwrap()
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                stream.write_all(&response_bytes).await.unwrap();
                break remaining_bytes;
            }
        }
    };
    let (mut session, _) = ClientSession::new(ClientSessionConfig::new()).unwrap();
    let mut pending = leftover;
    let (out, _) = packets(vec![session.request_connection("live".into()).unwrap()]);
    stream.write_all(&out).await.unwrap();
    let mut publishing_requested = false;
    loop {
        let (out, events) = packets(session.handle_input(&pending).unwrap());
        stream.write_all(&out).await.unwrap();
        for event in events {
            match event {
                ClientSessionEvent::ConnectionRequestAccepted if !publishing_requested => {
                    publishing_requested = true;
                    let (out, _) = packets(vec![session
                        .request_publishing(key.into(), PublishRequestType::Live)
                        .unwrap()]);
                    stream.write_all(&out).await.unwrap();
                }
                ClientSessionEvent::PublishRequestAccepted => return (stream, session),
                _ => {}
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "the gateway closed before accepting the publish");
        pending = buf[..n].to_vec();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ingest_is_refused_while_a_good_stream_plays() {
    require_tool("ffmpeg");
    require_tool("ffprobe");
    let origin = relay(None, "origin").await;
    let gateway = gateway(
        &origin,
        KEYS,
        &["--handshake-timeout", "3s", "--max-connections", "200"],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("good.mp4");
    let watcher = watch(&origin, "live/good", &out);
    let good = ffmpeg_push(&gateway.rtmp_url("good-key"), Some(12), "flv");
    // The good stream is on air once a frame went into its broadcast.
    tokio::time::timeout(Duration::from_secs(15), async {
        while gateway.metric("banyan_ingest_frames_total").await < 1.0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the good stream starts");
    let rss_before = gateway.rss_kib();

    // A wrong key: ffmpeg's publish is refused, it exits with an error.
    let wrong = ffmpeg_push(&gateway.rtmp_url("wrong-key"), Some(3), "flv");
    let wrong = tokio::time::timeout(Duration::from_secs(15), wrong.wait_with_output())
        .await
        .expect("ffmpeg with a wrong key gives up")
        .unwrap();
    assert!(!wrong.status.success(), "a wrong key must be refused");
    assert_eq!(gateway.metric("banyan_ingest_refused_keys_total").await, 1.0);
    assert_eq!(
        gateway.metric("banyan_ingest_streams_total").await,
        1.0,
        "no broadcast for a wrong key"
    );

    // 100 idle TCP connections and one speaking HTTP: all closed by the handshake timeout.
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(TcpStream::connect(gateway.rtmp).await.unwrap());
    }
    let mut http = TcpStream::connect(gateway.rtmp).await.unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    http.write_all(&[0x55u8; 3000]).await.unwrap();
    assert!(
        closed_within(&mut http, 6).await.is_ok(),
        "a non-RTMP stream is closed"
    );

    // A truncated FLV tag (an AVC sequence header of 2 bytes) closes its connection.
    let (mut stream, mut session) = rtmp_publish(gateway.rtmp, "trunc-key").await;
    let (bytes, _) = packets(vec![session
        .publish_video_data(Bytes::from_static(&[0x17, 0x00]), RtmpTimestamp::new(0), false)
        .unwrap()]);
    stream.write_all(&bytes).await.unwrap();
    assert!(
        closed_within(&mut stream, 6).await.is_ok(),
        "a truncated tag closes the connection"
    );
    assert_eq!(gateway.metric("banyan_ingest_malformed_tags_total").await, 1.0);

    // A codec Banyan does not carry (MP3 audio): the stream is refused at its first MP3 tag.
    let mp3 = ffmpeg_push_audio(&gateway.rtmp_url("mp3-key"), Some(3), "flv", "libmp3lame");
    let mp3 = tokio::time::timeout(Duration::from_secs(15), mp3.wait_with_output())
        .await
        .expect("ffmpeg sending MP3 is cut off")
        .unwrap();
    assert!(!mp3.status.success(), "an MP3 stream must be refused");
    assert_eq!(gateway.metric("banyan_ingest_refused_codecs_total").await, 1.0);

    let rss_idle = gateway.rss_kib();
    for mut s in idle {
        assert!(
            closed_within(&mut s, 6).await.is_ok(),
            "idle connections are closed"
        );
    }
    println!("gateway RSS: {rss_before} KiB with the good stream, {rss_idle} KiB with 100 idle connections");
    assert!(
        rss_idle < rss_before + 32 * 1024,
        "memory grew from {rss_before} to {rss_idle} KiB"
    );
    assert!(gateway.metric("banyan_ingest_handshake_failures_total").await >= 101.0);

    // The good stream played on throughout.
    let summary = watch_summary(watcher, 40).await;
    ffmpeg_done(good, "good").await;
    check_decoded(&out, &summary, "good stream under hostile ingest");
    assert_eq!(summary["gaps"], 0, "{summary}");

    let status = gateway.terminate(10).await;
    assert!(status.success(), "the gateway exits 0 after SIGTERM: {status:?}");
}
