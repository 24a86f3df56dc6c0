//! Codec configuration: MP4 sample entries ↔ what WebCodecs and the MSF catalog need.
//!
//! | sample entry | codec string | `description` |
//! |---|---|---|
//! | `avc1` / `avc3` | `avc1.PPCCLL` (hex profile, constraints, level), e.g. `avc1.640028` | avcC body |
//! | `vp09` | `vp09.PP.LL.DD.CC.cp.tc.mc.FF` | none |
//! | `av01` | `av01.P.LLT.DD`, e.g. `av01.0.04M.08` | av1C body |
//! | `Opus` | `opus` | OpusHead (RFC 7845 §5.1), built from dOps |
//! | `mp4a` | `mp4a.40.AOT`, e.g. `mp4a.40.2` | AudioSpecificConfig |
//!
//! The same table runs backwards ([`TrackConfig::sample_entry`]) so a viewer can rebuild an MP4
//! init segment from a catalog alone.

use bytes::Bytes;
use mp4_atom::{Atom, Encode};

use crate::catalog::{Catalog, Track};
use crate::loc::MediaKind;

/// A track's decoder configuration in WebCodecs terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackConfig {
    /// Video or audio.
    pub kind: MediaKind,
    /// The WebCodecs codec string.
    pub codec: String,
    /// The WebCodecs `description` (decoder configuration record), when the codec has one.
    pub description: Option<Bytes>,
    /// Coded width in pixels (video).
    pub width: u32,
    /// Coded height in pixels (video).
    pub height: u32,
    /// Samples per second (audio).
    pub samplerate: u32,
    /// Channel count (audio).
    pub channels: u32,
}

/// Why a codec configuration could not be converted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CodecError {
    /// A codec Banyan does not carry (e.g. HEVC, MP3).
    #[error("unsupported codec {0}")]
    Unsupported(String),
    /// A configuration record that does not parse.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// Which record.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The catalog track lacks a field the codec needs.
    #[error("catalog track {track:?} has no {field}")]
    Missing {
        /// The track name.
        track: String,
        /// The missing field.
        field: &'static str,
    },
}

fn invalid(what: &'static str, detail: impl std::fmt::Display) -> CodecError {
    CodecError::Invalid {
        what,
        detail: detail.to_string(),
    }
}

impl TrackConfig {
    /// The configuration of an MP4 sample entry (from a `stsd` box).
    pub fn from_sample_entry(entry: &mp4_atom::Codec) -> Result<Self, CodecError> {
        use mp4_atom::Codec;
        let video = |codec: String, description: Option<Bytes>, v: &mp4_atom::Visual| Self {
            kind: MediaKind::Video,
            codec,
            description,
            width: u32::from(v.width),
            height: u32::from(v.height),
            samplerate: 0,
            channels: 0,
        };
        match entry {
            Codec::Avc1(avc1) => Ok(video(
                avc_codec("avc1", &avc1.avcc),
                Some(box_body(&avc1.avcc)?),
                &avc1.visual,
            )),
            Codec::Avc3(avc3) => Ok(video(
                avc_codec("avc3", &avc3.avcc),
                Some(box_body(&avc3.avcc)?),
                &avc3.visual,
            )),
            Codec::Vp09(vp09) => Ok(video(vp9_codec(&vp09.vpcc), None, &vp09.visual)),
            Codec::Av01(av01) => Ok(video(
                av1_codec(&av01.av1c),
                Some(box_body(&av01.av1c)?),
                &av01.visual,
            )),
            Codec::Opus(opus) => Ok(Self {
                kind: MediaKind::Audio,
                codec: "opus".to_string(),
                description: Some(opus_head(&opus.dops)),
                width: 0,
                height: 0,
                // Opus always decodes at 48 kHz; the sample entry says so too.
                samplerate: u32::from(opus.audio.sample_rate.integer()).max(1).max(48_000),
                channels: u32::from(opus.dops.output_channel_count),
            }),
            Codec::Mp4a(mp4a) => {
                let config = &mp4a.esds.es_desc.dec_config;
                if config.object_type_indication != 0x40 {
                    return Err(CodecError::Unsupported(format!(
                        "mp4a object type {:#x}",
                        config.object_type_indication
                    )));
                }
                let specific = config
                    .dec_specific
                    .as_ref()
                    .ok_or_else(|| invalid("esds", "no AudioSpecificConfig"))?;
                let asc = if specific.raw.is_empty() {
                    // Re-derive the two-byte AudioSpecificConfig from its fields.
                    vec![
                        (specific.profile << 3) | (specific.freq_index >> 1),
                        (specific.freq_index << 7) | (specific.chan_conf << 3),
                    ]
                } else {
                    specific.raw.clone()
                };
                Ok(Self {
                    kind: MediaKind::Audio,
                    codec: format!("mp4a.40.{}", specific.profile),
                    description: Some(Bytes::from(asc)),
                    width: 0,
                    height: 0,
                    samplerate: u32::from(mp4a.audio.sample_rate.integer()),
                    channels: u32::from(mp4a.audio.channel_count),
                })
            }
            other => Err(CodecError::Unsupported(sample_entry_name(other))),
        }
    }

