//! Proves `banyan-publish --ladder` (issue 20, part 1) with real processes: one ffmpeg encodes
//! three renditions of a lavfi test source (a TOML ladder; its audio starts a second late)
//! through an in-process relay; the catalog lists each as a video track with `altGroup`,
//! `bitrate`, `width`/`height`, `framerate` and its own codec string; subscribed directly,
//! every rendition carries the same group IDs, each group starting with an IDR frame whose LOC
//! timestamp is equal across renditions, and the audio keeps the input's timeline; each
//! rendition, remuxed, decodes in ffprobe at its own size with every frame; `banyan-watch
//! --rendition NAME` plays the rendition asked for (and refuses an unknown one); bad
//! `--ladder` values and input ffmpeg cannot read exit non-zero with a clear message. Needs
//! ffmpeg (libx264, libopus) and ffprobe on PATH.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use banyan_media::catalog::{Catalog, CATALOG_TRACK};
use banyan_media::fmp4::{Muxer, Sample};
use banyan_media::{LocFrame, MediaKind, TrackConfig};
use banyan_moq::coding::{TrackName, TrackNamespace};
use banyan_moq::message::{Parameters, Subscribe};
use banyan_moq::session::{Session, TrackEvent};
use banyan_publisher::connect::ConnectArgs;
use banyan_tests::media_tools::ffprobe_video_size as ffprobe_video;
use common::{command, until, within, Log, TestRelay, PUBLISH, WATCH};

/// Seconds of test source; frames per second; frames per group.
const SECONDS: u64 = 4;
const FPS: u64 = 30;
const GOP: u64 = 15;

const LADDER: &str = r#"
[[rendition]]
name = "144p"
width = 256
height = 144
bitrate = "150k"

[[rendition]]
name = "360p"
width = 640
height = 360
bitrate = 600000

[[rendition]]
name = "240p"
width = 426
height = 240
bitrate = "300k"
"#;

/// (name, width, height, bitrate), as the catalog should list them: highest bitrate first.
const EXPECTED: [(&str, u32, u32, u64); 3] = [
    ("360p", 640, 360, 600_000),
    ("240p", 426, 240, 300_000),
    ("144p", 256, 144, 150_000),
];

