//! FLV audio and video tag bodies (as RTMP carries them) → Banyan's codec configurations and
//! frames. Hand-written: the RTMP crate delivers tag bodies as bytes, and what they mean for a
//! LOC track is this small table.
//!
//! | tag | becomes |
//! |---|---|
//! | video, codec 7 (AVC), packet 0: AVCDecoderConfigurationRecord | video config `avc1.PPCCLL`, description = the record (avcC) |
//! | video, codec 7, packet 1: SI24 composition offset + AVCC NAL units | a frame; keyframe = frame type 1 |
//! | enhanced video (`IsExHeader`), FourCC `avc1`: SequenceStart / CodedFrames / CodedFramesX | the same |
//! | enhanced video, FourCC `av01`: SequenceStart (av1C) / CodedFrames (OBUs) | `av01.P.LLT.DD`, description = av1C |
//! | audio, format 10 (AAC), packet 0: AudioSpecificConfig | audio config `mp4a.40.AOT` |
//! | audio, format 10, packet 1 | a raw AAC frame |
//! | enhanced audio (format 9), FourCC `Opus` / `mp4a`: SequenceStart (OpusHead / ASC) / CodedFrames | the same |
//! | anything else (HEVC, VP9, MP3, Speex, …) | [`Tag::Unsupported`], refused by the caller |
//!
//! A body too short for what its header says is a [`FlvError`]; nothing here panics on input.

use banyan_media::codec::TrackConfig;
use banyan_media::MediaKind;
use bytes::Bytes;

/// What one tag body carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Tag {
    /// The video decoder configuration (width and height 0: the caller fills them in).
    VideoConfig(TrackConfig),
    /// A coded video frame.
    Video {
        /// A sync point (IDR).
        keyframe: bool,
        /// Presentation minus decode time, in milliseconds.
        composition_ms: i32,
        /// AVCC (length-prefixed) NAL units.
        data: Bytes,
    },
    /// The audio decoder configuration.
    AudioConfig(TrackConfig),
    /// A coded audio frame.
    Audio(Bytes),
    /// Nothing to carry (end of sequence, command frames, metadata packets).
    Ignored,
    /// A codec Banyan does not carry: the name says which.
    Unsupported(String),
}

/// A tag body that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed FLV {what} tag: {detail}")]
pub struct FlvError {
    /// `video` or `audio`.
    pub what: &'static str,
    /// What is wrong.
    pub detail: &'static str,
}

fn video_err(detail: &'static str) -> FlvError {
    FlvError {
        what: "video",
        detail,
    }
}

fn audio_err(detail: &'static str) -> FlvError {
    FlvError {
        what: "audio",
        detail,
    }
}

/// A video tag body.
pub fn video(body: &Bytes) -> Result<Tag, FlvError> {
    let first = *body.first().ok_or(video_err("empty"))?;
    if first & 0x80 != 0 {
        return enhanced_video(body, first);
    }
    let frame_type = first >> 4;
    let codec = first & 0x0f;
    if frame_type == 5 {
        return Ok(Tag::Ignored); // video info / command frame
    }
    if codec != 7 {
        return Ok(Tag::Unsupported(match codec {
            2 => "Sorenson H.263".into(),
            3 => "Screen video".into(),
            4 | 5 => "VP6".into(),
            6 => "Screen video v2".into(),
            12 => "HEVC (legacy FLV codec id 12)".into(),
            other => format!("FLV video codec id {other}"),
        }));
    }
    let packet = *body.get(1).ok_or(video_err("no AVC packet type"))?;
    let cts = si24(body.get(2..5).ok_or(video_err("no composition time"))?);
    let data = body.slice(5..);
    avc_packet(packet, frame_type == 1, cts, data)
}