    /// The MP4 sample entry for this configuration (for muxing).
    pub fn sample_entry(&self) -> Result<mp4_atom::Codec, CodecError> {
        let visual = mp4_atom::Visual {
            data_reference_index: 1,
            width: u16::try_from(self.width).map_err(|_| invalid("width", self.width))?,
            height: u16::try_from(self.height).map_err(|_| invalid("height", self.height))?,
            ..Default::default()
        };
        let audio = || -> Result<mp4_atom::Audio, CodecError> {
            Ok(mp4_atom::Audio {
                data_reference_index: 1,
                channel_count: u16::try_from(self.channels)
                    .map_err(|_| invalid("channels", self.channels))?,
                sample_size: 16,
                sample_rate: u16::try_from(self.samplerate).unwrap_or(0).into(),
            })
        };
        let description = || {
            self.description
                .as_deref()
                .ok_or_else(|| invalid("description", format!("{} needs one", self.codec)))
        };
        let prefix = self.codec.split('.').next().unwrap_or_default();
        match prefix {
            "avc1" | "avc3" => {
                let avcc =
                    mp4_atom::Avcc::decode_body(&mut description()?).map_err(|e| invalid("avcC", e))?;
                Ok(if prefix == "avc1" {
                    mp4_atom::Avc1 {
                        visual,
                        avcc,
                        ..Default::default()
                    }
                    .into()
                } else {
                    mp4_atom::Avc3 {
                        visual,
                        avcc,
                        ..Default::default()
                    }
                    .into()
                })
            }
            "av01" => {
                let av1c =
                    mp4_atom::Av1c::decode_body(&mut description()?).map_err(|e| invalid("av1C", e))?;
                Ok(av01(visual, av1c).into())
            }
            "vp09" => Ok(mp4_atom::Vp09 {
                visual,
                vpcc: parse_vp9_codec(&self.codec)?,
                btrt: None,
                colr: None,
                pasp: None,
                spatial: None,
            }
            .into()),
            "opus" => {
                let dops = match &self.description {
                    Some(head) => parse_opus_head(head)?,
                    None => mp4_atom::Dops {
                        output_channel_count: u8::try_from(self.channels).unwrap_or(2),
                        pre_skip: 0,
                        input_sample_rate: self.samplerate,
                        output_gain: 0,
                        channel_mapping: None,
                    },
                };
                Ok(mp4_atom::Opus {
                    audio: audio()?,
                    dops,
                    btrt: None,
                }
                .into())
            }
            "mp4a" => {
                let asc = description()?;
                let (&b0, &b1) = asc
                    .first()
                    .zip(asc.get(1))
                    .ok_or_else(|| invalid("AudioSpecificConfig", "shorter than 2 bytes"))?;
                let mut esds = mp4_atom::Esds::default();
                esds.es_desc.es_id = 1;
                let config = &mut esds.es_desc.dec_config;
                config.object_type_indication = 0x40;
                config.stream_type = 5;
                config.up_stream = 0;
                config.dec_specific = Some(mp4_atom::esds::DecoderSpecific {
                    profile: b0 >> 3,
                    freq_index: ((b0 & 0x07) << 1) | (b1 >> 7),
                    chan_conf: (b1 >> 3) & 0x0f,
                    raw: asc.to_vec(),
                });
                Ok(mp4_atom::Mp4a {
                    audio: audio()?,
                    esds,
                    btrt: None,
                    taic: None,
                }
                .into())
            }
            _ => Err(CodecError::Unsupported(self.codec.clone())),
        }
    }

