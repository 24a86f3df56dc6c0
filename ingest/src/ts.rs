//! MPEG-TS (as SRT carries it) → Banyan's codec configurations and frames. The TS packet layer
//! (PAT, PMT, PES headers) is `mpeg2ts`'s; this module resynchronises on the 0x47 sync byte,
//! reassembles each elementary stream's PES packets (bounded), and converts what WebCodecs needs:
//!
//! | PMT stream type | becomes |
//! |---|---|
//! | 0x1B H.264, Annex-B (start codes) | `avc1.PPCCLL` with an avcC built from the first SPS and PPS; frames as AVCC (4-byte lengths) without SPS/PPS/AUD; keyframe = an IDR slice |
//! | 0x0F AAC in ADTS | `mp4a.40.AOT` with the AudioSpecificConfig built from the ADTS header; each ADTS frame a raw AAC frame, 1024 samples after the previous |
//! | 0x06 with the registration descriptor `Opus` (as ffmpeg, and so OBS, write it) | `opus` with an OpusHead for the channel count the extension descriptor gives (1–8; family 0 for mono and stereo, else the Vorbis order of RFC 7845 §5.1.1.2); each access unit's control header (`0x7FE0`, size, trims) removed, each packet timed by its TOC's duration after the previous |
//! | anything else (HEVC, MPEG-2, MP3, AC-3, data) | ignored; a program with neither H.264 nor AAC/Opus is [`TsEvent::Unsupported`] |
//!
//! `avc1` (parameter sets out of band, in the catalog) rather than `avc3`: the RTMP path and every
//! other Banyan H.264 track announce `avc1` + avcC, so players and recordings need nothing new,
//! and a resuming encoder's configuration is checked against the catalog's the same way.
//!
//! Times: PES PTS/DTS are 90 kHz counters that wrap at 2^33 (26.5 h); [`Timeline`] extends them
//! by their signed differences into µs, like `mapping` extends FLV's 32-bit milliseconds.
//!
//! Garbage (a packet without the sync byte, one `mpeg2ts` cannot parse, a PES without a start,
//! an ADTS frame that does not fit) is skipped and counted in [`Demuxer::skipped`]; nothing here
//! panics on input. A video PES is complete when the next one starts (TS video PES packets have
//! no length), so a video frame leaves one frame interval after it arrived.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::Arc;

use banyan_media::codec::TrackConfig;
use banyan_media::MediaKind;
use bytes::{BufMut, Bytes, BytesMut};
use mpeg2ts::es::StreamType;
use mpeg2ts::ts::{ReadTsPacket, TsPacketReader, TsPayload};
use parking_lot::Mutex;

/// A TS packet's size.
pub const PACKET: usize = 188;
/// The largest PES packet reassembled (a 4K keyframe fits); a larger one is dropped.
pub const MAX_PES: usize = 8 * 1024 * 1024;
/// Bytes kept while looking for a sync byte (less than two packets).
const MAX_PENDING: usize = 2 * PACKET;

/// What the demuxer found.
#[derive(Debug, Clone, PartialEq)]
pub enum TsEvent {
    /// The video decoder configuration (width and height 0: not in the catalog).
    VideoConfig(TrackConfig),
    /// A coded video frame (AVCC), with µs media times.
    Video {
        /// Decode time, µs.
        dts: u64,
        /// Presentation time, µs.
        pts: u64,
        /// An IDR frame.
        keyframe: bool,
        /// AVCC NAL units.
        data: Bytes,
    },
    /// The audio decoder configuration.
    AudioConfig(TrackConfig),
    /// A raw AAC frame or Opus packet at µs media time `t`.
    Audio {
        /// Presentation time, µs.
        t: u64,
        /// The raw AAC frame or Opus packet.
        data: Bytes,
    },
    /// The program carries no stream Banyan can use.
    Unsupported(String),
}

/// 90 kHz, 33-bit timestamps → µs on an extended timeline.
#[derive(Debug, Default, Clone)]
pub struct Timeline {
    last: Option<(u64, u64)>,
}

const WRAP: u64 = 1 << 33;

