//! Fragmented-MP4 muxing: an init segment (`ftyp` + `moov`) from track configurations, then
//! `moof` + `mdat` fragments. Timestamps are written at a microsecond timescale, the unit LOC
//! timestamps arrive in.

use bytes::Bytes;
use mp4_atom::{Encode, FourCC};

use super::{Error, Sample};
use crate::codec::TrackConfig;
use crate::loc::MediaKind;

/// The timescale of every track the muxer writes.
pub const TIMESCALE: u32 = 1_000_000;

/// Writes fragmented MP4 for a fixed set of tracks (track IDs 1, 2, ... in order).
#[derive(Debug, Clone)]
pub struct Muxer {
    tracks: Vec<TrackConfig>,
    sequence: u32,
}

impl Muxer {
    /// A muxer for `tracks`; track `i` gets MP4 track ID `i + 1`.
    pub fn new(tracks: Vec<TrackConfig>) -> Self {
        Self { tracks, sequence: 0 }
    }

    /// The tracks.
    pub fn tracks(&self) -> &[TrackConfig] {
        &self.tracks
    }

    /// The initialization segment: `ftyp` then `moov` (with `mvex`, no samples).
    pub fn init_segment(&self) -> Result<Bytes, Error> {
        let mut out = Vec::new();
        mp4_atom::Ftyp {
            major_brand: FourCC::new(b"iso6"),
            minor_version: 0,
            compatible_brands: vec![FourCC::new(b"iso6"), FourCC::new(b"cmfc"), FourCC::new(b"mp41")],
        }
        .encode(&mut out)
        .map_err(|e| Error::Box("ftyp", e.to_string()))?;

        let mut trak = Vec::new();
        let mut trex = Vec::new();
        for (i, config) in self.tracks.iter().enumerate() {
            let track_id = u32::try_from(i + 1).map_err(|_| Error::Malformed("too many tracks".into()))?;
            trak.push(self.trak(track_id, config)?);
            trex.push(mp4_atom::Trex {
                track_id,
                default_sample_description_index: 1,
                ..Default::default()
            });
        }
        let moov = mp4_atom::Moov {
            mvhd: mp4_atom::Mvhd {
                timescale: 1000,
                rate: 1.into(),
                volume: 1.into(),
                next_track_id: u32::try_from(self.tracks.len() + 1).unwrap_or(u32::MAX),
                ..Default::default()
            },
            mvex: Some(mp4_atom::Mvex { mehd: None, trex }),
            trak,
            ..Default::default()
        };
        moov.encode(&mut out)
            .map_err(|e| Error::Box("moov", e.to_string()))?;
        Ok(Bytes::from(out))
    }

    /// One fragment (`moof` + `mdat`) holding `samples` of track `track_id`, which must be in
    /// decode order with times at [`TIMESCALE`].
    pub fn fragment(&mut self, track_id: u32, samples: &[Sample]) -> Result<Bytes, Error> {
        let first = samples
            .first()
            .ok_or_else(|| Error::Malformed("an empty fragment".into()))?;
        self.sequence = self.sequence.wrapping_add(1);
        let entries: Vec<mp4_atom::TrunEntry> = samples
            .iter()
            .map(|s| {
                Ok(mp4_atom::TrunEntry {
                    duration: Some(s.duration),
                    size: Some(
                        u32::try_from(s.data.len())
                            .map_err(|_| Error::Malformed("sample over 4 GiB".into()))?,
                    ),
                    flags: Some(if s.keyframe { SYNC_FLAGS } else { NON_SYNC_FLAGS }),
                    cts: Some(s.composition_offset),
                })
            })
            .collect::<Result<_, Error>>()?;
        let mut moof = mp4_atom::Moof {
            mfhd: mp4_atom::Mfhd {
                sequence_number: self.sequence,
            },
            traf: vec![mp4_atom::Traf {
                tfhd: mp4_atom::Tfhd {
                    track_id,
                    default_base_is_moof: true,
                    ..Default::default()
                },
                tfdt: Some(mp4_atom::Tfdt {
                    base_media_decode_time: first.decode_time,
                }),
                trun: vec![mp4_atom::Trun {
                    data_offset: Some(0),
                    samples: entries.into(),
                }],
                ..Default::default()
            }],
        };
        // The data offset counts from the start of the moof to the first sample byte, past
        // the mdat header: measure the moof (its size does not depend on the value), then set it.
        let mut probe = Vec::new();
        moof.encode(&mut probe)
            .map_err(|e| Error::Box("moof", e.to_string()))?;
        let offset = i32::try_from(probe.len() + 8).map_err(|_| Error::Malformed("moof too large".into()))?;
        if let Some(trun) = moof.traf.first_mut().and_then(|t| t.trun.first_mut()) {
            trun.data_offset = Some(offset);
        }
        let payload: usize = samples.iter().map(|s| s.data.len()).sum();
        let mut out = Vec::with_capacity(probe.len() + 8 + payload);
        moof.encode(&mut out)
            .map_err(|e| Error::Box("moof", e.to_string()))?;
        let mdat_size =
            u32::try_from(payload + 8).map_err(|_| Error::Malformed("fragment over 4 GiB".into()))?;
        out.extend_from_slice(&mdat_size.to_be_bytes());
        out.extend_from_slice(b"mdat");
        for s in samples {
            out.extend_from_slice(&s.data);
        }
        Ok(Bytes::from(out))
    }

    fn trak(&self, track_id: u32, config: &TrackConfig) -> Result<mp4_atom::Trak, Error> {
        let entry = config.sample_entry()?;
        let video = config.kind == MediaKind::Video;
        let width = u16::try_from(config.width).unwrap_or(u16::MAX);
        let height = u16::try_from(config.height).unwrap_or(u16::MAX);
        Ok(mp4_atom::Trak {
            tkhd: mp4_atom::Tkhd {
                track_id,
                enabled: true,
                in_movie: true,
                alternate_group: if video { 0 } else { 1 },
                volume: if video { 0.into() } else { 1.into() },
                width: if video { width.into() } else { 0.into() },
                height: if video { height.into() } else { 0.into() },
                ..Default::default()
            },
            mdia: mp4_atom::Mdia {
                mdhd: mp4_atom::Mdhd {
                    creation_time: 0,
                    modification_time: 0,
                    timescale: TIMESCALE,
                    duration: 0,
                    language: "und".into(),
                },
                hdlr: mp4_atom::Hdlr {
                    handler: FourCC::new(if video { b"vide" } else { b"soun" }),
                    name: if video { "Banyan video" } else { "Banyan audio" }.into(),
                },
                minf: mp4_atom::Minf {
                    vmhd: video.then(mp4_atom::Vmhd::default),
                    smhd: (!video).then(mp4_atom::Smhd::default),
                    dinf: mp4_atom::Dinf {
                        dref: mp4_atom::Dref {
                            entries: vec![mp4_atom::Url::default().into()],
                        },
                    },
                    stbl: mp4_atom::Stbl {
                        stsd: mp4_atom::Stsd { codecs: vec![entry] },
                        stco: Some(mp4_atom::Stco::default()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            },
            ..Default::default()
        })
    }
}

/// Sample flags of a sync sample: depends on no other sample.
const SYNC_FLAGS: u32 = 0x0200_0000;
/// Sample flags of a non-sync sample: depends on others, `sample_is_non_sync_sample`.
const NON_SYNC_FLAGS: u32 = 0x0101_0000;