/// Every object of a track: group ID → (object ID, frame), in arrival order.
type Received = BTreeMap<u64, Vec<(u64, LocFrame)>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ladder_publishes_aligned_renditions() {
    let relay = TestRelay::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let ladder = dir.path().join("ladder.toml");
    std::fs::write(&ladder, LADDER).unwrap();
    // The audio starts a second after the video (as in a file whose audio begins late):
    // ffmpeg writes the renditions' first frames before the audio output's header, and each
    // output must still start on the input's timeline.
    let source = format!(
        "testsrc=size=640x360:rate={FPS}:duration={SECONDS}[out0];sine=frequency=440:duration={SECONDS},asetpts=PTS+1/TB[out1]"
    );
    let url = relay.url();
    let (fps, gop) = (FPS.to_string(), GOP.to_string());
    let mut publisher = command(
        PUBLISH,
        &[
            &url,
            "--broadcast",
            "ladder/test",
            "--ladder",
            ladder.to_str().unwrap(),
            "--input-format",
            "lavfi",
            "--input",
            &source,
            "--fps",
            &fps,
            "--gop",
            &gop,
            "--wait-subscribers",
            "--tls-hash",
            &relay.hash,
        ],
    )
    .spawn()
    .unwrap();
    let publisher_log = Log::follow(publisher.stderr.take().unwrap());

    // Subscribe directly: the catalog, then every track it lists (the publisher holds the
    // media until all are subscribed, so each gets the whole clip).
    let connect = ConnectArgs {
        url: url.parse().unwrap(),
        tls_hash: Some(relay.hash.clone()),
        tls_ca: None,
        tls_insecure: false,
        token: None,
        connect_timeout: Duration::from_secs(5),
    };
    let (session, driver) = connect.connector().unwrap().connect(None).await.unwrap();
    let driver = tokio::spawn(driver.run());
    let namespace = TrackNamespace::from_path("ladder/test").unwrap();
    let catalog = within(
        Duration::from_secs(30),
        "the catalog arrives",
        first_catalog(&session, &namespace),
    )
    .await;
    eprintln!("ladder: catalog {}", String::from_utf8_lossy(&catalog.to_json()));

    // The catalog: three renditions, highest bitrate first, then the audio.
    let tracks = catalog.tracks();
    let names: Vec<&str> = tracks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["video/360p", "video/240p", "video/144p", "audio"]);
    for (track, (name, width, height, bitrate)) in tracks.iter().zip(EXPECTED) {
        assert_eq!(track.media_kind(), Some(MediaKind::Video), "{name}");
        assert_eq!(
            track.alt_group,
            Some(1),
            "{name}: one altGroup for every rendition"
        );
        assert_eq!(track.bitrate, Some(bitrate), "{name}");
        assert_eq!((track.width, track.height), (Some(width), Some(height)), "{name}");
        assert_eq!(track.framerate, Some(FPS as f64), "{name}");
        assert_eq!(track.label.as_deref(), Some(name));
        assert_eq!(track.max_gop_duration, Some(GOP * 1000 / FPS));
        let codec = track.codec.as_deref().unwrap();
        assert!(codec.starts_with("avc1."), "{name}: {codec}");
        assert!(catalog.init_data(track).unwrap().is_some(), "{name}: avcC");
    }
    assert_eq!(tracks[3].media_kind(), Some(MediaKind::Audio));
    assert_eq!(tracks[3].alt_group, None, "audio is one track");
    // Each rendition's codec string comes from its own encoder (the level follows the size).
    assert_ne!(tracks[0].codec, tracks[2].codec, "360p and 144p differ in level");

    let mut readers = Vec::new();
    for track in tracks {
        let sub = session
            .subscribe(subscribe(&namespace, &track.name))
            .await
            .unwrap_or_else(|e| panic!("SUBSCRIBE {}: {e}", track.name));
        let kind = track.media_kind().unwrap();
        readers.push((track.name.clone(), tokio::spawn(read_track(sub, kind))));
    }

    // A watcher of one rendition (it joins at the next group), and one of a rendition the
    // ladder does not have.
    let summary = dir.path().join("watch.json");
    let watched = dir.path().join("watched.mp4");
    let mut watcher = command(
        WATCH,
        &[
            &url,
            "--broadcast",
            "ladder/test",
            "--rendition",
            "240p",
            "--output",
            watched.to_str().unwrap(),
            "--summary",
            summary.to_str().unwrap(),
            "--duration",
            "60s",
            "--tls-hash",
            &relay.hash,
        ],
    )
    .spawn()
    .unwrap();
    let watcher_log = Log::follow(watcher.stderr.take().unwrap());
    let unknown = command(
        WATCH,
        &[
            &url,
            "--broadcast",
            "ladder/test",
            "--rendition",
            "4k",
            "--tls-hash",
            &relay.hash,
        ],
    )
    .output();
    let unknown = within(
        Duration::from_secs(20),
        "an unknown rendition is refused",
        unknown,
    )
    .await
    .unwrap();
    let unknown_err = String::from_utf8_lossy(&unknown.stderr);
    assert!(!unknown.status.success(), "{unknown_err}");
    assert!(
        unknown_err.contains(
            "--rendition 4k: no such video track (the catalog has: video/360p, video/240p, video/144p)"
        ),
        "{unknown_err}"
    );

    let status = within(
        Duration::from_secs(90),
        "the publisher ends with its source",
        publisher.wait(),
    )
    .await
    .unwrap();
    until(
        Duration::from_secs(5),
        "the publisher's stderr ends",
        &publisher_log,
        || publisher_log.ended(),
    )
    .await;
    assert!(status.success(), "publisher: {status}\n{}", publisher_log.text());

    let mut received: Vec<(String, Received)> = Vec::new();
    for (name, reader) in readers {
        let r = within(Duration::from_secs(20), "every track ends", reader)
            .await
            .unwrap();
        received.push((name, r));
    }
    session.close(banyan_moq::coding::SessionErrorCode::NoError, "done");
    driver.abort();

    // Alignment: the same group IDs in every rendition, consecutive; each group starts with
    // an IDR frame carrying the codec configuration, at the same timestamp in every rendition.
    let videos = &received[..3];
    let groups: Vec<Vec<u64>> = videos.iter().map(|(_, r)| r.keys().copied().collect()).collect();
    eprintln!("ladder: groups per rendition {groups:?}");
    let expected_groups = (SECONDS * FPS).div_ceil(GOP) as usize;
    assert_eq!(groups[0].len(), expected_groups, "every group of the clip");
    assert!(
        groups[0].windows(2).all(|w| w[1] == w[0] + 1),
        "consecutive: {:?}",
        groups[0]
    );
    for (i, (name, _)) in videos.iter().enumerate() {
        assert_eq!(
            groups[i], groups[0],
            "{name} has the same group IDs as {}",
            videos[0].0
        );
    }
    for group in &groups[0] {
        let firsts: Vec<&(u64, LocFrame)> = videos.iter().map(|(_, r)| &r[group][0]).collect();
        for ((name, _), (object, frame)) in videos.iter().zip(&firsts) {
            assert_eq!(*object, 0, "{name} group {group}: object 0 first");
            assert!(
                is_idr(&frame.payload),
                "{name} group {group}: object 0 is an IDR frame"
            );
            assert!(frame.config.is_some(), "{name} group {group}: config on object 0");
        }
        let stamps: Vec<u64> = firsts.iter().map(|(_, f)| f.timestamp_us).collect();
        assert!(
            stamps.iter().all(|s| *s == stamps[0]),
            "group {group}: keyframe timestamps differ across renditions: {stamps:?}"
        );
        let lens: Vec<usize> = videos.iter().map(|(_, r)| r[group].len()).collect();
        assert!(
            lens.iter().all(|l| *l == lens[0]),
            "group {group}: frame counts {lens:?}"
        );
    }
    // Within a group, frames are one frame interval apart (stamped from the media timeline);
    // from group to group at least that (the pacing clock may re-anchor forward between
    // groups if the machine stalls the input for over 500 ms).
    for (name, r) in videos {
        let frames: usize = r.values().map(Vec::len).sum();
        assert_eq!(frames as u64, SECONDS * FPS, "{name}: every frame");
        let mut last_group_end = None;
        for (group, objects) in r {
            let stamps: Vec<u64> = objects.iter().map(|(_, f)| f.timestamp_us).collect();
            for w in stamps.windows(2) {
                let step = w[1] - w[0];
                assert!(
                    (33_000..=33_700).contains(&step),
                    "{name} group {group}: frame step {step} µs"
                );
            }
            if let Some(end) = last_group_end {
                assert!(stamps[0] >= end + 33_000, "{name} group {group} starts too soon");
            }
            last_group_end = stamps.last().copied();
        }
    }
    // The audio keeps the input's timeline: it starts a second after the video and runs
    // SECONDS, so from the input's start (where every output starts) it spans SECONDS + 1 s of
    // 20 ms Opus frames, the first second silence. (ffmpeg starts each output at zero:
    // unpadded, the audio would span SECONDS and play a second early.) Counted, not timed.
    let audio_frames: usize = received[3].1.values().map(Vec::len).sum();
    let span_ms = audio_frames as u64 * 20;
    assert!(
        (SECONDS * 1000 + 900..=SECONDS * 1000 + 1100).contains(&span_ms),
        "audio spans {span_ms} ms, not {} ms",
        SECONDS * 1000 + 1000
    );

    // Each rendition decodes at its own size, every frame.
    for ((name, r), (_, width, height, _)) in videos.iter().zip(EXPECTED) {
        let track = tracks.iter().find(|t| &t.name == name).unwrap();
        let config = TrackConfig::from_catalog(&catalog, track).unwrap();
        let path = dir.path().join(format!("{}.mp4", name.replace('/', "-")));
        remux(&path, config, r);
        assert_eq!(
            ffprobe_video(&path),
            (width, height, SECONDS * FPS),
            "{name}: ffprobe size and frames"
        );
    }

    // The watcher played the rendition it asked for.
    let status = within(
        Duration::from_secs(30),
        "the watcher ends with the broadcast",
        watcher.wait(),
    )
    .await
    .unwrap();
    assert!(status.success(), "watcher: {status}\n{}", watcher_log.text());
    assert!(
        watcher_log.contains("video/240p, audio"),
        "{}",
        watcher_log.text()
    );
    let (width, height, frames) = ffprobe_video(&watched);
    assert_eq!((width, height), (426, 240), "--rendition 240p");
    assert!(
        frames >= GOP,
        "the watcher played at least a group: {frames} frames"
    );

    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ladders_exit_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let malformed = dir.path().join("malformed.toml");
    std::fs::write(&malformed, "[[rendition]]\nname = \"a\"\nwidth = 640\n").unwrap();
    let duplicate = dir.path().join("duplicate.toml");
    std::fs::write(
        &duplicate,
        "[[rendition]]\nname = \"a\"\nwidth = 640\nheight = 360\nbitrate = \"800k\"\n\
         [[rendition]]\nname = \"a\"\nwidth = 320\nheight = 180\nbitrate = \"300k\"\n",
    )
    .unwrap();
    let cases = [
        ("720p,4k".to_string(), "unknown rendition preset \"4k\""),
        ("720p,720p".to_string(), "duplicate rendition name \"720p\""),
        (malformed.display().to_string(), "missing field `height`"),
        (duplicate.display().to_string(), "duplicate rendition name \"a\""),
        (
            "/nonexistent/ladder.toml".to_string(),
            "reading /nonexistent/ladder.toml",
        ),
    ];
    for (spec, message) in cases {
        // Nothing listens at this address: the ladder is refused before any connection.
        let out = command(
            PUBLISH,
            &[
                "moqt://127.0.0.1:9",
                "--broadcast",
                "ladder/bad",
                "--ladder",
                &spec,
                "--input-format",
                "lavfi",
                "--input",
                "testsrc",
                "--tls-insecure",
            ],
        )
        .output();
        let out = within(Duration::from_secs(10), "a bad ladder exits", out)
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "--ladder {spec}: {stderr}");
        assert!(
            stderr.contains("banyan-publish: error: --ladder") && stderr.contains(message),
            "--ladder {spec}: want {message:?} in {stderr}"
        );
    }

    // Input ffmpeg cannot read: a missing file (found by the probe), nothing on stdin (ffmpeg
    // itself fails). Both exit 1 with ffmpeg's reason, at once.
    let cases = [
        (
            "/nonexistent/input.mp4",
            "ffprobe could not read the input \"/nonexistent/input.mp4\"",
        ),
        (
            "-",
            "ffmpeg exited with exit status: 1: pipe:: Invalid data found",
        ),
    ];
    for (input, message) in cases {
        let args = [
            "moqt://127.0.0.1:9",
            "--broadcast",
            "ladder/bad",
            "--ladder",
            "240p",
            "--input",
            input,
            "--tls-insecure",
        ];
        let out = within(
            Duration::from_secs(10),
            "bad input exits",
            command(PUBLISH, &args).output(),
        )
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "--input {input}: {stderr}");
        assert!(
            stderr.contains(message),
            "--input {input}: want {message:?} in {stderr}"
        );
    }
}

