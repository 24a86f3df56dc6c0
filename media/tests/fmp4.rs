//! Proves the fMP4 demuxer reads what ffmpeg writes (H.264+Opus, AV1, VP9+AAC): every frame,
//! keyframe flags on GOP boundaries, monotonic timestamps, and WebCodecs codec strings and
//! descriptions; that the muxer writes it back as fragmented MP4 which ffprobe decodes with the
//! same frame count and codecs; and that non-MP4, truncated, unfragmented or unsupported input
//! is a clear error (and arbitrary bytes never panic). Needs ffmpeg and ffprobe on PATH.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::{Command, Stdio};

use banyan_media::fmp4::{DemuxEvent, DemuxTrack, Demuxer, Error, Muxer, Sample};
use banyan_media::MediaKind;
use banyan_tests::media_tools::ffprobe_frames_of as ffprobe;
use proptest::prelude::*;

const FRAG: &str = "frag_keyframe+empty_moov+default_base_moof";

/// Run ffmpeg with `args` (output to stdout) and return what it wrote.
fn ffmpeg(args: &[&str]) -> Vec<u8> {
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("ffmpeg must be installed (scripts/test installs it; apt-get install ffmpeg)");
    assert!(
        output.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn h264_opus() -> Vec<u8> {
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=160x120:rate=30",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        "2",
        "-c:v",
        "libx264",
        "-tune",
        "zerolatency",
        "-g",
        "30",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "libopus",
        "-b:a",
        "32k",
        "-f",
        "mp4",
        "-movflags",
        FRAG,
        "-",
    ])
}

/// Demux `data` fed in chunks of `chunk` bytes.
fn demux(data: &[u8], chunk: usize) -> (Vec<DemuxTrack>, Vec<Sample>) {
    let mut demuxer = Demuxer::default();
    let mut tracks = Vec::new();
    let mut samples = Vec::new();
    for piece in data.chunks(chunk) {
        demuxer.push(piece);
        while let Some(event) = demuxer.poll_event().unwrap() {
            match event {
                DemuxEvent::Init(t) => tracks = t,
                DemuxEvent::Sample(s) => samples.push(s),
            }
        }
    }
    demuxer.finish().unwrap();
    (tracks, samples)
}

/// Mux demuxed samples back, one fragment per sample at the muxer's microsecond timescale.
fn remux(tracks: &[DemuxTrack], samples: &[Sample]) -> Vec<u8> {
    let mut muxer = Muxer::new(tracks.iter().map(|t| t.config.clone()).collect());
    let mut out = muxer.init_segment().unwrap().to_vec();
    for s in samples {
        let index = tracks.iter().position(|t| t.track_id == s.track_id).unwrap();
        let pts = s.presentation_time_us() as i64;
        let dts = s.decode_time_us();
        let rescaled = Sample {
            track_id: index as u32 + 1,
            timescale: 1_000_000,
            decode_time: dts,
            composition_offset: pts - dts as i64,
            duration: s.duration_us() as u32,
            keyframe: s.keyframe,
            data: s.data.clone(),
        };
        out.extend_from_slice(&muxer.fragment(rescaled.track_id, &[rescaled]).unwrap());
    }
    out
}

fn per_track(tracks: &[DemuxTrack], samples: &[Sample], kind: MediaKind) -> Vec<Sample> {
    let id = tracks.iter().find(|t| t.config.kind == kind).unwrap().track_id;
    samples.iter().filter(|s| s.track_id == id).cloned().collect()
}

