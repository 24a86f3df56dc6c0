//! Proves the MSF catalog types read every JSON catalog example in draft-ietf-moq-msf (copied
//! verbatim into `tests/msf/`) and write it back with no field lost or changed, and that the
//! catalogs Banyan itself produces carry what WebCodecs needs (codec, size, rate, description).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use banyan_media::catalog::{Catalog, Track, SYNTHETIC_FIELD};
use banyan_media::loc::MediaKind;
use serde_json::Value;

fn examples() -> Vec<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/msf");
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&path).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_draft_example_round_trips_losslessly() {
    let examples = examples();
    assert!(examples.len() >= 15, "the draft's examples are present");
    for (name, json) in examples {
        let catalog = Catalog::parse(json.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let written = catalog.to_json();
        let original: Value = serde_json::from_str(&json).unwrap();
        let rewritten: Value = serde_json::from_slice(&written).unwrap();
        assert_eq!(original, rewritten, "{name} changed in a round trip");
        assert_eq!(Catalog::parse(&written).unwrap(), catalog, "{name}");
    }
}

#[test]
fn single_quality_example_reads_as_typed_fields() {
    let json = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/msf/time-aligned-audio-video-tracks-with-single-quality.json"
    ))
    .unwrap();
    let catalog = Catalog::parse(json.as_bytes()).unwrap();
    assert_eq!(catalog.version.as_deref(), Some("draft-01"));
    assert_eq!(catalog.generated_at, Some(1_746_104_606_044));
    let [video, audio] = catalog.tracks() else {
        panic!("two tracks")
    };
    assert_eq!(video.name, "1080p-video");
    assert_eq!(video.codec.as_deref(), Some("av01.0.08M.10.0.110.09"));
    assert_eq!((video.width, video.height), (Some(1920), Some(1080)));
    assert_eq!(video.framerate, Some(30.0));
    assert_eq!(video.bitrate, Some(1_500_000));
    assert_eq!(video.media_kind(), Some(MediaKind::Video));
    assert_eq!(audio.samplerate, Some(48_000));
    assert_eq!(audio.channel_config.as_deref(), Some("2"));
    assert_eq!(audio.media_kind(), Some(MediaKind::Audio));
}

#[test]
fn delta_updates_and_unknown_versions() {
    let delta = br#"{"generatedAt":1,"deltaUpdate":[{"op":"remove","tracks":[{"name":"video"}]}]}"#;
    let catalog = Catalog::parse(delta).unwrap();
    assert!(catalog.is_delta());
    assert!(catalog.tracks().is_empty());
    assert!(Catalog::parse(br#"{"version":"v9","tracks":[]}"#).is_err());
    assert!(
        Catalog::parse(br#"{"tracks":[]}"#).is_err(),
        "independent without version"
    );
    assert!(Catalog::parse(b"not json").is_err());
    assert!(Catalog::parse(br#"{"version":"draft-01","tracks":{"a":1}}"#).is_err());
}

#[test]
fn inline_init_data_carries_the_decoder_description() {
    let avcc = [1u8, 0x64, 0x00, 0x28, 0xff, 0xe1, 0x00, 0x02, 0x67, 0x64];
    let mut catalog = Catalog::live(vec![Track {
        name: "video".into(),
        packaging: Some("loc".into()),
        is_live: Some(true),
        role: Some("video".into()),
        codec: Some("avc1.640028".into()),
        width: Some(1280),
        height: Some(720),
        framerate: Some(29.97),
        bitrate: Some(2_000_000),
        ..Default::default()
    }]);
    catalog.set_init_data(0, &avcc);
    let json = catalog.to_json();
    let value: Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(value["tracks"][0]["initRef"], "video-init");
    assert_eq!(value["tracks"][0]["framerate"], 29.97);
    assert_eq!(value["initDataList"][0]["type"], "inline");
    assert_eq!(value["initDataList"][0]["data"], "AWQAKP/hAAJnZA==");
    let back = Catalog::parse(&json).unwrap();
    assert_eq!(back.init_data(&back.tracks()[0]).unwrap().unwrap(), avcc);
    assert!(!back.tracks()[0].is_synthetic());

    let mut synthetic = back.tracks()[0].clone();
    synthetic.extra.insert(SYNTHETIC_FIELD.into(), Value::Bool(true));
    assert!(synthetic.is_synthetic());
}
