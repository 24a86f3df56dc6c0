//! `banyan-record` as a user runs it: an ffmpeg-made H.264 + Opus clip published through an
//! in-process relay by `banyan-publish` (paced in real time: the protocol path is the live
//! one), recorded by `banyan-record run`, judged with ffprobe and by reading every segment back.
//!
//! The clip is 10 s (the issue asks for 60 s; 10 s of 1 s groups already gives ten segments
//! per track, and each test costs its clip's length in wall time). Needs ffmpeg and ffprobe.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use banyan_moq::coding::{TrackName, TrackNamespace};
use banyan_moq::message::{Message, Parameters, Publish};
use banyan_moq::session::{Session, TrackWriter};
use banyan_publisher::connect::ConnectArgs;
use banyan_publisher::record::export::read_segment;
use banyan_publisher::record::store::{Segment, Stored};
use banyan_relay::interact::payload::Up;
use banyan_tests::media_tools::ffprobe_frames;
use common::{command, until, within, Log, TestRelay, PUBLISH};
use tokio::process::Child;

const RECORD: &str = env!("CARGO_BIN_EXE_banyan-record");
const FRAG: &str = "frag_keyframe+empty_moov+default_base_moof";
/// Clip length, frame rate and GOP (one group per second).
const SECS: u64 = 10;
const FRAMES: u64 = SECS * 30;

/// A 10 s 320x240 30 fps H.264 (GOP 30) + Opus clip.
fn clip(dir: &Path) -> PathBuf {
    let out = dir.join("clip.mp4");
    let status = std::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=30",
            "-f",
            "lavfi",
        ])
        .args([
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            &SECS.to_string(),
        ])
        .args([
            "-c:v",
            "libx264",
            "-tune",
            "zerolatency",
            "-g",
            "30",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "libopus", "-b:a", "48k", "-f", "mp4", "-movflags", FRAG])
        .arg(&out)
        .status()
        .expect("ffmpeg must be installed (apt-get install ffmpeg)");
    assert!(status.success(), "ffmpeg made no clip");
    out
}

/// A temp directory with the clip in it, and a relay.
async fn setup() -> (tempfile::TempDir, PathBuf, TestRelay) {
    let tmp = tempfile::tempdir().unwrap();
    let clip = clip(tmp.path());
    (tmp, clip, TestRelay::start(false).await)
}

