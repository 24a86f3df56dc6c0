//! Media sources that feed the [`Broadcast`]: fragmented MP4 from stdin or a file (paced by its
//! timestamps, optionally looped) and a synthetic timestamped source.
//!
//! Capture timestamps: the first frame is stamped with the wall clock when it is sent; every
//! later frame with that anchor plus its presentation time, so timestamps follow the media
//! timeline exactly and double as presentation times for viewers. Frames are sent when the
//! wall clock reaches anchor + decode time. If the input falls behind real time by more than
//! [`MAX_LAG`] (a live encoder stalled), the anchor moves forward so timestamps stay honest.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use banyan_media::catalog::{Catalog, SYNTHETIC_FIELD};
use banyan_media::codec::TrackConfig;
use banyan_media::fmp4::{DemuxEvent, DemuxTrack, Demuxer};
use banyan_media::loc::unix_micros;
use banyan_media::{LocFrame, MediaKind};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use crate::broadcast::{Broadcast, MediaTrack, Published};

/// How far the input may fall behind its own timeline before the clock is re-anchored.
pub const MAX_LAG: Duration = Duration::from_millis(500);
/// Audio frames are grouped into groups of about this much media time.
pub const AUDIO_GROUP: Duration = Duration::from_millis(500);

/// Publisher priority of video group streams.
pub const VIDEO_PRIORITY: u8 = 128;
/// Publisher priority of audio group streams.
pub const AUDIO_PRIORITY: u8 = 64;

/// Where fMP4 comes from.
#[derive(Debug, Clone)]
pub enum Input {
    /// Standard input (e.g. `ffmpeg ... -f mp4 -`).
    Stdin,
    /// A file.
    File(PathBuf),
}

/// Options of the fMP4 source.
#[derive(Debug, Clone)]
pub struct Fmp4Options {
    /// The input.
    pub input: Input,
    /// Start over at the end of a file (a 24/7 channel from a clip).
    pub looped: bool,
    /// Hold the media until every track has been subscribed once (to deliver a whole file).
    pub wait_subscribers: bool,
}

/// Read fMP4 and publish it into `broadcast` until the input ends (then end the broadcast).
pub async fn run_fmp4(options: Fmp4Options, broadcast: Arc<Broadcast>) -> anyhow::Result<()> {
    let result = fmp4_inner(&options, &broadcast).await;
    broadcast.end();
    result
}

async fn fmp4_inner(options: &Fmp4Options, broadcast: &Arc<Broadcast>) -> anyhow::Result<()> {
    let mut clock: Option<Clock> = None;
    let mut offset_us = 0u64; // media-time offset of the current loop pass
    let mut producers: Vec<(u32, Arc<MediaTrack>)> = Vec::new();
    let mut audio_group_start: Vec<Option<u64>> = Vec::new();
    let mut pass_end_us = 0u64;
    loop {
        let mut reader: Box<dyn AsyncRead + Unpin + Send> = match &options.input {
            Input::Stdin => Box::new(tokio::io::stdin()),
            Input::File(path) => Box::new(
                tokio::fs::File::open(path)
                    .await
                    .with_context(|| format!("opening {}", path.display()))?,
            ),
        };
        let mut demuxer = Demuxer::default();
        let mut buf = vec![0u8; 64 * 1024];
        let mut first_pass_init = producers.is_empty();
        loop {
            let n = reader.read(&mut buf).await.context("reading input")?;
            if n == 0 {
                break;
            }
            demuxer.push(buf.get(..n).unwrap_or_default());
            while let Some(event) = demuxer.poll_event().context("reading fragmented MP4")? {
                match event {
                    DemuxEvent::Init(tracks) => {
                        if first_pass_init {
                            producers = start(broadcast, &tracks);
                            audio_group_start = vec![None; producers.len()];
                            first_pass_init = false;
                            if options.wait_subscribers {
                                eprintln!("publish: waiting for every track to be subscribed");
                                for (_, p) in &producers {
                                    p.first_subscription().await;
                                }
                            }
                        }
                    }
                    DemuxEvent::Sample(sample) => {
                        let Some(index) = producers.iter().position(|(id, _)| *id == sample.track_id) else {
                            continue;
                        };
                        let Some((_, producer)) = producers.get(index) else {
                            continue;
                        };
                        let dts = offset_us + sample.decode_time_us();
                        let pts = offset_us + sample.presentation_time_us();
                        pass_end_us = pass_end_us.max(dts + sample.duration_us());
                        let clock = clock.get_or_insert_with(|| Clock::start(dts));
                        clock.wait(dts).await;
                        let new_group = match producer.kind {
                            MediaKind::Video => sample.keyframe,
                            MediaKind::Audio => {
                                let slot = audio_group_start.get_mut(index);
                                match slot {
                                    Some(start @ None) => {
                                        *start = Some(pts);
                                        true
                                    }
                                    Some(Some(start)) if pts >= *start + AUDIO_GROUP.as_micros() as u64 => {
                                        *start = pts;
                                        true
                                    }
                                    _ => false,
                                }
                            }
                        };
                        let frame = LocFrame {
                            timestamp_us: clock.timestamp(pts),
                            decode_offset_us: pts.saturating_sub(dts),
                            config: None,
                            payload: sample.data,
                        };
                        producer.write(frame, new_group);
                    }
                }
            }
        }
        demuxer.finish().context("reading fragmented MP4")?;
        match (&options.input, options.looped) {
            (Input::File(_), true) => {
                offset_us = pass_end_us;
                continue;
            }
            _ => return Ok(()),
        }
    }
}