impl Timeline {
    /// The extended µs time of the 33-bit 90 kHz timestamp `ts`.
    pub fn us(&mut self, ts: u64) -> u64 {
        let ts = ts % WRAP;
        let t = match self.last {
            None => ts * 100 / 9,
            Some((last_ts, last_us)) => {
                let delta = ts.wrapping_sub(last_ts) % WRAP;
                let delta = if delta >= WRAP / 2 {
                    delta as i64 - WRAP as i64
                } else {
                    delta as i64
                };
                last_us.saturating_add_signed(delta * 100 / 9)
            }
        };
        self.last = Some((ts, t));
        t
    }
}

/// The bytes of one TS packet at a time, for `mpeg2ts`'s reader (which keeps the PID table).
#[derive(Debug, Clone, Default)]
struct Feed(Arc<Mutex<VecDeque<u8>>>);

impl Read for Feed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.lock().read(buf)
    }
}

#[derive(Debug)]
struct Pes {
    pts: Option<u64>,
    dts: Option<u64>,
    data: Vec<u8>,
    /// The payload length the header announced (audio), if any.
    len: Option<usize>,
}

/// One SRT connection's MPEG-TS demuxer.
#[derive(Debug)]
pub struct Demuxer {
    feed: Feed,
    reader: TsPacketReader<Feed>,
    pending: Vec<u8>,
    video_pid: Option<u16>,
    audio_pid: Option<u16>,
    audio_codec: AudioCodec,
    video: Option<Pes>,
    audio: Option<Pes>,
    timeline: Timeline,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    avcc: Option<Bytes>,
    asc: Option<[u8; 2]>,
    /// The Opus channel count whose configuration was last sent.
    opus_channels: Option<u8>,
    refused: bool,
    /// TS packets (and broken PES/ADTS units) skipped since the last [`Demuxer::take_skipped`].
    skipped: u64,
}

impl Default for Demuxer {
    fn default() -> Self {
        let feed = Feed::default();
        Self {
            reader: TsPacketReader::new(feed.clone()),
            feed,
            pending: Vec::with_capacity(MAX_PENDING),
            video_pid: None,
            audio_pid: None,
            audio_codec: AudioCodec::Aac,
            video: None,
            audio: None,
            timeline: Timeline::default(),
            sps: None,
            pps: None,
            avcc: None,
            asc: None,
            opus_channels: None,
            refused: false,
            skipped: 0,
        }
    }
}

impl Demuxer {
    /// Units skipped since the last call.
    pub fn take_skipped(&mut self) -> u64 {
        std::mem::take(&mut self.skipped)
    }

    /// Whether the program has an H.264 stream.
    pub fn has_video(&self) -> bool {
        self.video_pid.is_some()
    }

    /// Whether the program has an AAC or Opus stream.
    pub fn has_audio(&self) -> bool {
        self.audio_pid.is_some()
    }

    /// Units skipped so far and not yet taken.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Feed bytes as received (an SRT message: usually 7 TS packets); the events they complete.
    pub fn push(&mut self, mut data: &[u8]) -> Vec<TsEvent> {
        let mut events = Vec::new();
        while !data.is_empty() {
            if self.pending.is_empty() && data.len() >= PACKET && data.first() == Some(&0x47) {
                let (packet, rest) = data.split_at(PACKET);
                self.packet(packet, &mut events);
                data = rest;
                continue;
            }
            // Resynchronise, or complete a packet split across messages.
            let take = (PACKET - self.pending.len().min(PACKET)).min(data.len());
            let (head, rest) = data.split_at(take);
            self.pending.extend_from_slice(head);
            data = rest;
            if let Some(at) = self.pending.iter().position(|b| *b == 0x47) {
                if at > 0 {
                    self.skipped += 1;
                    self.pending.drain(..at);
                }
            } else {
                self.skipped += 1;
                self.pending.clear();
            }
            if self.pending.len() >= PACKET {
                let packet: Vec<u8> = self.pending.drain(..PACKET).collect();
                self.packet(&packet, &mut events);
            }
            self.pending.truncate(MAX_PENDING);
        }
        events
    }