/// `banyan-record export` the recording `rec` to `out`; what ffprobe decodes of it.
async fn export(rec: &Path, out: &Path) -> Vec<(String, u64)> {
    let export = command(RECORD, &["export", rec.to_str().unwrap(), out.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&export.stderr);
    assert!(export.status.success(), "{stderr}");
    eprint!("{stderr}");
    ffprobe_frames(out)
}

/// A viewer of `broadcast` that comments `text` in room 0 and sends a like total of 3 on its
/// `interact` track; keep what it returns until the relay has taken them.
async fn comment_and_like(relay: &TestRelay, broadcast: &str, text: &str) -> (Session, TrackWriter) {
    let args = ConnectArgs {
        url: relay.url().parse().unwrap(),
        tls_hash: Some(relay.hash.clone()),
        tls_ca: None,
        tls_insecure: false,
        token: None,
        connect_timeout: Duration::from_secs(5),
    };
    let (session, driver) = args.connector().unwrap().connect(None).await.unwrap();
    tokio::spawn(driver.run());
    let publish = Publish {
        request_id: 0,
        track_namespace: TrackNamespace::from_path(broadcast).unwrap(),
        track_name: TrackName::from("interact"),
        track_alias: 0,
        parameters: Parameters::default(),
        track_properties: Default::default(),
    };
    let mut writer = session.publish(publish).await.unwrap();
    let answer = within(
        Duration::from_secs(10),
        "PUBLISH_OK for interact",
        writer.next_request(),
    )
    .await
    .unwrap();
    assert!(matches!(answer, Some(Message::RequestOk(_))), "{answer:?}");
    let comment = Up::Comment {
        room: "0".into(),
        text: text.to_string().into(),
    };
    for (group, up) in [(0, comment), (1, Up::Like { source: 7, total: 3 })] {
        let mut stream = writer
            .sender()
            .open_subgroup(group, 0, None, false)
            .await
            .unwrap();
        stream.write_payload(0, up.encode()).await.unwrap();
        stream.finish();
    }
    (session, writer)
}

fn publish(relay: &TestRelay, broadcast: &str, clip: &Path) -> (Child, Log) {
    let url = relay.url();
    let args = [
        url.as_str(),
        "--broadcast",
        broadcast,
        "--input",
        clip.to_str().unwrap(),
    ];
    let mut c = command(PUBLISH, &args);
    c.args(["--wait-subscribers", "--tls-hash", &relay.hash]);
    let mut child = c.spawn().unwrap();
    let log = Log::follow(child.stderr.take().unwrap());
    (child, log)
}

fn record(relay: &TestRelay, broadcast: &str, dir: &Path, extra: &[&str]) -> (Child, Log) {
    let url = relay.url();
    let mut c = command(RECORD, &["run", "--relay", &url, "--broadcast", broadcast]);
    c.args([
        "--dir",
        dir.to_str().unwrap(),
        "--tls-hash",
        &relay.hash,
        "--rendezvous",
        "10s",
    ]);
    c.args(extra).stdout(Stdio::null());
    let mut child = c.spawn().unwrap();
    let log = Log::follow(child.stderr.take().unwrap());
    (child, log)
}

async fn exit_code(child: &mut Child, log: &Log, within_: Duration) -> i32 {
    let status = within(within_, "banyan-record exits", child.wait())
        .await
        .unwrap();
    while !log.ended() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    status.code().unwrap_or(-1)
}

fn index(rec: &Path, track: &str) -> Vec<Segment> {
    let stored = Stored::read(rec).unwrap();
    let i = stored.info.tracks.iter().position(|t| t.name == track).unwrap();
    stored.tracks[i].1.clone()
}

/// Read every indexed segment back: it parses, holds as many frames as the index says, and no
/// file is left that the index does not name. Returns (segments, frames) per track.
fn check_every_file(rec: &Path) -> Vec<(String, usize, u64)> {
    let stored = Stored::read(rec).unwrap();
    let mut out = Vec::new();
    for (info, (init, segments)) in stored.info.tracks.iter().zip(&stored.tracks) {
        let dir = rec.join(&info.dir);
        for s in segments {
            let (_, samples) = read_segment(init, &dir.join(&s.file)).unwrap();
            assert_eq!(samples.len() as u64, s.objects, "{} {}", info.name, s.file);
            assert_eq!(s.captures_us.len() as u64, s.objects);
            let (start, end) = s.object_range(0).unwrap();
            assert_eq!(
                end - start,
                samples[0].data.len() as u64,
                "offsets point at the payloads"
            );
        }
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".m4s") || n.ends_with(".tmp"))
            .collect();
        names.sort();
        let mut indexed: Vec<String> = segments.iter().map(|s| s.file.clone()).collect();
        indexed.sort();
        assert_eq!(names, indexed, "{}: only indexed segments on disk", info.name);
        out.push((
            info.name.clone(),
            segments.len(),
            segments.iter().map(|s| s.objects).sum(),
        ));
    }
    out
}