/// Create the catalog and producers for the demuxed tracks.
fn start(broadcast: &Broadcast, tracks: &[DemuxTrack]) -> Vec<(u32, Arc<MediaTrack>)> {
    let configs: Vec<&TrackConfig> = tracks.iter().map(|t| &t.config).collect();
    let producers = start_tracks(broadcast, &configs);
    tracks.iter().map(|t| t.track_id).zip(producers).collect()
}

/// Publish a live catalog for `configs` (tracks named `video`, `audio`, `video2`, … in order,
/// their decoder configurations as init data, a generous bitrate ceiling) and return their
/// media tracks, in the same order. Shared with the ingest gateway.
pub fn start_tracks(broadcast: &Broadcast, configs: &[&TrackConfig]) -> Vec<Arc<MediaTrack>> {
    let mut catalog_tracks = Vec::new();
    let mut producers = Vec::new();
    let (mut videos, mut audios) = (0, 0);
    for config in configs {
        let (name, priority) = match config.kind {
            MediaKind::Video => {
                videos += 1;
                (numbered("video", videos), VIDEO_PRIORITY)
            }
            MediaKind::Audio => {
                audios += 1;
                (numbered("audio", audios), AUDIO_PRIORITY)
            }
        };
        catalog_tracks.push(config.catalog_track(&name));
        producers.push(Arc::new(MediaTrack::new(
            &name,
            config.kind,
            config.description.clone(),
            priority,
            broadcast.first_group,
        )));
    }
    let mut catalog = Catalog::live(catalog_tracks);
    for (i, config) in configs.iter().enumerate() {
        if let Some(d) = &config.description {
            catalog.set_init_data(i, d);
        }
    }
    for t in catalog.tracks.iter_mut().flatten() {
        // MSF requires a bitrate for audio and video; an fMP4 init segment does not say, so
        // declare a generous ceiling.
        t.bitrate = Some(if t.role.as_deref() == Some("audio") {
            512_000
        } else {
            20_000_000
        });
    }
    broadcast.publish(Published {
        catalog,
        tracks: producers.clone(),
    });
    producers
}

fn numbered(base: &str, n: usize) -> String {
    if n == 1 {
        base.to_string()
    } else {
        format!("{base}{n}")
    }
}

/// The pacing clock: media time ↔ wall clock.
#[derive(Debug)]
pub struct Clock {
    /// The Instant at which media time `media_origin` is due.
    start: Instant,
    media_origin: u64,
    /// Wall-clock µs at `start`.
    wall_origin: u64,
}

impl Clock {
    /// A clock whose media time `media_origin` (µs) is now.
    pub fn start(media_origin: u64) -> Self {
        Self {
            start: Instant::now(),
            media_origin,
            wall_origin: unix_micros(),
        }
    }

    /// Wait until media time `t` (µs) is due; re-anchor if far behind.
    async fn wait(&mut self, t: u64) {
        if let Some(due) = self.observe(t) {
            tokio::time::sleep_until(due).await;
        }
    }

