//! `banyan-media`: how Banyan turns media into MoQT objects and back.
//!
//! # Module map
//! - [`abr`]: adaptive bitrate, sans-IO: the bandwidth a viewer receives, estimated from its
//!   video objects with the link's idle time left out, and the rendition to play with
//!   hysteresis.
//! - [`catalog`]: the MSF catalog (JSON on the `catalog` track) with serde.
//! - [`loc`]: LOC packaging: one frame per object, its capture timestamp and codec
//!   configuration as Object Properties.
//! - [`codec`]: MP4 sample entries to WebCodecs codec strings and `description` bytes
//!   (`avc1.640028` + avcC, `av01.0.04M.08` + av1C, `vp09...`, `opus` + OpusHead,
//!   `mp4a.40.2` + AudioSpecificConfig) and back.
//! - [`fmp4`]: fragmented MP4 / CMAF: [`fmp4::Demuxer`] (what ffmpeg writes, fed in chunks,
//!   sans-IO) and [`fmp4::Muxer`] (init segment and one fragment per frame, for native
//!   playback).
//! - [`stats`]: latency statistics: nearest-rank percentiles and [`stats::Distribution`]
//!   (what `banyan-bench` reports and `banyan-watch` summarises).
//!
//! Nothing here does I/O or spawns tasks; the publisher and viewer drive it.

pub mod abr;
pub mod catalog;
pub mod codec;
pub mod fmp4;
pub mod loc;
pub mod stats;

pub use catalog::{Catalog, Track};
pub use codec::TrackConfig;
pub use loc::{LocFrame, MediaKind};