    /// The configuration a catalog track describes (`init` is its decoded `initRef` data).
    pub fn from_catalog(catalog: &Catalog, track: &Track) -> Result<Self, CodecError> {
        let missing = |field| CodecError::Missing {
            track: track.name.clone(),
            field,
        };
        let kind = track.media_kind().ok_or_else(|| missing("video/audio role"))?;
        let codec = track.codec.clone().ok_or_else(|| missing("codec"))?;
        let description = catalog
            .init_data(track)
            .map_err(|e| invalid("initData", e))?
            .map(Bytes::from);
        let channels = match (&track.channel_config, kind) {
            (Some(c), _) => c.parse().map_err(|_| invalid("channelConfig", c))?,
            (None, MediaKind::Audio) => return Err(missing("channelConfig")),
            (None, MediaKind::Video) => 0,
        };
        Ok(Self {
            kind,
            codec,
            description,
            width: track.width.unwrap_or(0),
            height: track.height.unwrap_or(0),
            samplerate: match kind {
                MediaKind::Audio => track.samplerate.ok_or_else(|| missing("samplerate"))?,
                MediaKind::Video => 0,
            },
            channels,
        })
    }

    /// A catalog track for this configuration (LOC packaging, live); the caller adds rates
    /// and attaches [`description`](Self::description) with [`Catalog::set_init_data`].
    pub fn catalog_track(&self, name: &str) -> Track {
        let mut track = Track {
            name: name.to_string(),
            packaging: Some("loc".into()),
            is_live: Some(true),
            render_group: Some(1),
            codec: Some(self.codec.clone()),
            ..Default::default()
        };
        match self.kind {
            MediaKind::Video => {
                track.role = Some("video".into());
                track.width = Some(self.width);
                track.height = Some(self.height);
            }
            MediaKind::Audio => {
                track.role = Some("audio".into());
                track.samplerate = Some(self.samplerate);
                track.channel_config = Some(self.channels.to_string());
            }
        }
        track
    }
}

/// The body of a box (its encoding without the 8-byte header).
fn box_body<T: Atom>(atom: &T) -> Result<Bytes, CodecError> {
    let mut buf = Vec::new();
    atom.encode(&mut buf)
        .map_err(|e| invalid("configuration record", e))?;
    Ok(Bytes::from(buf).slice(8..))
}

fn avc_codec(prefix: &str, avcc: &mp4_atom::Avcc) -> String {
    format!(
        "{prefix}.{:02x}{:02x}{:02x}",
        avcc.avc_profile_indication, avcc.profile_compatibility, avcc.avc_level_indication
    )
}

fn vp9_codec(v: &mp4_atom::VpcC) -> String {
    format!(
        "vp09.{:02}.{:02}.{:02}.{:02}.{:02}.{:02}.{:02}.{:02}",
        v.profile,
        v.level,
        v.bit_depth,
        v.chroma_subsampling,
        v.color_primaries,
        v.transfer_characteristics,
        v.matrix_coefficients,
        u8::from(v.video_full_range_flag)
    )
}

fn parse_vp9_codec(codec: &str) -> Result<mp4_atom::VpcC, CodecError> {
    let fields: Vec<u8> = codec
        .split('.')
        .skip(1)
        .map(|f| f.parse::<u8>())
        .collect::<Result<_, _>>()
        .map_err(|_| invalid("vp09 codec string", codec))?;
    let field = |i: usize, default: u8| fields.get(i).copied().unwrap_or(default);
    if fields.len() < 3 {
        return Err(invalid("vp09 codec string", codec));
    }
    Ok(mp4_atom::VpcC {
        profile: field(0, 0),
        level: field(1, 10),
        bit_depth: field(2, 8),
        chroma_subsampling: field(3, 1),
        color_primaries: field(4, 1),
        transfer_characteristics: field(5, 1),
        matrix_coefficients: field(6, 1),
        video_full_range_flag: field(7, 0) != 0,
        codec_initialization_data: Vec::new(),
    })
}