    /// Media time `t` (µs) has arrived: re-anchor if it is more than [`MAX_LAG`] late
    /// (a live input that stalled) and return `None`, else return when it is due. A live
    /// source that is not paced (the ingest gateway) calls this for every frame.
    pub fn observe(&mut self, t: u64) -> Option<Instant> {
        let due = self.start + Duration::from_micros(t.saturating_sub(self.media_origin));
        let now = Instant::now();
        if now > due + MAX_LAG {
            let lag = now - due;
            self.start += lag;
            self.wall_origin += u64::try_from(lag.as_micros()).unwrap_or(0);
            return None;
        }
        Some(due)
    }

    /// For a live source that is not paced (the ingest gateway): media time `t` (µs) arrived
    /// now. Re-anchor as [`observe`](Self::observe) does when it is late, and also when it is
    /// early: a frame cannot have been captured after it arrived, so the anchor moves back to
    /// the earliest arrival (the encoder's first frames often come late, behind its start-up).
    pub fn arrived(&mut self, t: u64) {
        if let Some(due) = self.observe(t) {
            let early = due.saturating_duration_since(Instant::now());
            self.start -= early;
            self.wall_origin = self
                .wall_origin
                .saturating_sub(u64::try_from(early.as_micros()).unwrap_or(0));
        }
    }

    /// The capture timestamp of media time `t`.
    pub fn timestamp(&self, t: u64) -> u64 {
        (self.wall_origin + t).saturating_sub(self.media_origin)
    }
}

/// Options of the synthetic source.
#[derive(Debug, Clone, Copy)]
pub struct SyntheticOptions {
    /// Frames per second.
    pub fps: f64,
    /// Frames per group.
    pub gop: u64,
    /// Bits per second.
    pub bitrate: u64,
    /// Declared width.
    pub width: u32,
    /// Declared height.
    pub height: u32,
    /// Stop after this long (run forever when `None`).
    pub duration: Option<Duration>,
}

/// The codec string synthetic tracks declare: not a WebCodecs codec, so no decoder will try
/// to decode the filler payload.
pub const SYNTHETIC_CODEC: &str = "x-banyan-synthetic";

/// Generate frames of `bitrate / fps` bytes at `fps` into one `video` track, stamped with the
/// wall clock at generation. A new group starts every `gop` frames, or at once when a new
/// subscription is waiting for one.
pub async fn run_synthetic(options: SyntheticOptions, broadcast: Arc<Broadcast>) -> anyhow::Result<()> {
    anyhow::ensure!(
        options.fps > 0.0 && options.fps <= 1000.0,
        "--fps must be in (0, 1000]"
    );
    anyhow::ensure!(options.gop > 0, "--gop must be at least 1");
    let mut track = banyan_media::Track {
        name: "video".into(),
        packaging: Some("loc".into()),
        is_live: Some(true),
        role: Some("video".into()),
        render_group: Some(1),
        codec: Some(SYNTHETIC_CODEC.into()),
        width: Some(options.width),
        height: Some(options.height),
        framerate: Some(options.fps),
        bitrate: Some(options.bitrate),
        max_gop_duration: Some((options.gop as f64 * 1000.0 / options.fps) as u64),
        ..Default::default()
    };
    track
        .extra
        .insert(SYNTHETIC_FIELD.into(), serde_json::Value::Bool(true));
    let producer = Arc::new(MediaTrack::new(
        "video",
        MediaKind::Video,
        None,
        VIDEO_PRIORITY,
        broadcast.first_group,
    ));
    broadcast.publish(Published {
        catalog: Catalog::live(vec![track]),
        tracks: vec![producer.clone()],
    });
    let size = usize::try_from((options.bitrate as f64 / 8.0 / options.fps) as u64)
        .unwrap_or(1)
        .max(1);
    let payload = Bytes::from(vec![0x5a; size]);
    let interval = Duration::from_secs_f64(1.0 / options.fps);
    let start = Instant::now();
    let mut frame = 0u64;
    let mut in_group = 0u64;
    loop {
        let due = start + interval.mul_f64(frame as f64);
        if options.duration.is_some_and(|d| due.duration_since(start) >= d) {
            break;
        }
        tokio::time::sleep_until(due).await;
        let new_group = in_group == 0 || in_group >= options.gop || producer.keyframe_wanted();
        if new_group {
            in_group = 0;
        }
        producer.write(LocFrame::new(unix_micros(), payload.clone()), new_group);
        in_group += 1;
        frame += 1;
    }
    broadcast.end();
    Ok(())
}