    fn packet(&mut self, packet: &[u8], events: &mut Vec<TsEvent>) {
        {
            let mut feed = self.feed.0.lock();
            feed.clear();
            feed.extend(packet);
        }
        let parsed = self.reader.read_ts_packet();
        self.feed.0.lock().clear();
        let Ok(Some(packet)) = parsed else {
            self.skipped += 1;
            return;
        };
        let pid = packet.header.pid.as_u16();
        match packet.payload {
            Some(TsPayload::Pmt(pmt)) => {
                let mut audio = None;
                for es in &pmt.es_info {
                    let pid = es.elementary_pid.as_u16();
                    match es.stream_type {
                        StreamType::H264 => self.video_pid = Some(pid),
                        StreamType::AdtsAac => audio = audio.or(Some((pid, AudioCodec::Aac))),
                        StreamType::Mpeg2PacketizedData => {
                            if let Some(channels) = opus_channels(&es.descriptors) {
                                audio = audio.or(Some((pid, AudioCodec::Opus(channels))));
                            }
                        }
                        _ => {}
                    }
                }
                if let Some((pid, codec)) = audio {
                    self.audio_pid = Some(pid);
                    self.audio_codec = codec;
                    if let AudioCodec::Opus(channels) = codec {
                        if self.opus_channels != Some(channels) {
                            self.opus_channels = Some(channels);
                            events.push(TsEvent::AudioConfig(opus_config(channels)));
                        }
                    }
                }
                if self.video_pid.is_none() && self.audio_pid.is_none() && !self.refused {
                    self.refused = true;
                    let types: Vec<String> = pmt
                        .es_info
                        .iter()
                        .map(|e| format!("{:?}", e.stream_type))
                        .collect();
                    events.push(TsEvent::Unsupported(format!(
                        "MPEG-TS without H.264, AAC or Opus (streams: {}); send H.264 and AAC or Opus",
                        types.join(", ")
                    )));
                }
            }
            Some(TsPayload::PesStart(pes)) => {
                let video = Some(pid) == self.video_pid;
                if !video && Some(pid) != self.audio_pid {
                    return;
                }
                let header = &pes.header;
                let optional = 3
                    + header.pts.map_or(0, |_| 5)
                    + header.dts.map_or(0, |_| 5)
                    + header.escr.map_or(0, |_| 6);
                let next = Pes {
                    pts: header.pts.map(|t| t.as_u64()),
                    dts: header.dts.map(|t| t.as_u64()),
                    data: pes.data.to_vec(),
                    len: (pes.pes_packet_len != 0)
                        .then(|| usize::from(pes.pes_packet_len).saturating_sub(optional)),
                };
                let slot = if video { &mut self.video } else { &mut self.audio };
                if let Some(done) = slot.replace(next) {
                    self.finish(video, done, events);
                }
                self.complete(video, events);
            }
            Some(TsPayload::PesContinuation(bytes)) => {
                let video = Some(pid) == self.video_pid;
                if !video && Some(pid) != self.audio_pid {
                    return;
                }
                let slot = if video { &mut self.video } else { &mut self.audio };
                match slot {
                    Some(pes) if pes.data.len() + bytes.len() <= MAX_PES => {
                        pes.data.extend_from_slice(&bytes)
                    }
                    Some(_) => {
                        *slot = None;
                        self.skipped += 1;
                    }
                    None => self.skipped += 1, // no PES start seen: joined mid-PES or garbage
                }
                self.complete(video, events);
            }
            _ => {}
        }
    }

    /// A PES whose announced length is reached is finished now.
    fn complete(&mut self, video: bool, events: &mut Vec<TsEvent>) {
        let slot = if video { &mut self.video } else { &mut self.audio };
        if slot
            .as_ref()
            .is_some_and(|p| p.len.is_some_and(|l| p.data.len() >= l))
        {
            if let Some(done) = slot.take() {
                self.finish(video, done, events);
            }
        }
    }

