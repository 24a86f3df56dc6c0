//! One encoder connection's media → its broadcast's tracks: the catalog (made from the first
//! connection's sequence headers when its first frame arrives), groups (a new video group at
//! each keyframe, an audio group every [`AUDIO_GROUP`]), and capture timestamps.
//!
//! Capture time: FLV timestamps are milliseconds on the encoder's own timeline. The first tag
//! of a connection anchors it to the wall clock (the publisher's pacing [`Clock`]): a frame's
//! capture timestamp is the anchor plus its presentation time (decode time + composition
//! offset) since the first tag. The gateway does not delay frames. A frame that arrives before
//! its time on that clock moves the anchor back (nothing is captured after it arrives: the
//! encoder's first tags tend to come late), and one more than the clock's `MAX_LAG` late (a
//! stall) moves it forward, so timestamps stay honest ([`Clock::arrived`]). The 32-bit FLV clock is extended by its signed differences, so
//! small backward steps between audio and video and the 49-day wrap are harmless.
//!
//! MPEG-TS over SRT ([`crate::ts`]) enters through the same [`Mapper`] with µs media times of its
//! own (90 kHz PTS/DTS extended across the 33-bit wrap), so the anchoring above is shared.
//!
//! A resumed broadcast (the encoder reconnected) keeps its tracks: the new connection's first
//! video frame used is a keyframe, which starts a new group, and its codec configuration must
//! be the one the catalog announced.

use std::sync::Arc;

use banyan_media::codec::TrackConfig;
use banyan_media::LocFrame;
use banyan_publisher::broadcast::MediaTrack;
use banyan_publisher::source::{start_tracks, Clock, AUDIO_GROUP};
use bytes::Bytes;

use crate::broadcasts::{Live, Tracks};
use crate::flv::{self, FlvError, Tag};
use crate::metrics::{KindLabel, Metrics};