#[test]
fn h264_and_opus_from_ffmpeg() {
    let data = h264_opus();
    let (tracks, samples) = demux(&data, 1000);
    assert_eq!(tracks.len(), 2);
    let video = &tracks[0].config;
    assert!(video.codec.starts_with("avc1.64"), "{}", video.codec);
    assert_eq!((video.width, video.height), (160, 120));
    let avcc = video.description.as_ref().unwrap();
    assert_eq!(avcc[0], 1, "avcC configurationVersion");
    assert_eq!(
        format!("avc1.{:02x}{:02x}{:02x}", avcc[1], avcc[2], avcc[3]),
        video.codec
    );
    let audio = &tracks[1].config;
    assert_eq!(audio.codec, "opus");
    assert_eq!((audio.samplerate, audio.channels), (48_000, 1));
    assert_eq!(&audio.description.as_ref().unwrap()[..8], b"OpusHead");

    let v = per_track(&tracks, &samples, MediaKind::Video);
    assert_eq!(v.len(), 60, "2 s at 30 fps");
    let keyframes: Vec<usize> = v
        .iter()
        .enumerate()
        .filter(|(_, s)| s.keyframe)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(keyframes, vec![0, 30], "-g 30");
    assert!(v
        .windows(2)
        .all(|w| w[1].decode_time_us() > w[0].decode_time_us()));
    assert!((v[2].decode_time_us() - v[1].decode_time_us()).abs_diff(33_333) < 100);
    let a = per_track(&tracks, &samples, MediaKind::Audio);
    assert!(a.len() >= 99, "20 ms Opus packets for 2 s: {}", a.len());
    assert!(a.iter().all(|s| s.keyframe));
    // Samples of each fragment come out in decode-time order across tracks.
    assert!(
        samples
            .windows(2)
            .filter(|w| w[1].decode_time_us() < w[0].decode_time_us())
            .count()
            <= 1
    );

    let probed = ffprobe(&data);
    let remuxed = remux(&tracks, &samples);
    assert_eq!(ffprobe(&remuxed), probed);
    assert_eq!(probed[0], ("h264".to_string(), 60));
    assert_eq!(probed[1].0, "opus");
}

#[test]
fn av1_from_ffmpeg() {
    let data = ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=160x120:rate=30",
        "-t",
        "1",
        "-c:v",
        "libaom-av1",
        "-usage",
        "realtime",
        "-cpu-used",
        "8",
        "-g",
        "15",
        "-pix_fmt",
        "yuv420p",
        "-f",
        "mp4",
        "-movflags",
        &format!("{FRAG}+delay_moov"),
        "-",
    ]);
    let (tracks, samples) = demux(&data, 333);
    assert_eq!(tracks.len(), 1);
    let config = &tracks[0].config;
    assert!(config.codec.starts_with("av01.0."), "{}", config.codec);
    assert!(config.codec.ends_with(".08"), "{}", config.codec);
    assert_eq!(
        config.description.as_ref().unwrap()[0],
        0x81,
        "av1C marker and version"
    );
    assert_eq!(samples.len(), 30);
    assert!(samples[0].keyframe && samples[15].keyframe && !samples[1].keyframe);
    assert_eq!(ffprobe(&remux(&tracks, &samples)), vec![("av1".to_string(), 30)]);
}

#[test]
fn vp9_and_aac_from_ffmpeg() {
    let data = ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=160x120:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=sample_rate=44100",
        "-t",
        "1",
        "-c:v",
        "libvpx-vp9",
        "-pix_fmt",
        "yuv420p",
        "-deadline",
        "realtime",
        "-cpu-used",
        "8",
        "-g",
        "25",
        "-c:a",
        "aac",
        "-ac",
        "2",
        "-f",
        "mp4",
        "-movflags",
        FRAG,
        "-",
    ]);
    let (tracks, samples) = demux(&data, 4096);
    assert!(
        tracks[0].config.codec.starts_with("vp09.00."),
        "{}",
        tracks[0].config.codec
    );
    assert_eq!(tracks[1].config.codec, "mp4a.40.2");
    assert_eq!(
        (tracks[1].config.samplerate, tracks[1].config.channels),
        (44_100, 2)
    );
    assert_eq!(per_track(&tracks, &samples, MediaKind::Video).len(), 25);
    let probed = ffprobe(&data);
    assert_eq!(ffprobe(&remux(&tracks, &samples)), probed);
}

