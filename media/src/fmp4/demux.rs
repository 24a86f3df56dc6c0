//! Fragmented-MP4 demuxing, sans-IO: push bytes as they arrive, pull tracks and samples.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};
use mp4_atom::{Decode, FourCC};

use super::{Error, Sample, MAX_SAMPLES_PER_FRAGMENT};
use crate::codec::TrackConfig;

/// One track found in the `moov`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemuxTrack {
    /// The MP4 track ID.
    pub track_id: u32,
    /// Ticks per second of this track's timestamps.
    pub timescale: u32,
    /// The decoder configuration.
    pub config: TrackConfig,
}

/// What the demuxer found.
#[derive(Debug, Clone, PartialEq)]
pub enum DemuxEvent {
    /// The `moov` was read: the tracks, in file order.
    Init(Vec<DemuxTrack>),
    /// One sample (frame), in decode order within its track; samples of one fragment come out
    /// ordered by decode time across tracks.
    Sample(Sample),
}

/// Reads the fragmented MP4 that `ffmpeg -f mp4 -movflags frag_keyframe+empty_moov` (or
/// `+cmaf`, `+default_base_moof`, `+frag_every_frame`) writes.
///
/// Feed it with [`push`](Self::push), drain it with [`poll_event`](Self::poll_event), and call
/// [`finish`](Self::finish) at end of input to learn whether the stream was cut short.
/// Memory is bounded by `max_box_size` (one box is buffered at a time).
#[derive(Debug)]
pub struct Demuxer {
    buf: BytesMut,
    /// Stream offset of `buf[0]`.
    position: u64,
    max_box_size: u64,
    boxes_seen: u64,
    tracks: Vec<TrackState>,
    /// A `moof` waiting for its `mdat`, with its stream offset.
    pending: Option<(u64, mp4_atom::Moof)>,
    events: VecDeque<DemuxEvent>,
    failed: Option<Error>,
}

#[derive(Debug)]
struct TrackState {
    track: DemuxTrack,
    defaults: mp4_atom::Trex,
    next_decode_time: u64,
}

/// Top-level boxes a (fragmented) MP4 stream may start with.
const FIRST_BOXES: [&[u8; 4]; 8] = [
    b"ftyp", b"styp", b"moov", b"free", b"skip", b"wide", b"pdin", b"uuid",
];

impl Default for Demuxer {
    fn default() -> Self {
        Self::new(super::DEFAULT_MAX_BOX_SIZE)
    }
}

impl Demuxer {
    /// A demuxer that refuses any box larger than `max_box_size` bytes.
    pub fn new(max_box_size: u64) -> Self {
        Self {
            buf: BytesMut::new(),
            position: 0,
            max_box_size,
            boxes_seen: 0,
            tracks: Vec::new(),
            pending: None,
            events: VecDeque::new(),
            failed: None,
        }
    }

    /// Append input bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The tracks, once the `moov` has been read.
    pub fn tracks(&self) -> Vec<DemuxTrack> {
        self.tracks.iter().map(|t| t.track.clone()).collect()
    }