fn enhanced_video(body: &Bytes, first: u8) -> Result<Tag, FlvError> {
    let frame_type = (first >> 4) & 0x07;
    let packet = first & 0x0f;
    let fourcc = body.get(1..5).ok_or(video_err("no FourCC"))?;
    if frame_type == 5 {
        return Ok(Tag::Ignored);
    }
    if fourcc == b"av01" {
        return av1_packet(packet, frame_type == 1, body.slice(5..));
    }
    if fourcc != b"avc1" {
        return Ok(Tag::Unsupported(format!(
            "enhanced RTMP video {} (the browser player decodes H.264 and AV1 from RTMP; send one of those)",
            String::from_utf8_lossy(fourcc)
        )));
    }
    match packet {
        // SequenceStart, CodedFrames (with a composition time), CodedFramesX (without).
        0 => avc_packet(0, false, 0, body.slice(5..)),
        1 => {
            let cts = si24(body.get(5..8).ok_or(video_err("no composition time"))?);
            avc_packet(1, frame_type == 1, cts, body.slice(8..))
        }
        3 => avc_packet(1, frame_type == 1, 0, body.slice(5..)),
        _ => Ok(Tag::Ignored), // SequenceEnd, Metadata, MPEG2TSSequenceStart
    }
}

/// Enhanced RTMP AV1: SequenceStart carries the AV1CodecConfigurationRecord (av1C body);
/// CodedFrames and CodedFramesX carry OBUs, with no composition time (AV1 has no reordering).
fn av1_packet(packet: u8, keyframe: bool, data: Bytes) -> Result<Tag, FlvError> {
    use mp4_atom::Atom as _;
    match packet {
        0 => {
            let av1c = mp4_atom::Av1c::decode_body(&mut data.as_ref())
                .map_err(|_| video_err("invalid AV1 sequence start (av1C)"))?;
            let entry = mp4_atom::Codec::Av01(mp4_atom::Av01 {
                av1c,
                ..Default::default()
            });
            let config = TrackConfig::from_sample_entry(&entry)
                .map_err(|_| video_err("invalid AV1 sequence start (av1C)"))?;
            Ok(Tag::VideoConfig(config))
        }
        1 | 3 if data.is_empty() => Err(video_err("empty AV1 frame")),
        1 | 3 => Ok(Tag::Video {
            keyframe,
            composition_ms: 0,
            data,
        }),
        _ => Ok(Tag::Ignored),
    }
}

fn avc_packet(packet: u8, keyframe: bool, composition_ms: i32, data: Bytes) -> Result<Tag, FlvError> {
    match packet {
        0 => {
            // AVCDecoderConfigurationRecord: version 1, profile, compatibility, level, …
            let head = data
                .get(..7)
                .ok_or(video_err("AVC sequence header shorter than 7 bytes"))?;
            if head.first() != Some(&1) {
                return Err(video_err("AVC sequence header is not version 1"));
            }
            let codec = format!(
                "avc1.{:02x}{:02x}{:02x}",
                head.get(1).copied().unwrap_or(0),
                head.get(2).copied().unwrap_or(0),
                head.get(3).copied().unwrap_or(0)
            );
            Ok(Tag::VideoConfig(TrackConfig {
                kind: MediaKind::Video,
                codec,
                description: Some(data),
                width: 0,
                height: 0,
                samplerate: 0,
                channels: 0,
            }))
        }
        1 if data.len() < 5 => Err(video_err("AVC frame shorter than one NAL unit")),
        1 => Ok(Tag::Video {
            keyframe,
            composition_ms,
            data,
        }),
        _ => Ok(Tag::Ignored),
    }
}