    fn finish(&mut self, video: bool, pes: Pes, events: &mut Vec<TsEvent>) {
        let Some(pts) = pes.pts else {
            self.skipped += 1;
            return;
        };
        let pts_us = self.timeline.us(pts);
        if video {
            let dts_us = pes.dts.map_or(pts_us, |d| self.timeline.us(d));
            self.video_pes(&pes.data, dts_us, pts_us, events);
        } else {
            match self.audio_codec {
                AudioCodec::Aac => self.audio_pes(&pes.data, pts_us, events),
                AudioCodec::Opus(_) => self.opus_pes(&pes.data, pts_us, events),
            }
        }
    }

    fn video_pes(&mut self, data: &[u8], dts: u64, pts: u64, events: &mut Vec<TsEvent>) {
        let mut out = BytesMut::with_capacity(data.len() + 16);
        let mut keyframe = false;
        for nal in annexb_nals(data) {
            let Some(header) = nal.first() else { continue };
            match header & 0x1f {
                7 => self.sps = Some(Bytes::copy_from_slice(nal)),
                8 => self.pps = Some(Bytes::copy_from_slice(nal)),
                9 => {}
                kind => {
                    keyframe |= kind == 5;
                    out.put_u32(nal.len() as u32);
                    out.put_slice(nal);
                }
            }
        }
        if let (Some(sps), Some(pps)) = (&self.sps, &self.pps) {
            if let Some(config) = avc_config(sps, pps) {
                if self.avcc.as_ref() != config.description.as_ref() {
                    self.avcc = config.description.clone();
                    events.push(TsEvent::VideoConfig(config));
                }
            }
        }
        if out.is_empty() {
            return;
        }
        events.push(TsEvent::Video {
            dts,
            pts,
            keyframe,
            data: out.freeze(),
        });
    }

    fn audio_pes(&mut self, mut data: &[u8], t: u64, events: &mut Vec<TsEvent>) {
        let mut index = 0u64;
        while !data.is_empty() {
            let Some(frame) = adts(data) else {
                self.skipped += 1;
                return;
            };
            if self.asc != Some(frame.asc) {
                self.asc = Some(frame.asc);
                match aac_config(&frame.asc) {
                    Some(config) => events.push(TsEvent::AudioConfig(config)),
                    None => {
                        self.skipped += 1;
                        return;
                    }
                }
            }
            let offset = index * 1024 * 1_000_000 / u64::from(frame.rate.max(1));
            events.push(TsEvent::Audio {
                t: t + offset,
                data: Bytes::copy_from_slice(frame.raw),
            });
            index += 1;
            data = data.get(frame.len..).unwrap_or_default();
        }
    }

    /// The Opus packets of one PES: access units, each behind its control header.
    fn opus_pes(&mut self, mut data: &[u8], t: u64, events: &mut Vec<TsEvent>) {
        let mut offset = 0;
        while !data.is_empty() {
            let Some((packet, len)) = opus_unit(data) else {
                self.skipped += 1;
                return;
            };
            events.push(TsEvent::Audio {
                t: t + offset,
                data: Bytes::copy_from_slice(packet),
            });
            offset += opus_duration_us(packet).unwrap_or(20_000);
            data = data.get(len..).unwrap_or_default();
        }
    }
}

/// The audio codec of the program's audio stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AudioCodec {
    Aac,
    /// Opus with this many channels.
    Opus(u8),
}

/// The channel count of an Opus elementary stream, from its PMT descriptors: a registration
/// descriptor (tag 5) `Opus` marks one, and the DVB extension descriptor (tag 0x7F, extension
/// 0x80) carries its `channel_config_code`, 1–8 channels in the Vorbis order. `None`: not Opus,
/// or a channel configuration Banyan does not map (dual mono, the extended codes).
fn opus_channels(descriptors: &[mpeg2ts::ts::Descriptor]) -> Option<u8> {
    descriptors.iter().find(|d| d.tag == 5 && d.data == b"Opus")?;
    let code = descriptors
        .iter()
        .find_map(|d| match d.data.as_slice() {
            [0x80, code, ..] if d.tag == 0x7f => Some(*code),
            _ => None,
        })
        .unwrap_or(2); // no extension descriptor: stereo, as the decoders assume
    (1..=8).contains(&code).then_some(code)
}