fn subscribe(namespace: &TrackNamespace, name: &str) -> Subscribe {
    Subscribe {
        request_id: 0,
        track_namespace: namespace.clone(),
        track_name: TrackName::from(name),
        parameters: Parameters {
            rendezvous_timeout: Some(10_000),
            ..Parameters::default()
        },
    }
}

async fn first_catalog(session: &Session, namespace: &TrackNamespace) -> Catalog {
    let mut sub = session
        .subscribe(subscribe(namespace, CATALOG_TRACK))
        .await
        .unwrap();
    loop {
        match sub.next().await.unwrap() {
            Some(TrackEvent::Subgroup(mut reader)) => {
                if let Some(object) = reader.next().await.unwrap() {
                    return Catalog::parse(&object.payload).unwrap();
                }
            }
            Some(_) => continue,
            None => panic!("the catalog track ended before a catalog"),
        }
    }
}

/// Every object of a subscription until it is done (each group stream read concurrently).
async fn read_track(mut sub: banyan_moq::session::Subscription, kind: MediaKind) -> Received {
    let mut streams = tokio::task::JoinSet::new();
    while let Some(event) = sub.next().await.unwrap() {
        match event {
            TrackEvent::Subgroup(mut reader) => {
                streams.spawn(async move {
                    let group = reader.group_id();
                    let mut objects = Vec::new();
                    while let Some(object) = reader.next().await.unwrap() {
                        let frame = LocFrame::from_object(kind, &object).unwrap();
                        objects.push((object.object_id, frame));
                    }
                    (group, objects)
                });
            }
            TrackEvent::Done(_) => break,
            _ => {}
        }
    }
    let mut received = Received::new();
    while let Some(joined) = streams.join_next().await {
        let (group, objects) = joined.unwrap();
        received.entry(group).or_default().extend(objects);
    }
    received
}