/// Why a connection's media cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// A codec Banyan does not carry.
    #[error("unsupported codec: {0}")]
    Unsupported(String),
    /// A malformed tag.
    #[error(transparent)]
    Malformed(#[from] FlvError),
    /// A resuming encoder sent another codec configuration than the broadcast's catalog has.
    #[error("the {0} configuration differs from the broadcast's; reconnect as a new broadcast")]
    ConfigChanged(&'static str),
}

/// The media state of one encoder connection.
#[derive(Debug)]
pub struct Mapper {
    live: Arc<Live>,
    metrics: Arc<Metrics>,
    video_config: Option<TrackConfig>,
    audio_config: Option<TrackConfig>,
    size: (u32, u32),
    tracks: Option<Tracks>,
    clock: Option<Clock>,
    /// The last FLV timestamp and its extended media time (µs).
    last: Option<(u32, u64)>,
    video_started: bool,
    audio_group_start: Option<u64>,
}

impl Mapper {
    /// A connection publishing into `live`.
    pub fn new(live: Arc<Live>, metrics: Arc<Metrics>) -> Self {
        Self {
            live,
            metrics,
            video_config: None,
            audio_config: None,
            size: (0, 0),
            tracks: None,
            clock: None,
            last: None,
            video_started: false,
            audio_group_start: None,
        }
    }

    /// The encoder's `onMetaData` said the picture size.
    pub fn set_size(&mut self, width: u32, height: u32) {
        self.size = (width, height);
    }

    /// A video tag body at FLV time `ts` (ms).
    pub fn video(&mut self, ts: u32, body: &Bytes) -> Result<(), MapError> {
        match flv::video(body)? {
            Tag::VideoConfig(config) => self.video_config(config),
            Tag::Video {
                keyframe,
                composition_ms,
                data,
            } => {
                let dts = self.media_us(ts);
                let pts = dts.saturating_add_signed(i64::from(composition_ms) * 1000);
                self.video_frame(dts, pts, keyframe, data)?;
            }
            Tag::Unsupported(codec) => return Err(MapError::Unsupported(codec)),
            Tag::AudioConfig(_) | Tag::Audio(_) | Tag::Ignored => {}
        }
        Ok(())
    }

    /// An audio tag body at FLV time `ts` (ms).
    pub fn audio(&mut self, ts: u32, body: &Bytes) -> Result<(), MapError> {
        match flv::audio(body)? {
            Tag::AudioConfig(config) => self.audio_config(config),
            Tag::Audio(data) => {
                let t = self.media_us(ts);
                self.audio_frame(t, data)?;
            }
            Tag::Unsupported(codec) => return Err(MapError::Unsupported(codec)),
            Tag::VideoConfig(_) | Tag::Video { .. } | Tag::Ignored => {}
        }
        Ok(())
    }

    /// The video decoder configuration (used by the catalog once the first frame arrives).
    pub fn video_config(&mut self, config: TrackConfig) {
        self.video_config = Some(config);
    }

    /// The audio decoder configuration.
    pub fn audio_config(&mut self, config: TrackConfig) {
        self.audio_config = Some(config);
    }

    /// Whether a video (or audio) configuration is known.
    pub fn has_config(&self, video: bool) -> bool {
        if video {
            self.video_config.is_some()
        } else {
            self.audio_config.is_some()
        }
    }

    /// A coded video frame (AVCC or OBUs) at media time `dts`/`pts` (µs on the encoder's
    /// extended timeline). A connection's video starts at a keyframe.
    pub fn video_frame(&mut self, dts: u64, pts: u64, keyframe: bool, data: Bytes) -> Result<(), MapError> {
        let Some(track) = self.track(true)? else {
            return Ok(());
        };
        if !self.video_started && !keyframe {
            return Ok(());
        }
        self.video_started = true;
        self.write(&track, dts, pts, data, keyframe, "video");
        Ok(())
    }

    /// A coded audio frame at media time `t` (µs); a new group every [`AUDIO_GROUP`].
    pub fn audio_frame(&mut self, t: u64, data: Bytes) -> Result<(), MapError> {
        let Some(track) = self.track(false)? else {
            return Ok(());
        };
        let new_group = match self.audio_group_start {
            Some(start) if t < start + AUDIO_GROUP.as_micros() as u64 => false,
            _ => {
                self.audio_group_start = Some(t);
                true
            }
        };
        self.write(&track, t, t, data, new_group, "audio");
        Ok(())
    }

    fn write(
        &mut self,
        track: &MediaTrack,
        dts: u64,
        pts: u64,
        payload: Bytes,
        new_group: bool,
        kind: &'static str,
    ) {
        let clock = self.clock.get_or_insert_with(|| Clock::start(dts));
        clock.arrived(dts);
        let frame = LocFrame {
            timestamp_us: clock.timestamp(pts),
            decode_offset_us: pts.saturating_sub(dts),
            config: None,
            payload,
        };
        if track.write(frame, new_group).is_some() {
            self.metrics.frames.get_or_create(&KindLabel { kind }).inc();
        }
    }

    /// The extended media time (µs) of FLV time `ts`.
    fn media_us(&mut self, ts: u32) -> u64 {
        let t = match self.last {
            None => u64::from(ts) * 1000,
            Some((last_ts, last_us)) => {
                let delta = i64::from(ts.wrapping_sub(last_ts) as i32) * 1000;
                last_us.saturating_add_signed(delta)
            }
        };
        self.last = Some((ts, t));
        t
    }

    /// The video (or audio) track, making the catalog first if this broadcast has none yet.
    fn track(&mut self, video: bool) -> Result<Option<Arc<MediaTrack>>, MapError> {
        if self.tracks.is_none() {
            let mut shared = self.live.tracks.lock();
            let tracks = match &*shared {
                Some(existing) => {
                    check_same("video", existing.video.as_ref(), self.video_config.as_ref())?;
                    check_same("audio", existing.audio.as_ref(), self.audio_config.as_ref())?;
                    existing.clone()
                }
                None => {
                    let tracks = self.start();
                    *shared = Some(tracks.clone());
                    tracks
                }
            };
            self.tracks = Some(tracks);
        }
        let tracks = self.tracks.as_ref();
        let entry = tracks.and_then(|t| if video { t.video.as_ref() } else { t.audio.as_ref() });
        Ok(entry.map(|(_, track)| track.clone()))
    }

    fn start(&self) -> Tracks {
        let video = self.video_config.clone().map(|mut c| {
            (c.width, c.height) = self.size;
            c
        });
        let configs: Vec<&TrackConfig> = video.iter().chain(self.audio_config.iter()).collect();
        let mut made = start_tracks(&self.live.broadcast, &configs).into_iter();
        let video = video.and_then(|c| Some((c, made.next()?)));
        let audio = self.audio_config.clone().and_then(|c| Some((c, made.next()?)));
        tracing::info!(
            broadcast = %self.live.namespace,
            video = video.as_ref().map_or("none", |(c, _)| c.codec.as_str()),
            audio = audio.as_ref().map_or("none", |(c, _)| c.codec.as_str()),
            "catalog published"
        );
        Tracks { video, audio }
    }
}

/// A resumed broadcast's track must get the configuration it was announced with.
fn check_same(
    what: &'static str,
    existing: Option<&(TrackConfig, Arc<MediaTrack>)>,
    new: Option<&TrackConfig>,
) -> Result<(), MapError> {
    match (existing, new) {
        (Some((old, _)), Some(new)) if old.codec != new.codec || old.description != new.description => {
            Err(MapError::ConfigChanged(what))
        }
        _ => Ok(()),
    }
}