#[test]
fn bad_input_is_a_clear_error() {
    // Not MP4 at all.
    let mut demuxer = Demuxer::default();
    demuxer.push(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n");
    assert!(matches!(demuxer.poll_event(), Err(Error::NotMp4(_))));

    // Truncated in the middle of a fragment.
    let data = h264_opus();
    let mut demuxer = Demuxer::default();
    demuxer.push(&data[..data.len() - 100]);
    while demuxer.poll_event().unwrap().is_some() {}
    assert!(matches!(demuxer.finish(), Err(Error::Truncated(_))));

    // Nothing at all.
    assert!(matches!(Demuxer::default().finish(), Err(Error::Empty)));

    // A regular (unfragmented) MP4.
    let plain = {
        let dir = std::env::temp_dir().join(format!("banyan-media-{}.mp4", std::process::id()));
        let path = dir.to_string_lossy().into_owned();
        ffmpeg(&[
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x64:rate=10",
            "-t",
            "1",
            "-c:v",
            "libx264",
            "-f",
            "mp4",
            &path,
        ]);
        let bytes = std::fs::read(&dir).unwrap();
        let _ = std::fs::remove_file(&dir);
        bytes
    };
    let mut demuxer = Demuxer::default();
    demuxer.push(&plain);
    let mut result = Ok(None);
    for _ in 0..10 {
        result = demuxer.poll_event();
        if !matches!(result, Ok(Some(_))) {
            break;
        }
    }
    assert!(matches!(result, Err(Error::NotFragmented)), "{result:?}");

    // A codec Banyan does not carry (MPEG-4 Part 2 video).
    let mpeg4 = ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=64x64:rate=10",
        "-t",
        "1",
        "-c:v",
        "mpeg4",
        "-f",
        "mp4",
        "-movflags",
        FRAG,
        "-",
    ]);
    let mut demuxer = Demuxer::default();
    demuxer.push(&mpeg4);
    let err = loop {
        match demuxer.poll_event() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("an unsupported codec must be refused"),
            Err(e) => break e,
        }
    };
    assert!(err.to_string().contains("unsupported codec"), "{err}");

    // AV1 from libaom without +delay_moov: ffmpeg writes an empty av1C; the error says what to do.
    let aom = ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=64x64:rate=10",
        "-t",
        "1",
        "-c:v",
        "libaom-av1",
        "-usage",
        "realtime",
        "-cpu-used",
        "8",
        "-f",
        "mp4",
        "-movflags",
        FRAG,
        "-",
    ]);
    let mut demuxer = Demuxer::default();
    demuxer.push(&aom);
    let err = loop {
        match demuxer.poll_event() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("an empty av1C must be refused"),
            Err(e) => break e,
        }
    };
    assert!(err.to_string().contains("delay_moov"), "{err}");

    // A box that claims to be huge is refused before it is buffered.
    let mut demuxer = Demuxer::new(1 << 20);
    demuxer.push(&[
        0, 0, 0, 16, b'f', b't', b'y', b'p', b'i', b's', b'o', b'6', 0, 0, 0, 0,
    ]);
    demuxer.push(&[0x7f, 0xff, 0xff, 0xff, b'm', b'o', b'o', b'v']);
    assert!(matches!(demuxer.poll_event(), Err(Error::TooLarge { .. })));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048), start in 0usize..3) {
        let mut demuxer = Demuxer::new(1 << 16);
        // Start with a plausible header sometimes so the fuzzing gets past the first check.
        let prefix: &[u8] = match start {
            0 => b"",
            1 => b"\0\0\0\x10ftypiso6\0\0\0\0",
            _ => b"\0\0\0\x10ftypiso6\0\0\0\0\0\0\0\x40moof",
        };
        demuxer.push(prefix);
        demuxer.push(&data);
        while let Ok(Some(_)) = demuxer.poll_event() {}
        let _ = demuxer.finish();
    }

    /// Corrupting a real stream anywhere gives events or an error, never a panic.
    #[test]
    fn corrupted_real_stream_never_panics(flips in proptest::collection::vec((0usize..30_000, any::<u8>()), 1..8)) {
        static DATA: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let data = DATA.get_or_init(h264_opus);
        let mut corrupted = data.clone();
        for (at, byte) in flips {
            if let Some(b) = corrupted.get_mut(at % data.len()) {
                *b ^= byte;
            }
        }
        let mut demuxer = Demuxer::default();
        demuxer.push(&corrupted);
        while let Ok(Some(_)) = demuxer.poll_event() {}
        let _ = demuxer.finish();
    }
}