/// The `opus` configuration with an OpusHead (RFC 7845 §5.1) for `channels` (1–8): mapping
/// family 0 for mono and stereo, else family 1 with the Vorbis channel order.
fn opus_config(channels: u8) -> TrackConfig {
    // Streams, coupled streams and the channel mapping of family 1 (RFC 7845 §5.1.1.2).
    const FAMILY1: [(u8, u8, &[u8]); 6] = [
        (2, 1, &[0, 2, 1]),
        (2, 2, &[0, 1, 2, 3]),
        (3, 2, &[0, 4, 1, 2, 3]),
        (4, 2, &[0, 4, 1, 2, 3, 5]),
        (4, 3, &[0, 4, 1, 2, 3, 5, 6]),
        (5, 3, &[0, 6, 1, 2, 3, 4, 5, 7]),
    ];
    let mut head = Vec::with_capacity(19 + 10);
    head.extend_from_slice(b"OpusHead");
    head.extend_from_slice(&[1, channels]);
    head.extend_from_slice(&0u16.to_le_bytes()); // pre-skip: TS carries trims per packet
    head.extend_from_slice(&48_000u32.to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes()); // output gain
    match FAMILY1.get(usize::from(channels).wrapping_sub(3)) {
        Some((streams, coupled, mapping)) => {
            head.extend_from_slice(&[1, *streams, *coupled]);
            head.extend_from_slice(mapping);
        }
        None => head.push(0),
    }
    TrackConfig {
        kind: MediaKind::Audio,
        codec: "opus".into(),
        description: Some(Bytes::from(head)),
        width: 0,
        height: 0,
        samplerate: 48_000,
        channels: u32::from(channels),
    }
}

/// The Opus packet at the start of `data` behind its control header (`0x7FE0` with the trim and
/// extension flags, the size as a run of 0xFF bytes and a last byte, the trims, the extension),
/// and the bytes the whole access unit takes; `None` if it is not there whole.
fn opus_unit(data: &[u8]) -> Option<(&[u8], usize)> {
    let (&[prefix, flags], mut rest) = data.split_first_chunk::<2>()?;
    if prefix != 0x7f || flags & 0xe0 != 0xe0 {
        return None;
    }
    let mut size = 0usize;
    loop {
        let (&byte, tail) = rest.split_first()?;
        rest = tail;
        size += usize::from(byte);
        if byte != 0xff {
            break;
        }
    }
    let trims = usize::from(flags & 0x10 != 0) * 2 + usize::from(flags & 0x08 != 0) * 2;
    rest = rest.get(trims..)?;
    if flags & 0x04 != 0 {
        let (&len, tail) = rest.split_first()?;
        rest = tail.get(usize::from(len)..)?;
    }
    let packet = rest.get(..size)?;
    let header = data.len() - rest.len();
    Some((packet, header + size))
}

/// An Opus packet's duration in µs from its TOC byte (RFC 6716 §3.1); `None` if it has none.
fn opus_duration_us(packet: &[u8]) -> Option<u64> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    // Frame sizes in tenths of a millisecond: SILK 10/20/40/60, hybrid 10/20, CELT 2.5/5/10/20.
    let frame = match config {
        0..=11 => match config % 4 {
            0 => 100,
            1 => 200,
            2 => 400,
            _ => 600,
        },
        12..=15 => 100 << (config % 2),
        _ => 25 << (config % 4),
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u64::from(*packet.get(1)? & 0x3f),
    };
    Some(frames * frame * 100)
}

/// The NAL units of an Annex-B byte stream (start codes `00 00 01` / `00 00 00 01` removed,
/// trailing zero bytes of each unit dropped).
pub fn annexb_nals(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data.get(i..i + 3) == Some(&[0, 0, 1]) {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::with_capacity(starts.len());
    for (n, start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).map_or(data.len(), |next| next - 3);
        let mut nal = data.get(*start..end).unwrap_or_default();
        while let [rest @ .., 0] = nal {
            nal = rest;
        }
        if !nal.is_empty() {
            nals.push(nal);
        }
    }
    nals
}