/// An audio tag body.
pub fn audio(body: &Bytes) -> Result<Tag, FlvError> {
    let first = *body.first().ok_or(audio_err("empty"))?;
    let format = first >> 4;
    match format {
        10 => {
            let packet = *body.get(1).ok_or(audio_err("no AAC packet type"))?;
            let data = body.slice(2..);
            match packet {
                0 => aac_config(data),
                _ if data.is_empty() => Err(audio_err("empty AAC frame")),
                _ => Ok(Tag::Audio(data)),
            }
        }
        9 => {
            // Enhanced RTMP: AudioPacketType in the low nibble, then a FourCC.
            let packet = first & 0x0f;
            let fourcc = body.get(1..5).ok_or(audio_err("no FourCC"))?;
            let data = body.slice(5..);
            match (fourcc, packet) {
                (b"Opus", 0) => opus_config(data),
                (b"mp4a", 0) => aac_config(data),
                (b"Opus" | b"mp4a", 1) if data.is_empty() => Err(audio_err("empty frame")),
                (b"Opus" | b"mp4a", 1) => Ok(Tag::Audio(data)),
                (b"Opus" | b"mp4a", _) => Ok(Tag::Ignored),
                (other, _) => Ok(Tag::Unsupported(format!(
                    "enhanced RTMP audio {} (send AAC or Opus)",
                    String::from_utf8_lossy(other)
                ))),
            }
        }
        2 | 14 => Ok(Tag::Unsupported("MP3 (send AAC)".into())),
        other => Ok(Tag::Unsupported(format!("FLV audio format {other} (send AAC)"))),
    }
}

/// Sampling frequencies by MPEG-4 index (ISO/IEC 14496-3 §1.6.3.4).
pub(crate) const AAC_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// The audio object type, sample rate and channel configuration of an AudioSpecificConfig.
pub fn parse_asc(asc: &[u8]) -> Option<(u8, u32, u32)> {
    let (b0, b1) = (*asc.first()?, *asc.get(1)?);
    let mut aot = b0 >> 3;
    let (index, channels) = if aot == 31 {
        // Escaped object type: 6 more bits; the frequency index and channels shift by 6.
        let b2 = *asc.get(2)?;
        aot = 32 + (((b0 & 0x07) << 3) | (b1 >> 5));
        (((b1 >> 1) & 0x0f), u32::from(((b1 & 0x01) << 3) | (b2 >> 5)))
    } else {
        (((b0 & 0x07) << 1) | (b1 >> 7), u32::from((b1 >> 3) & 0x0f))
    };
    let rate = *AAC_RATES.get(usize::from(index))?;
    Some((aot, rate, channels))
}

fn aac_config(asc: Bytes) -> Result<Tag, FlvError> {
    let (aot, samplerate, channels) = parse_asc(&asc).ok_or(audio_err("invalid AudioSpecificConfig"))?;
    Ok(Tag::AudioConfig(TrackConfig {
        kind: MediaKind::Audio,
        codec: format!("mp4a.40.{aot}"),
        description: Some(asc),
        width: 0,
        height: 0,
        samplerate,
        channels,
    }))
}

fn opus_config(head: Bytes) -> Result<Tag, FlvError> {
    if head.get(..8) != Some(b"OpusHead".as_slice()) {
        return Err(audio_err("Opus sequence start is not an OpusHead"));
    }
    let channels = u32::from(*head.get(9).ok_or(audio_err("OpusHead too short"))?);
    Ok(Tag::AudioConfig(TrackConfig {
        kind: MediaKind::Audio,
        codec: "opus".into(),
        description: Some(head),
        width: 0,
        height: 0,
        samplerate: 48_000,
        channels,
    }))
}