fn av1_codec(c: &mp4_atom::Av1c) -> String {
    let bit_depth = match (c.high_bitdepth, c.twelve_bit) {
        (true, true) => 12,
        (true, false) => 10,
        _ => 8,
    };
    format!(
        "av01.{}.{:02}{}.{:02}",
        c.seq_profile,
        c.seq_level_idx_0,
        if c.seq_tier_0 { 'H' } else { 'M' },
        bit_depth
    )
}

/// OpusHead (RFC 7845 §5.1, little-endian) from an MP4 dOps box (big-endian).
fn opus_head(d: &mp4_atom::Dops) -> Bytes {
    let mut head = Vec::with_capacity(21);
    head.extend_from_slice(b"OpusHead");
    head.push(1);
    head.push(d.output_channel_count);
    head.extend_from_slice(&d.pre_skip.to_le_bytes());
    head.extend_from_slice(&d.input_sample_rate.to_le_bytes());
    head.extend_from_slice(&d.output_gain.to_le_bytes());
    match &d.channel_mapping {
        None => head.push(0),
        Some(m) => {
            head.push(m.family);
            head.push(m.stream_count);
            head.push(m.coupled_count);
            head.extend_from_slice(&m.channel_mapping);
        }
    }
    Bytes::from(head)
}

fn parse_opus_head(head: &[u8]) -> Result<mp4_atom::Dops, CodecError> {
    let bad = || invalid("OpusHead", format!("{} bytes", head.len()));
    let fixed = head.get(..19).ok_or_else(bad)?;
    if fixed.get(..8) != Some(b"OpusHead".as_slice()) {
        return Err(invalid("OpusHead", "missing magic"));
    }
    let le16 = |i: usize| fixed.get(i..i + 2).and_then(|b| b.try_into().ok());
    let channels = *fixed.get(9).ok_or_else(bad)?;
    let pre_skip = u16::from_le_bytes(le16(10).ok_or_else(bad)?);
    let rate: [u8; 4] = fixed
        .get(12..16)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    let gain = i16::from_le_bytes(le16(16).ok_or_else(bad)?);
    let family = *fixed.get(18).ok_or_else(bad)?;
    let channel_mapping = if family == 0 {
        None
    } else {
        let rest = head.get(19..).unwrap_or_default();
        let (&stream_count, rest) = rest.split_first().ok_or_else(bad)?;
        let (&coupled_count, rest) = rest.split_first().ok_or_else(bad)?;
        let table = rest.get(..usize::from(channels)).ok_or_else(bad)?;
        Some(mp4_atom::OpusChannelMapping {
            family,
            stream_count,
            coupled_count,
            channel_mapping: table.to_vec(),
        })
    };
    Ok(mp4_atom::Dops {
        output_channel_count: channels,
        pre_skip,
        input_sample_rate: u32::from_le_bytes(rate),
        output_gain: gain,
        channel_mapping,
    })
}

fn sample_entry_name(entry: &mp4_atom::Codec) -> String {
    // The Debug form starts with the variant name, e.g. `Hev1(...)`.
    let debug = format!("{entry:?}");
    debug
        .split(['(', ' ', '{'])
        .next()
        .unwrap_or("unknown")
        .to_lowercase()
}

