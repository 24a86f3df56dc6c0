//! Fragmented MP4 (ISO BMFF / CMAF), via the `mp4-atom` crate: [`Demuxer`] reads what ffmpeg
//! writes; [`Muxer`] writes an init segment and fragments a player (ffplay, ffprobe, MSE) reads.

mod demux;
mod mux;

pub use demux::{DemuxEvent, DemuxTrack, Demuxer};
pub use mux::Muxer;

use bytes::Bytes;

use crate::codec::CodecError;

/// The largest box the demuxer buffers by default (a whole fragment's `mdat` at high bitrate).
pub const DEFAULT_MAX_BOX_SIZE: u64 = 64 * 1024 * 1024;

/// More samples than this in one `trun` is treated as malformed (bounds work per fragment).
pub const MAX_SAMPLES_PER_FRAGMENT: usize = 1 << 16;

/// One media sample (a frame, or an audio packet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The MP4 track it belongs to.
    pub track_id: u32,
    /// Ticks per second of the times below.
    pub timescale: u32,
    /// Decode time in ticks.
    pub decode_time: u64,
    /// Presentation minus decode time in ticks.
    pub composition_offset: i64,
    /// Duration in ticks.
    pub duration: u32,
    /// A sync sample (keyframe): decoding can start here.
    pub keyframe: bool,
    /// The coded frame (for H.264: length-prefixed NAL units).
    pub data: Bytes,
}

impl Sample {
    /// Decode time in microseconds.
    pub fn decode_time_us(&self) -> u64 {
        to_micros(self.decode_time, self.timescale)
    }

    /// Presentation time in microseconds (never before 0).
    pub fn presentation_time_us(&self) -> u64 {
        let pts = i128::from(self.decode_time) + i128::from(self.composition_offset);
        to_micros(u64::try_from(pts.max(0)).unwrap_or(u64::MAX), self.timescale)
    }

    /// Duration in microseconds.
    pub fn duration_us(&self) -> u64 {
        to_micros(u64::from(self.duration), self.timescale)
    }
}

/// `ticks` at `timescale` per second, in microseconds (saturating).
pub fn to_micros(ticks: u64, timescale: u32) -> u64 {
    if timescale == 0 {
        return 0;
    }
    let us = u128::from(ticks) * 1_000_000 / u128::from(timescale);
    u64::try_from(us).unwrap_or(u64::MAX)
}

/// Why an MP4 stream could not be read or written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The input does not start like an MP4 file.
    #[error("input is not an MP4 stream (it starts with {0:?}); expected fragmented MP4 (ffmpeg -f mp4 -movflags frag_keyframe+empty_moov)")]
    NotMp4(String),
    /// The input ended before anything was read.
    #[error("input is empty")]
    Empty,
    /// The input ended in the middle of a box (`n` bytes of it were buffered).
    #[error("input ended in the middle of a box ({0} bytes buffered): truncated MP4")]
    Truncated(u64),
    /// A fragment or the end of input arrived before the `moov`.
    #[error("no moov (initialization segment) before the media")]
    NoInit,
    /// The MP4 is not fragmented (samples are indexed in the `moov`).
    #[error("MP4 is not fragmented; write it with -movflags frag_keyframe+empty_moov")]
    NotFragmented,
    /// The `moov` has no video or audio track.
    #[error("MP4 has no video or audio track")]
    NoMediaTracks,
    /// A codec Banyan cannot describe.
    #[error("{0}")]
    Codec(CodecError),
    /// A box too large to buffer.
    #[error("box {kind} of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// The box type.
        kind: String,
        /// Its declared size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A box that does not decode.
    #[error("malformed {0} box: {1}")]
    Box(&'static str, String),
    /// Structurally wrong input.
    #[error("malformed MP4: {0}")]
    Malformed(String),
}

impl From<CodecError> for Error {
    fn from(e: CodecError) -> Self {
        Error::Codec(e)
    }
}