/// The `avc1.PPCCLL` configuration with an AVCDecoderConfigurationRecord (avcC) made from one
/// SPS and one PPS; `None` if the SPS is too short or either is over 64 KiB.
pub fn avc_config(sps: &[u8], pps: &[u8]) -> Option<TrackConfig> {
    let (profile, compat, level) = (*sps.get(1)?, *sps.get(2)?, *sps.get(3)?);
    let sps_len = u16::try_from(sps.len()).ok()?;
    let pps_len = u16::try_from(pps.len()).ok()?;
    let mut avcc = BytesMut::with_capacity(11 + sps.len() + pps.len());
    // version, profile, compatibility, level, 4-byte NAL lengths, one SPS.
    avcc.put_slice(&[1, profile, compat, level, 0xff, 0xe1]);
    avcc.put_u16(sps_len);
    avcc.put_slice(sps);
    avcc.put_u8(1);
    avcc.put_u16(pps_len);
    avcc.put_slice(pps);
    Some(TrackConfig {
        kind: MediaKind::Video,
        codec: format!("avc1.{profile:02x}{compat:02x}{level:02x}"),
        description: Some(avcc.freeze()),
        width: 0,
        height: 0,
        samplerate: 0,
        channels: 0,
    })
}

/// One ADTS frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adts<'a> {
    /// The AudioSpecificConfig its header describes.
    pub asc: [u8; 2],
    /// The sample rate.
    pub rate: u32,
    /// The raw AAC frame (header and CRC removed).
    pub raw: &'a [u8],
    /// The frame's length including its header.
    pub len: usize,
}

/// The ADTS frame at the start of `data`, if one is there whole.
pub fn adts(data: &[u8]) -> Option<Adts<'_>> {
    let h = data.get(..7)?;
    let &[b0, b1, b2, b3, b4, b5, _] = h else {
        return None;
    };
    if b0 != 0xff || b1 & 0xf0 != 0xf0 {
        return None;
    }
    let header = if b1 & 0x01 == 1 { 7 } else { 9 };
    let aot = (b2 >> 6) + 1;
    let index = (b2 >> 2) & 0x0f;
    let channels = ((b2 & 0x01) << 2) | (b3 >> 6);
    let len = (usize::from(b3 & 0x03) << 11) | (usize::from(b4) << 3) | usize::from(b5 >> 5);
    let raw = data.get(header..len)?;
    let rate = *crate::flv::AAC_RATES.get(usize::from(index))?;
    Some(Adts {
        asc: [(aot << 3) | (index >> 1), ((index & 1) << 7) | (channels << 3)],
        rate,
        raw,
        len,
    })
}

