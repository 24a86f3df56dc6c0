//! `banyan-publisher`: the `banyan-publish`, `banyan-watch` and `banyan-record` binaries as a library, so tests
//! and other tools can drive them.
//!
//! # Module map
//! - [`connect`]: the shared relay options (URL, `--tls-hash`, `--tls-ca`, `--tls-insecure`,
//!   `--token`), dialling with a bounded handshake, reconnection [`connect::Backoff`].
//! - [`broadcast`]: the publisher's catalog and its media tracks ([`broadcast::MediaTrack`]: group
//!   numbering and codec configuration over a `banyan_moq::track` producer).
//! - [`source`]: fMP4 (stdin or file, paced, looped) and synthetic sources feeding the broadcast;
//!   the catalog builder ([`source::start_tracks`]) and pacing clock ([`source::Clock`]) are shared
//!   with `banyan-ingest`.
//! - [`ladder`]: `--ladder`: one ffmpeg encoding a rendition ladder with aligned keyframes,
//!   each rendition a video track; group IDs and timestamps aligned by keyframe time
//!   ([`ladder::GroupAligner`]).
//! - [`publish`]: serving SUBSCRIBEs from the broadcast (a `banyan_moq::track::Fanout` per media
//!   subscription) and the reconnecting publish loop ([`publish::run_announced`] also tells when
//!   the relay first accepted the namespace).
//! - [`watch`]: the native viewer: subscribe, reorder, measure, mux to fMP4, JSON summary.
//! - [`record`]: `banyan-record`: record a broadcast to disk (CMAF segments per group, index,
//!   HLS playlists, interaction timeline, retention) and export a recording to one MP4.
//! - [`rendition`]: `banyan-watch --rendition auto`: the ladder from the catalog, the
//!   bandwidth rule fed from the objects played, make-before-break switches, the timeline.
//! - [`cli`]: the two command lines and their `run` functions (the binaries are thin).

pub mod broadcast;
pub mod cli;
pub mod connect;
pub mod ladder;
pub mod publish;
pub mod record;
pub mod rendition;
pub mod source;
pub mod watch;