/// A big-endian signed 24-bit integer.
fn si24(b: &[u8]) -> i32 {
    let v = b.iter().take(3).fold(0i32, |acc, x| (acc << 8) | i32::from(*x));
    (v << 8) >> 8
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn avc_sequence_header_and_frames_map() {
        let record = [1u8, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00];
        let mut body = vec![0x17, 0, 0, 0, 0];
        body.extend_from_slice(&record);
        let Tag::VideoConfig(config) = video(&Bytes::from(body)).unwrap() else {
            panic!()
        };
        assert_eq!(config.codec, "avc1.64001f");
        assert_eq!(config.description.as_deref(), Some(record.as_slice()));
        // A keyframe with a composition offset of 66 ms, and a negative one.
        let frame = Bytes::from_static(&[0x17, 1, 0, 0, 66, 0, 0, 0, 1, 0x65]);
        assert_eq!(
            video(&frame).unwrap(),
            Tag::Video {
                keyframe: true,
                composition_ms: 66,
                data: frame.slice(5..)
            }
        );
        let frame = Bytes::from_static(&[0x27, 1, 0xff, 0xff, 0xfe, 0, 0, 0, 1, 0x41]);
        assert!(matches!(
            video(&frame).unwrap(),
            Tag::Video {
                keyframe: false,
                composition_ms: -2,
                ..
            }
        ));
    }

    #[test]
    fn aac_config_and_frames_map() {
        // AAC-LC, 44.1 kHz, stereo.
        let Tag::AudioConfig(config) = audio(&Bytes::from_static(&[0xaf, 0, 0x12, 0x10])).unwrap() else {
            panic!()
        };
        assert_eq!(
            (config.codec.as_str(), config.samplerate, config.channels),
            ("mp4a.40.2", 44100, 2)
        );
        assert_eq!(
            audio(&Bytes::from_static(&[0xaf, 1, 0x21, 0x00])).unwrap(),
            Tag::Audio(Bytes::from_static(&[0x21, 0]))
        );
    }

    #[test]
    fn other_codecs_are_refused_by_name() {
        assert!(
            matches!(video(&Bytes::from_static(&[0x1c, 0, 0, 0, 0])).unwrap(), Tag::Unsupported(s) if s.contains("HEVC"))
        );
        assert!(
            matches!(video(&Bytes::from_static(b"\x90hvc1")).unwrap(), Tag::Unsupported(s) if s.contains("hvc1"))
        );
        assert!(
            matches!(video(&Bytes::from_static(b"\x90vp09")).unwrap(), Tag::Unsupported(s) if s.contains("vp09"))
        );
        assert!(
            matches!(audio(&Bytes::from_static(&[0x2f, 0])).unwrap(), Tag::Unsupported(s) if s.contains("MP3"))
        );
    }

    #[test]
    fn enhanced_av1_maps_to_an_av01_track() {
        // av1C: marker/version 0x81, profile 0 level 8 (4.0), main tier, 8-bit 4:2:0.
        let av1c = [0x81u8, 0x08, 0x0c, 0x00];
        let mut body = b"\x90av01".to_vec();
        body.extend_from_slice(&av1c);
        let Tag::VideoConfig(config) = video(&Bytes::from(body)).unwrap() else {
            panic!()
        };
        assert_eq!(config.codec, "av01.0.08M.08");
        assert!(config.description.is_some());
        let frame = Bytes::from_static(b"\x91av01\x12\x00\x0a\x0b");
        assert!(matches!(
            video(&frame).unwrap(),
            Tag::Video {
                keyframe: true,
                composition_ms: 0,
                ..
            }
        ));
        assert!(video(&Bytes::from_static(b"\x90av01\x81")).is_err());
    }

    #[test]
    fn truncated_tags_are_errors_not_panics() {
        for body in [
            &[][..],
            &[0x17],
            &[0x17, 0],
            &[0x17, 0, 0, 0, 0, 1, 0x64],
            &[0x17, 1, 0, 0, 0, 0],
            &[0x90, b'a'],
        ] {
            assert!(video(&Bytes::copy_from_slice(body)).is_err(), "{body:?}");
        }
        for body in [
            &[][..],
            &[0xaf],
            &[0xaf, 0, 0x12],
            &[0xaf, 1],
            &[0x90, b'O'],
            &[0x90, b'O', b'p', b'u', b's', 1],
        ] {
            assert!(audio(&Bytes::copy_from_slice(body)).is_err(), "{body:?}");
        }
    }
}