fn aac_config(asc: &[u8; 2]) -> Option<TrackConfig> {
    let (aot, samplerate, channels) = crate::flv::parse_asc(asc)?;
    Some(TrackConfig {
        kind: MediaKind::Audio,
        codec: format!("mp4a.40.{aot}"),
        description: Some(Bytes::copy_from_slice(asc)),
        width: 0,
        height: 0,
        samplerate,
        channels,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    const SPS: [u8; 4] = [0x67, 0x64, 0x00, 0x1f];
    const PPS: [u8; 3] = [0x68, 0xee, 0x3c];

    #[test]
    fn annexb_becomes_nal_units_and_an_avcc() {
        let mut stream = vec![0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1];
        stream.extend_from_slice(&SPS);
        stream.extend_from_slice(&[0, 0, 1]);
        stream.extend_from_slice(&PPS);
        stream.extend_from_slice(&[0, 0, 1, 0x65, 0x88, 0x84, 0x00, 0x00]);
        let nals = annexb_nals(&stream);
        assert_eq!(nals, vec![&[0x09, 0xf0][..], &SPS, &PPS, &[0x65, 0x88, 0x84]]);

        let config = avc_config(&SPS, &PPS).unwrap();
        assert_eq!(config.codec, "avc1.64001f");
        let avcc = config.description.unwrap();
        assert_eq!(&avcc[..8], &[1, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0, 4]);
        assert_eq!(&avcc[8..12], &SPS);
        assert_eq!(&avcc[12..], &[1, 0, 3, 0x68, 0xee, 0x3c]);
        assert!(avc_config(&[0x67, 0x64], &PPS).is_none());
    }

    #[test]
    fn a_video_pes_becomes_an_avcc_keyframe() {
        let mut demux = Demuxer::default();
        let mut stream = vec![0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1];
        stream.extend_from_slice(&SPS);
        stream.extend_from_slice(&[0, 0, 0, 1]);
        stream.extend_from_slice(&PPS);
        stream.extend_from_slice(&[0, 0, 0, 1, 0x65, 0x88, 0x84]);
        let mut events = Vec::new();
        demux.video_pes(&stream, 1000, 2000, &mut events);
        assert!(matches!(&events[0], TsEvent::VideoConfig(c) if c.codec == "avc1.64001f"));
        assert_eq!(
            events[1],
            TsEvent::Video {
                dts: 1000,
                pts: 2000,
                keyframe: true,
                data: Bytes::from_static(&[0, 0, 0, 3, 0x65, 0x88, 0x84]),
            }
        );
        // The same parameter sets again: no new configuration; a P slice is not a keyframe.
        let mut events = Vec::new();
        demux.video_pes(&[0, 0, 1, 0x41, 0x9a], 3000, 3000, &mut events);
        assert!(matches!(&events[..], [TsEvent::Video { keyframe: false, .. }]));
    }

    /// An ADTS header (no CRC) for AAC-LC, 48 kHz (index 3), stereo, around `payload`.
    fn adts_frame(payload: &[u8]) -> Vec<u8> {
        let len = payload.len() + 7;
        let mut f = vec![
            0xff,
            0xf1,
            (1 << 6) | (3 << 2),
            (2 << 6) | ((len >> 11) as u8 & 0x03),
            (len >> 3) as u8,
            ((len as u8 & 0x07) << 5) | 0x1f,
            0xfc,
        ];
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn adts_becomes_raw_aac_and_an_audio_specific_config() {
        let frame = adts_frame(&[1, 2, 3]);
        let parsed = adts(&frame).unwrap();
        assert_eq!(parsed.asc, [0x11, 0x90]); // AAC-LC, 48 kHz, 2 channels
        assert_eq!(parsed.raw, &[1, 2, 3]);
        assert_eq!(parsed.rate, 48_000);
        assert!(adts(&frame[..8]).is_none(), "a frame cut short");
        assert!(adts(&[0x47; 16]).is_none(), "no syncword");

        let mut demux = Demuxer::default();
        let mut pes = adts_frame(&[1, 2, 3]);
        pes.extend(adts_frame(&[4, 5]));
        let mut events = Vec::new();
        demux.audio_pes(&pes, 1_000_000, &mut events);
        let TsEvent::AudioConfig(config) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(config.codec, "mp4a.40.2");
        assert_eq!((config.samplerate, config.channels), (48_000, 2));
        assert_eq!(
            events[1..],
            [
                TsEvent::Audio {
                    t: 1_000_000,
                    data: Bytes::from_static(&[1, 2, 3])
                },
                TsEvent::Audio {
                    t: 1_021_333,
                    data: Bytes::from_static(&[4, 5])
                },
            ]
        );
    }

    #[test]
    fn opus_access_units_lose_their_control_headers() {
        // 20 ms CELT packets (config 31, code 0): the first with a start trim, the second with
        // a 300-byte size (0xFF then 45) and an extension of 2 bytes.
        let first = [0xf8, 1, 2, 3];
        let second: Vec<u8> = std::iter::once(0xf8).chain((1..300).map(|b| b as u8)).collect();
        let mut pes = vec![0x7f, 0xf0, 4, 0x01, 0x38];
        pes.extend_from_slice(&first);
        pes.extend_from_slice(&[0x7f, 0xe4, 0xff, 45, 2, 0xaa, 0xbb]);
        pes.extend_from_slice(&second);
        assert_eq!(opus_unit(&pes), Some((&first[..], 9)));
        assert!(opus_unit(&pes[..7]).is_none(), "an access unit cut short");
        assert!(opus_unit(&[0xff, 0xf1, 0, 0]).is_none(), "ADTS is not Opus");

        let mut demux = Demuxer::default();
        let mut events = Vec::new();
        demux.opus_pes(&pes, 5_000_000, &mut events);
        assert_eq!(
            events,
            [
                TsEvent::Audio {
                    t: 5_000_000,
                    data: Bytes::copy_from_slice(&first)
                },
                TsEvent::Audio {
                    t: 5_020_000,
                    data: Bytes::from(second)
                },
            ]
        );
        // A broken unit after good ones is counted, not fatal.
        demux.opus_pes(&[0x7f, 0xe0, 9, 1], 0, &mut Vec::new());
        assert_eq!(demux.take_skipped(), 1);
    }

    #[test]
    fn opus_durations_come_from_the_toc() {
        assert_eq!(opus_duration_us(&[0xf8]), Some(20_000)); // CELT 20 ms, one frame
        assert_eq!(opus_duration_us(&[0xe0 | 1]), Some(5_000)); // CELT 2.5 ms, two frames
        assert_eq!(opus_duration_us(&[0x18 | 3, 3]), Some(180_000)); // SILK 60 ms, three frames
        assert_eq!(opus_duration_us(&[0x60]), Some(10_000)); // hybrid 10 ms
        assert_eq!(opus_duration_us(&[0x03]), None, "code 3 without its frame count");
        assert_eq!(opus_duration_us(&[]), None);
    }

    #[test]
    fn opus_is_found_by_its_descriptors_and_gets_an_opus_head() {
        use mpeg2ts::ts::Descriptor;
        let registration = Descriptor {
            tag: 5,
            data: b"Opus".to_vec(),
        };
        let extension = |code| Descriptor {
            tag: 0x7f,
            data: vec![0x80, code],
        };
        assert_eq!(opus_channels(&[registration.clone(), extension(1)]), Some(1));
        assert_eq!(opus_channels(std::slice::from_ref(&registration)), Some(2));
        assert_eq!(opus_channels(&[extension(2)]), None, "no registration: not Opus");
        assert_eq!(
            opus_channels(&[registration.clone(), extension(0)]),
            None,
            "dual mono"
        );

        let stereo = opus_config(2);
        let head = stereo.description.unwrap();
        assert_eq!((stereo.codec.as_str(), stereo.channels), ("opus", 2));
        assert_eq!(&head[..10], b"OpusHead\x01\x02");
        assert_eq!((head.len(), head[18]), (19, 0), "family 0");
        let surround = opus_config(6).description.unwrap();
        assert_eq!(
            &surround[18..],
            &[1, 4, 2, 0, 4, 1, 2, 3, 5],
            "5.1: family 1, Vorbis order"
        );
    }

    #[test]
    fn pts_wraps_at_33_bits() {
        let mut timeline = Timeline::default();
        let near_end = WRAP - 9_000; // 100 ms before the wrap
        let start = timeline.us(near_end);
        assert_eq!(timeline.us(9_000) - start, 200_000);
        // 1.2 s back, across the wrap again.
        assert_eq!(start - timeline.us(near_end - 90_000), 1_000_000);
    }

    #[test]
    fn garbage_is_skipped_and_counted() {
        let mut demux = Demuxer::default();
        assert!(demux.push(&[0u8; 1316]).is_empty());
        assert!(demux.take_skipped() > 0);
        // A packet with a sync byte but nonsense after it, and one split across two pushes.
        let mut junk = vec![0x47, 0x00, 0x30, 0x10]; // PID 0x30: in no PMT
        junk.resize(PACKET, 0xa5);
        assert!(demux.push(&junk).is_empty());
        assert!(demux.push(&junk[..100]).is_empty());
        assert!(demux.push(&junk[100..]).is_empty());
        assert!(demux.take_skipped() >= 1);
        assert_eq!(demux.skipped(), 0);
    }
}