/// Whether an H.264 frame (4-byte length-prefixed NAL units) holds an IDR slice.
fn is_idr(mut data: &[u8]) -> bool {
    while data.len() > 4 {
        let len = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
        if data.len() < 4 + len || len == 0 {
            return false;
        }
        if data[4] & 0x1f == 5 {
            return true;
        }
        data = &data[4 + len..];
    }
    false
}

/// Write a rendition's frames as fragmented MP4 (one fragment per frame).
fn remux(path: &Path, config: TrackConfig, received: &Received) {
    let mut muxer = Muxer::new(vec![config]);
    let mut out = muxer.init_segment().unwrap().to_vec();
    let frames: Vec<(u64, &LocFrame)> = received.values().flatten().map(|(o, f)| (*o, f)).collect();
    let base = frames[0].1.timestamp_us;
    for (object, frame) in &frames {
        let sample = Sample {
            track_id: 1,
            timescale: 1_000_000, // the muxer's timescale
            decode_time: frame.timestamp_us - base,
            composition_offset: 0,
            duration: u32::try_from(1_000_000 / FPS).unwrap(),
            keyframe: *object == 0,
            data: frame.payload.clone(),
        };
        out.extend_from_slice(&muxer.fragment(1, &[sample]).unwrap());
    }
    std::fs::write(path, out).unwrap();
}