    /// The next event, `Ok(None)` when more input is needed. An error is final.
    pub fn poll_event(&mut self) -> Result<Option<DemuxEvent>, Error> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Ok(Some(event));
            }
            if let Some(e) = &self.failed {
                return Err(e.clone());
            }
            match self.parse_box() {
                Ok(true) => continue,
                Ok(false) => return Ok(None),
                Err(e) => {
                    self.failed = Some(e.clone());
                    return Err(e);
                }
            }
        }
    }

    /// End of input: an error if it ended inside a box, before any media, or with a
    /// fragment missing its data.
    pub fn finish(&self) -> Result<(), Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if !self.buf.is_empty() {
            return Err(Error::Truncated(self.buf.len() as u64));
        }
        if self.boxes_seen == 0 {
            return Err(Error::Empty);
        }
        if self.tracks.is_empty() {
            return Err(Error::NoInit);
        }
        if self.pending.is_some() {
            return Err(Error::Truncated(0));
        }
        Ok(())
    }

    /// Parse one whole box from the buffer; `false` if it is not all there yet.
    fn parse_box(&mut self) -> Result<bool, Error> {
        let Some(head) = self.buf.get(..8).and_then(|h| <[u8; 8]>::try_from(h).ok()) else {
            return Ok(false);
        };
        let [s0, s1, s2, s3, k0, k1, k2, k3] = head;
        let mut size = u64::from(u32::from_be_bytes([s0, s1, s2, s3]));
        let kind = [k0, k1, k2, k3];
        let mut header_len = 8u64;
        if self.boxes_seen == 0 && !FIRST_BOXES.contains(&&kind) {
            return Err(Error::NotMp4(printable(&kind)));
        }
        if !kind
            .iter()
            .all(|b| b.is_ascii_graphic() || *b == b' ' || *b == 0xa9)
        {
            return Err(Error::Malformed(format!(
                "box type {:02x?} at offset {}",
                kind, self.position
            )));
        }
        if size == 1 {
            let Some(large) = self.buf.get(8..16) else {
                return Ok(false);
            };
            let mut large = large;
            size = large.get_u64();
            header_len = 16;
        } else if size == 0 {
            return Err(Error::Malformed(format!(
                "box {} extends to the end of the file, which a live stream cannot have",
                printable(&kind)
            )));
        }
        if size < header_len {
            return Err(Error::Malformed(format!(
                "box {} of size {size}",
                printable(&kind)
            )));
        }
        if size > self.max_box_size {
            return Err(Error::TooLarge {
                kind: printable(&kind),
                size,
                limit: self.max_box_size,
            });
        }
        let Ok(total) = usize::try_from(size) else {
            return Err(Error::TooLarge {
                kind: printable(&kind),
                size,
                limit: self.max_box_size,
            });
        };
        if self.buf.len() < total {
            self.buf.reserve(total - self.buf.len());
            return Ok(false);
        }
        let data = self.buf.split_to(total).freeze();
        let start = self.position;
        self.position += size;
        self.boxes_seen += 1;
        self.handle_box(FourCC::new(&kind), start, header_len, data)?;
        Ok(true)
    }

    fn handle_box(&mut self, kind: FourCC, start: u64, header_len: u64, data: Bytes) -> Result<(), Error> {
        if kind == FourCC::new(b"moov") {
            let moov = mp4_atom::Moov::decode(&mut data.as_ref()).map_err(|e| match e {
                mp4_atom::Error::OverDecode(kind) if kind == FourCC::new(b"av1C") => Error::Malformed(
                    "empty av1C: ffmpeg writes one for libaom/rav1e with empty_moov; add +delay_moov to -movflags".into(),
                ),
                e => Error::Box("moov", e.to_string()),
            })?;
            self.init(&moov)?;
        } else if kind == FourCC::new(b"moof") {
            if self.tracks.is_empty() {
                return Err(Error::NoInit);
            }
            let moof =
                mp4_atom::Moof::decode(&mut data.as_ref()).map_err(|e| Error::Box("moof", e.to_string()))?;
            self.pending = Some((start, moof));
        } else if kind == FourCC::new(b"mdat") {
            if let Some((moof_start, moof)) = self.pending.take() {
                let body = data.slice(usize::try_from(header_len).unwrap_or(8)..);
                self.samples(moof_start, &moof, start + header_len, &body)?;
            } else if self.tracks.is_empty() {
                return Err(Error::NotFragmented);
            }
        }
        // ftyp, styp, sidx, free, emsg, prft, mfra, ...: nothing needed.
        Ok(())
    }

    fn init(&mut self, moov: &mp4_atom::Moov) -> Result<(), Error> {
        if !self.tracks.is_empty() {
            return Err(Error::Malformed("a second moov".into()));
        }
        let mut tracks = Vec::new();
        for trak in &moov.trak {
            let handler = trak.mdia.hdlr.handler;
            if handler != FourCC::new(b"vide") && handler != FourCC::new(b"soun") {
                continue;
            }
            let stbl = &trak.mdia.minf.stbl;
            let has_samples = match &stbl.stsz.samples {
                mp4_atom::StszSamples::Identical { count, .. } => *count > 0,
                mp4_atom::StszSamples::Different { sizes } => !sizes.is_empty(),
            };
            if has_samples {
                return Err(Error::NotFragmented);
            }
            let entry = stbl.stsd.codecs.first().ok_or_else(|| {
                Error::Malformed(format!("track {} has no sample entry", trak.tkhd.track_id))
            })?;
            let config = TrackConfig::from_sample_entry(entry).map_err(Error::Codec)?;
            let track_id = trak.tkhd.track_id;
            let defaults = moov
                .mvex
                .iter()
                .flat_map(|m| m.trex.iter())
                .find(|t| t.track_id == track_id)
                .cloned()
                .unwrap_or_default();
            let timescale = trak.mdia.mdhd.timescale;
            if timescale == 0 {
                return Err(Error::Malformed(format!("track {track_id} has timescale 0")));
            }
            tracks.push(TrackState {
                track: DemuxTrack {
                    track_id,
                    timescale,
                    config,
                },
                defaults,
                next_decode_time: 0,
            });
        }
        if tracks.is_empty() {
            return Err(Error::NoMediaTracks);
        }
        self.tracks = tracks;
        self.events.push_back(DemuxEvent::Init(self.tracks()));
        Ok(())
    }

    /// Cut one fragment's samples out of its `mdat` body (which starts at stream offset
    /// `body_start`).
    fn samples(
        &mut self,
        moof_start: u64,
        moof: &mp4_atom::Moof,
        body_start: u64,
        body: &Bytes,
    ) -> Result<(), Error> {
        let mut out = Vec::new();
        for traf in &moof.traf {
            let tfhd = &traf.tfhd;
            let Some(index) = self.tracks.iter().position(|t| t.track.track_id == tfhd.track_id) else {
                continue;
            };
            let Some(state) = self.tracks.get_mut(index) else {
                continue;
            };
            let base = tfhd.base_data_offset.unwrap_or(moof_start);
            let mut decode_time = traf
                .tfdt
                .as_ref()
                .map_or(state.next_decode_time, |t| t.base_media_decode_time);
            let mut offset = base;
            for trun in &traf.trun {
                if trun.samples.len() > MAX_SAMPLES_PER_FRAGMENT {
                    return Err(Error::Malformed(format!(
                        "trun with {} samples",
                        trun.samples.len()
                    )));
                }
                if let Some(data_offset) = trun.data_offset {
                    offset = base
                        .checked_add_signed(i64::from(data_offset))
                        .ok_or_else(|| Error::Malformed("data offset before the stream".into()))?;
                }
                for entry in trun.samples.iter() {
                    let size = entry
                        .size
                        .or(tfhd.default_sample_size)
                        .unwrap_or(state.defaults.default_sample_size);
                    let duration = entry
                        .duration
                        .or(tfhd.default_sample_duration)
                        .unwrap_or(state.defaults.default_sample_duration);
                    let flags = entry
                        .flags
                        .or(tfhd.default_sample_flags)
                        .unwrap_or(state.defaults.default_sample_flags);
                    let from = offset
                        .checked_sub(body_start)
                        .ok_or_else(|| Error::Malformed("sample data outside its mdat".into()))?;
                    let to = from + u64::from(size);
                    let data = usize::try_from(from)
                        .ok()
                        .zip(usize::try_from(to).ok())
                        .filter(|&(_, to)| to <= body.len())
                        .map(|(from, to)| body.slice(from..to))
                        .ok_or_else(|| Error::Malformed("sample data outside its mdat".into()))?;
                    out.push(Sample {
                        track_id: state.track.track_id,
                        timescale: state.track.timescale,
                        decode_time,
                        composition_offset: entry.cts.unwrap_or(0),
                        duration,
                        keyframe: flags & SAMPLE_IS_NON_SYNC == 0,
                        data,
                    });
                    offset = offset.saturating_add(u64::from(size));
                    decode_time = decode_time.saturating_add(u64::from(duration));
                }
            }
            state.next_decode_time = decode_time;
        }
        // Interleave tracks by decode time so a paced sender sends them in time order.
        out.sort_by_key(Sample::decode_time_us);
        self.events.extend(out.into_iter().map(DemuxEvent::Sample));
        Ok(())
    }
}

/// `sample_is_non_sync_sample` in ISO/IEC 14496-12 sample flags.
const SAMPLE_IS_NON_SYNC: u32 = 0x0001_0000;

fn printable(kind: &[u8; 4]) -> String {
    kind.iter()
        .map(|&b| if b.is_ascii_graphic() { char::from(b) } else { '?' })
        .collect()
}