/// An AV1 sample entry with none of the optional boxes (`Av01` has no `Default`).
fn av01(visual: mp4_atom::Visual, av1c: mp4_atom::Av1c) -> mp4_atom::Av01 {
    mp4_atom::Av01 {
        visual,
        av1c,
        btrt: None,
        ccst: None,
        colr: None,
        pasp: None,
        taic: None,
        spatial: None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn avcc() -> mp4_atom::Avcc {
        mp4_atom::Avcc {
            configuration_version: 1,
            avc_profile_indication: 0x64,
            profile_compatibility: 0,
            avc_level_indication: 0x28,
            length_size: 4,
            sequence_parameter_sets: vec![vec![0x67, 0x64, 0, 0x28, 0xac, 0xd9]],
            picture_parameter_sets: vec![vec![0x68, 0xeb, 0xe3, 0xcb]],
            ext: Some(mp4_atom::AvccExt::default()),
        }
    }

    fn round_trip(entry: mp4_atom::Codec) -> TrackConfig {
        let config = TrackConfig::from_sample_entry(&entry).unwrap();
        let rebuilt = config.sample_entry().unwrap();
        assert_eq!(TrackConfig::from_sample_entry(&rebuilt).unwrap(), config);
        config
    }

    #[test]
    fn h264_high_level_4() {
        let entry = mp4_atom::Avc1 {
            visual: mp4_atom::Visual {
                width: 1280,
                height: 720,
                ..Default::default()
            },
            avcc: avcc(),
            ..Default::default()
        };
        let config = round_trip(entry.into());
        assert_eq!(config.codec, "avc1.640028");
        assert_eq!((config.width, config.height), (1280, 720));
        let description = config.description.unwrap();
        assert_eq!(&description[..4], &[1, 0x64, 0, 0x28]);
        assert_eq!(description[4], 0xff, "4-byte NAL lengths");
    }

    #[test]
    fn av1_and_vp9() {
        let av1c = mp4_atom::Av1c {
            seq_profile: 0,
            seq_level_idx_0: 4,
            seq_tier_0: false,
            high_bitdepth: false,
            twelve_bit: false,
            monochrome: false,
            chroma_subsampling_x: true,
            chroma_subsampling_y: true,
            chroma_sample_position: 0,
            initial_presentation_delay: None,
            config_obus: vec![0x0a, 0x0b, 0, 0, 0, 0x24, 0xc4, 0xff, 0xdf, 0x00, 0x68, 0x02],
        };
        let visual = mp4_atom::Visual {
            width: 320,
            height: 240,
            ..Default::default()
        };
        let entry = av01(visual, av1c);
        assert_eq!(round_trip(entry.into()).codec, "av01.0.04M.08");

        let vpcc = mp4_atom::VpcC {
            profile: 0,
            level: 31,
            bit_depth: 8,
            chroma_subsampling: 1,
            video_full_range_flag: false,
            color_primaries: 1,
            transfer_characteristics: 1,
            matrix_coefficients: 1,
            codec_initialization_data: vec![],
        };
        let entry = mp4_atom::Vp09 {
            visual: mp4_atom::Visual::default(),
            vpcc,
            btrt: None,
            colr: None,
            pasp: None,
            spatial: None,
        };
        let config = round_trip(entry.into());
        assert_eq!(config.codec, "vp09.00.31.08.01.01.01.01.00");
        assert_eq!(config.description, None);
    }

    #[test]
    fn opus_head_matches_rfc_7845_layout() {
        let dops = mp4_atom::Dops {
            output_channel_count: 2,
            pre_skip: 312,
            input_sample_rate: 48_000,
            output_gain: 0,
            channel_mapping: None,
        };
        let head = opus_head(&dops);
        assert_eq!(
            &head[..],
            &[b'O', b'p', b'u', b's', b'H', b'e', b'a', b'd', 1, 2, 0x38, 0x01, 0x80, 0xbb, 0, 0, 0, 0, 0]
        );
        assert_eq!(parse_opus_head(&head).unwrap(), dops);
        assert!(parse_opus_head(&head[..10]).is_err());
        let entry = mp4_atom::Opus {
            audio: mp4_atom::Audio {
                data_reference_index: 1,
                channel_count: 2,
                sample_size: 16,
                sample_rate: 48_000u16.into(),
            },
            dops,
            btrt: None,
        };
        let config = round_trip(entry.into());
        assert_eq!(
            (config.codec.as_str(), config.samplerate, config.channels),
            ("opus", 48_000, 2)
        );
    }

    #[test]
    fn aac_lc() {
        let config = TrackConfig {
            kind: MediaKind::Audio,
            codec: "mp4a.40.2".into(),
            description: Some(Bytes::from_static(&[0x11, 0x90])),
            width: 0,
            height: 0,
            samplerate: 48_000,
            channels: 2,
        };
        let entry = config.sample_entry().unwrap();
        assert_eq!(TrackConfig::from_sample_entry(&entry).unwrap(), config);
    }

    #[test]
    fn unsupported_and_broken_configs_are_errors() {
        let config = TrackConfig {
            kind: MediaKind::Video,
            codec: "hvc1.1.6.L93.B0".into(),
            description: None,
            width: 1,
            height: 1,
            samplerate: 0,
            channels: 0,
        };
        assert!(matches!(config.sample_entry(), Err(CodecError::Unsupported(_))));
        let config = TrackConfig {
            codec: "avc1.640028".into(),
            description: Some(Bytes::from_static(&[1, 2])),
            ..config
        };
        assert!(config.sample_entry().is_err());
    }
}