/// Frames of the stream of `codec` (ffprobe lists an HLS stream again under its program, so
/// the most of any one such stream, not the sum).
fn frames_of(probe: &[(String, u64)], codec: &str) -> u64 {
    probe
        .iter()
        .filter(|(c, _)| c == codec)
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_is_recorded_exported_and_opens_as_hls() {
    let (tmp, clip, relay) = setup().await;
    let root = tmp.path().join("rec");
    let (mut recorder, rlog) = record(&relay, "show/one", &root, &[]);
    let (mut publisher, plog) = publish(&relay, "show/one", &clip);
    let video_index = root.join("show/one/video/index.jsonl");
    until(Duration::from_secs(20), "two video segments", &rlog, || {
        std::fs::read_to_string(&video_index).is_ok_and(|t| t.lines().count() >= 2)
    })
    .await;
    let sent_ms = common::unix_ms();
    let _viewer = comment_and_like(&relay, "show/one", "hello, recording").await;
    let code = exit_code(&mut recorder, &rlog, Duration::from_secs(60)).await;
    assert_eq!(
        code,
        0,
        "the recorder ends with the broadcast:\n{}\n{}",
        rlog.text(),
        plog.text()
    );
    within(Duration::from_secs(20), "publisher exits", publisher.wait())
        .await
        .unwrap();
    let rec = root.join("show/one");
    let files = check_every_file(&rec);
    eprintln!("recorded (track, segments, frames): {files:?}");
    let video = index(&rec, "video");
    let recorded: u64 = video.iter().map(|s| s.objects).sum();
    assert!(
        recorded * 100 >= FRAMES * 99,
        "recorded {recorded} of {FRAMES} video frames"
    );
    assert_eq!(video.len() as u64, SECS, "one segment per 1 s group");
    assert!(rlog.contains("the broadcast ended"), "{}", rlog.text());
    let playlist = std::fs::read_to_string(rec.join("video/playlist.m3u8")).unwrap();
    assert!(playlist.contains("#EXT-X-VERSION:7") && playlist.contains("#EXT-X-MAP:URI=\"init.mp4\""));
    assert!(playlist.ends_with("#EXT-X-ENDLIST\n"), "{playlist}");

    let timeline: Vec<serde_json::Value> = std::fs::read_to_string(rec.join("timeline.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    eprintln!("timeline: {timeline:?}");
    let chat = timeline
        .iter()
        .find(|e| e["track"] == "chat/0")
        .expect("the comment is in the timeline");
    assert_eq!(chat["text"], "hello, recording");
    let accepted = chat["accepted_unix_ms"].as_u64().unwrap();
    assert!(
        accepted >= sent_ms && chat["arrival_unix_ms"].as_u64().unwrap() >= accepted,
        "{chat}"
    );
    assert!(
        timeline.iter().any(|e| e["track"] == "likes" && e["value"] == 3),
        "the like total is in the timeline: {timeline:?}"
    );
    let out = tmp.path().join("export.mp4");
    let probed = export(&rec, &out).await;
    let (v, a) = (frames_of(&probed, "h264"), frames_of(&probed, "opus"));
    let audio: u64 = index(&rec, "audio").iter().map(|s| s.objects).sum();
    eprintln!("export decodes {v} video frames of {recorded} recorded ({FRAMES} sent), {a} audio of {audio}");
    assert!(
        v * 100 >= recorded * 99 && v * 100 >= FRAMES * 99,
        "export decodes {v} video frames"
    );
    assert!(
        a * 100 >= audio * 99 && audio > 0,
        "export decodes {a} audio frames of {audio}"
    );

    for playlist in ["master.m3u8", "video/playlist.m3u8"] {
        let probed = ffprobe_frames(&rec.join(playlist));
        let v = frames_of(&probed, "h264");
        eprintln!("{playlist}: ffprobe decodes {probed:?}");
        assert!(
            v * 100 >= recorded * 99,
            "{playlist} decodes {v} of {recorded} video frames"
        );
    }
    let master_audio = frames_of(&ffprobe_frames(&rec.join("master.m3u8")), "opus");
    assert!(
        master_audio * 100 >= audio * 99,
        "master.m3u8 decodes {master_audio} audio frames"
    );
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_older_recordings_then_the_oldest_segments_and_by_age() {
    let (tmp, clip, relay) = setup().await;
    let root = tmp.path().join("rec");
    // An older recording of 200 KB.
    let old = root.join("old");
    std::fs::create_dir_all(old.join("video")).unwrap();
    std::fs::write(
        old.join("recording.json"),
        r#"{"broadcast":"old","base_us":1,"started_unix_ms":1,"tracks":[{"name":"video","kind":"video","dir":"video"}]}"#,
    )
    .unwrap();
    std::fs::write(old.join("video/0.m4s"), vec![0u8; 200_000]).unwrap();
    const BOUND: u64 = 150 * 1024;
    let (mut recorder, rlog) = record(&relay, "show/two", &root, &["--max-bytes", "150k"]);
    // A second recorder of the same broadcast elsewhere, keeping 3 s.
    let aged = tmp.path().join("aged");
    let (mut recorder_aged, alog) = record(&relay, "show/two", &aged, &["--max-age", "3s"]);
    let (mut publisher, _plog) = publish(&relay, "show/two", &clip);
    assert_eq!(
        exit_code(&mut recorder, &rlog, Duration::from_secs(60)).await,
        0,
        "{}",
        rlog.text()
    );
    assert_eq!(
        exit_code(&mut recorder_aged, &alog, Duration::from_secs(30)).await,
        0,
        "{}",
        alog.text()
    );
    let aged = aged.join("show/two");
    let kept = index(&aged, "video");
    let newest = kept.last().unwrap();
    let oldest_start = kept[0].captures_us[0];
    let cutoff = (newest.received_unix_ms - 3000) * 1000;
    eprintln!(
        "--max-age 3s kept {} video segments (seq {}..{}), the oldest starting {} ms before the last write",
        kept.len(),
        kept[0].seq,
        newest.seq,
        newest.received_unix_ms - oldest_start / 1000
    );
    // Checked at every write (audio every half second): nothing older than 3 s before the
    // last check, a little before the last video write.
    assert!(oldest_start + 1_000_000 >= cutoff, "an old segment is kept");
    assert!(kept[0].seq > 0 && kept.len() <= 5, "older segments deleted");
    check_every_file(&aged);
    within(Duration::from_secs(20), "publisher exits", publisher.wait())
        .await
        .unwrap();
    assert!(
        !old.exists(),
        "the older recording is deleted first:\n{}",
        rlog.text()
    );
    let rec = root.join("show/two");
    let video = index(&rec, "video");
    let bytes: u64 = ["video", "audio"]
        .iter()
        .flat_map(|t| index(&rec, t))
        .map(|s| s.bytes)
        .sum();
    eprintln!(
        "kept {} video segments (seq {}..), {bytes} segment bytes under a {BOUND} byte bound",
        video.len(),
        video[0].seq
    );
    assert!(bytes <= BOUND, "{bytes} bytes kept");
    assert!(video[0].seq > 0, "the oldest video segments were deleted");
    assert_eq!(video.last().unwrap().seq, SECS - 1, "the newest is kept");
    check_every_file(&rec);
    let playlist = std::fs::read_to_string(rec.join("video/playlist.m3u8")).unwrap();
    assert!(
        playlist.contains(&format!("#EXT-X-MEDIA-SEQUENCE:{}\n", video[0].seq)),
        "{playlist}"
    );
    let probed = ffprobe_frames(&rec.join("video/playlist.m3u8"));
    let kept: u64 = video.iter().map(|s| s.objects).sum();
    assert!(frames_of(&probed, "h264") * 100 >= kept * 99, "{probed:?}");
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_recorder_restarts_into_the_same_recording() {
    let (tmp, clip, relay) = setup().await;
    let root = tmp.path().join("rec");
    let rec = root.join("show/three");
    let (mut recorder, rlog) = record(&relay, "show/three", &root, &[]);
    let (mut publisher, _plog) = publish(&relay, "show/three", &clip);
    let video_index = rec.join("video/index.jsonl");
    until(Duration::from_secs(20), "three video segments", &rlog, || {
        std::fs::read_to_string(&video_index).is_ok_and(|t| t.lines().count() >= 3)
    })
    .await;
    // Mid-group: half a second into the next one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    common::kill(&mut recorder).await;
    let before = index(&rec, "video");
    let before_all = before.len() + index(&rec, "audio").len();
    // What a crash can leave: a torn index line, a temp segment, a segment not yet indexed.
    let mut torn = std::fs::read(&video_index).unwrap();
    torn.extend_from_slice(br#"{"group":99999,"seq":"#);
    std::fs::write(&video_index, torn).unwrap();
    std::fs::write(rec.join("video/.99998.m4s.tmp"), b"partial").unwrap();
    std::fs::write(rec.join("video/99999.m4s"), b"not indexed").unwrap();

    let (mut recorder, rlog2) = record(&relay, "show/three", &root, &[]);
    assert_eq!(
        exit_code(&mut recorder, &rlog2, Duration::from_secs(60)).await,
        0,
        "{}",
        rlog2.text()
    );
    within(Duration::from_secs(20), "publisher exits", publisher.wait())
        .await
        .unwrap();
    assert!(
        rlog2.contains(&format!("{before_all} segments already there")),
        "{}",
        rlog2.text()
    );
    let files = check_every_file(&rec);
    let video = index(&rec, "video");
    assert!(
        video.starts_with(&before),
        "the recording continues after what was there"
    );
    let groups: Vec<u64> = video.iter().map(|s| s.group).collect();
    let missing = (groups.last().unwrap() - groups[0] + 1) - groups.len() as u64;
    eprintln!(
        "after kill -9 and restart: {files:?}; {} video groups before the kill, {missing} missing",
        before.len()
    );
    assert!(
        missing <= 1,
        "at most the group cut by the kill is missing: groups {groups:?}"
    );
    assert!(
        groups.windows(2).all(|w| w[0] < w[1]),
        "groups in order: {groups:?}"
    );
    let out = tmp.path().join("export.mp4");
    let probed = export(&rec, &out).await;
    let recorded: u64 = video.iter().map(|s| s.objects).sum();
    let v = frames_of(&probed, "h264");
    assert!(v * 100 >= recorded * 99, "export decodes {v} of {recorded}");
    relay.shutdown().await;
}

/// Unmounts the tmpfs when the test ends, however it ends.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_recording_with_an_alert_and_viewers_keep_watching() {
    let (tmp, clip, relay) = setup().await;
    let root = tmp.path().join("small");
    std::fs::create_dir_all(&root).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=160k", "tmpfs"])
        .arg(&root)
        .status()
        .expect("mount runs");
    assert!(
        mounted.success(),
        "this test mounts a 160 KB tmpfs and needs root (CAP_SYS_ADMIN) to do so"
    );
    let _mount = Mount(root.clone());
    let summary = tmp.path().join("watch.json");
    let (viewer, vlog) = common::watcher(&relay, "show/four", &summary, None, &["--rendezvous", "10s"]);
    let (mut recorder, rlog) = record(&relay, "show/four", &root, &[]);
    let (mut publisher, _plog) = publish(&relay, "show/four", &clip);
    let code = exit_code(&mut recorder, &rlog, Duration::from_secs(60)).await;
    assert_eq!(code, 3, "exit code 3 for a full disk:\n{}", rlog.text());
    assert!(rlog.contains("ALERT: disk full (ENOSPC)"), "{}", rlog.text());
    let at_stop = vlog.groups();
    within(Duration::from_secs(20), "publisher exits", publisher.wait())
        .await
        .unwrap();
    let summary = common::stop_watcher(viewer, &vlog, &summary).await;
    let watched = summary["tracks"]["video"]["objects"].as_u64().unwrap();
    eprintln!(
        "recorder stopped on ENOSPC after {} segments; the viewer had {at_stop} groups then and watched {watched} video frames",
        Stored::read(&root.join("show/four")).map_or(0, |s| s.tracks[0].1.len())
    );
    assert_eq!(watched, FRAMES, "the live viewer gets every frame: {summary}");
    assert_eq!(summary["gaps"], 0, "{summary}");
    // What was recorded before the disk filled is whole.
    check_every_file(&root.join("show/four"));
    relay.shutdown().await;
}
