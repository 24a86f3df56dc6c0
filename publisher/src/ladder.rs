//! The rendition ladder (`banyan-publish --ladder`): one ffmpeg process decodes the input once
//! and encodes every rendition with aligned keyframes; each rendition is its own video track.
//!
//! # How the renditions get out of ffmpeg
//! Each rendition (and the audio, encoded once) is its own ffmpeg output, fragmented MP4 written
//! to a Unix socket (`unix:` protocol) that the publisher listens on in a private temporary
//! directory, one socket per output. The sockets exist before ffmpeg starts, so there is no race
//! (a FIFO would need `mkfifo`, extra file descriptors `pipe:3…` would need `unsafe` code around
//! `fork`), each output is identified by its socket rather than by accept order, and the end of
//! ffmpeg shows as end-of-stream on every socket. Audio is an output of its own: muxed beside a
//! rendition, the MP4 muxer would shift that rendition's timestamps for the Opus pre-skip and
//! break the alignment.
//!
//! # Alignment
//! ffmpeg normalises the frame rate (`fps` filter) before one `split`, and every encoder gets the
//! same frames and the same fixed GOP (`-g` = `-keyint_min`, `-sc_threshold 0`, closed GOP,
//! no B-frames under `-tune zerolatency`): keyframes fall on the same presentation times in every
//! rendition. The publisher then numbers groups by keyframe presentation time, not by arrival:
//! the first rendition to reach a keyframe takes the next group ID and stamps its capture
//! timestamp ([`GroupAligner`]); every other rendition's keyframe at the same presentation time
//! gets that same ID and timestamp, and its later frames are stamped relative to it. So group N
//! of every rendition starts at the same keyframe with the same LOC timestamp. (Audio frames
//! are stamped by the pacing clock directly; when it re-anchors after a stall of the input,
//! video follows at the next keyframe, so audio and video may differ by that stall for up to
//! one GOP.)
//!
//! ffmpeg starts each output file's timeline at zero, so every output is padded to start at
//! the input's time zero (`fps=start_time=0` repeats the first picture, `aresample` with
//! `first_pts=0` prepends silence): otherwise audio that begins a second into the input would
//! be stamped a second early. For the same reason (one output's frames can come before another
//! output's header), each output is read on, up to [`MAX_PENDING`] bytes, until every init
//! segment is in and the catalog can be published.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use banyan_media::catalog::Catalog;
use banyan_media::fmp4::{DemuxEvent, DemuxTrack, Demuxer, Sample};
use banyan_media::{LocFrame, MediaKind};
use parking_lot::Mutex;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::process::Command;

use crate::broadcast::{Broadcast, MediaTrack, Published};
use crate::source::{Clock, AUDIO_GROUP, AUDIO_PRIORITY, VIDEO_PRIORITY};

/// The `altGroup` every video rendition shares in the catalog.
pub const VIDEO_ALT_GROUP: u64 = 1;
/// Opus bitrate of the ladder's audio (encoded once).
pub const AUDIO_BITRATE: u64 = 128_000;
/// At most this many renditions.
pub const MAX_RENDITIONS: usize = 8;
/// Keyframes of two renditions within this many µs of each other are the same keyframe
/// (their MP4 timescales may differ; the conversion to µs rounds).
pub const ALIGN_TOLERANCE_US: u64 = 1_000;
/// Keyframes the aligner remembers (a rendition may lag the others by this many groups).
const REMEMBERED_KEYFRAMES: usize = 64;

/// One rendition: a name (its track is `video/<name>`), a size and a target bitrate.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rendition {
    /// `[A-Za-z0-9_-]+`, unique in the ladder.
    pub name: String,
    /// Width in pixels (even).
    pub width: u32,
    /// Height in pixels (even).
    pub height: u32,
    /// Bits per second (`-b:v`, also `-maxrate`; the catalog's `bitrate`).
    #[serde(deserialize_with = "rate")]
    pub bitrate: u64,
}

/// The presets `--ladder` names: (name, width, height, bits per second).
pub const PRESETS: &[(&str, u32, u32, u64)] = &[
    ("1080p", 1920, 1080, 5_000_000),
    ("720p", 1280, 720, 2_500_000),
    ("480p", 854, 480, 1_200_000),
    ("360p", 640, 360, 800_000),
    ("240p", 426, 240, 400_000),
];

impl Rendition {
    /// The track that carries it.
    pub fn track_name(&self) -> String {
        format!("video/{}", self.name)
    }
}

/// Parse `--ladder`: a path ending in `.toml` (`[[rendition]]` tables with `name`, `width`,
/// `height`, `bitrate`), else a comma list of [`PRESETS`]. The renditions come back highest
/// bitrate first (the order of the catalog: players that take the first video track take the
/// best).
pub fn parse_ladder(spec: &str) -> anyhow::Result<Vec<Rendition>> {
    let spec = spec.trim();
    let renditions = if spec.ends_with(".toml") {
        let text = std::fs::read_to_string(spec).with_context(|| format!("--ladder: reading {spec}"))?;
        parse_ladder_toml(&text).with_context(|| format!("--ladder {spec}"))?
    } else {
        spec.split(',')
            .map(|name| preset(name.trim()))
            .collect::<anyhow::Result<Vec<_>>>()
            .context("--ladder")?
    };
    validate(renditions).context("--ladder")
}

/// Parse a TOML ladder (`[[rendition]]` tables); not yet validated.
pub fn parse_ladder_toml(text: &str) -> anyhow::Result<Vec<Rendition>> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        rendition: Vec<Rendition>,
    }
    let file: File =
        toml::from_str(text).context("not a ladder ([[rendition]] name/width/height/bitrate)")?;
    Ok(file.rendition)
}

fn preset(name: &str) -> anyhow::Result<Rendition> {
    PRESETS
        .iter()
        .find(|(n, ..)| *n == name)
        .map(|&(n, width, height, bitrate)| Rendition {
            name: n.to_string(),
            width,
            height,
            bitrate,
        })
        .ok_or_else(|| {
            let known: Vec<&str> = PRESETS.iter().map(|(n, ..)| *n).collect();
            anyhow::anyhow!(
                "unknown rendition preset {name:?} (presets: {}; or a .toml file)",
                known.join(", ")
            )
        })
}

fn validate(mut renditions: Vec<Rendition>) -> anyhow::Result<Vec<Rendition>> {
    ensure!(!renditions.is_empty(), "the ladder has no rendition");
    ensure!(
        renditions.len() <= MAX_RENDITIONS,
        "at most {MAX_RENDITIONS} renditions, not {}",
        renditions.len()
    );
    for (i, r) in renditions.iter().enumerate() {
        ensure!(
            !r.name.is_empty()
                && r.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "rendition name {:?}: use letters, digits, - and _",
            r.name
        );
        ensure!(
            renditions.iter().skip(i + 1).all(|o| o.name != r.name),
            "duplicate rendition name {:?}",
            r.name
        );
        ensure!(
            (2..=8192).contains(&r.width)
                && (2..=8192).contains(&r.height)
                && r.width % 2 == 0
                && r.height % 2 == 0,
            "rendition {}: {}x{} must be even sizes from 2 to 8192",
            r.name,
            r.width,
            r.height
        );
        ensure!(r.bitrate >= 10_000, "rendition {}: bitrate below 10k", r.name);
    }
    renditions.sort_by_key(|r| std::cmp::Reverse(r.bitrate));
    Ok(renditions)
}

fn rate<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Rate {
        Bits(u64),
        Text(String),
    }
    match Rate::deserialize(d)? {
        Rate::Bits(b) => Ok(b),
        Rate::Text(t) => crate::cli::parse_rate(&t).map_err(serde::de::Error::custom),
    }
}

/// Options of the ladder source.
#[derive(Debug, Clone)]
pub struct LadderOptions {
    /// The renditions, highest bitrate first.
    pub renditions: Vec<Rendition>,
    /// ffmpeg's input (`-` = stdin, a file, a URL or a lavfi graph).
    pub input: String,
    /// ffmpeg's input format (`-f`), e.g. `lavfi`.
    pub input_format: Option<String>,
    /// Loop the input (`-stream_loop -1`).
    pub looped: bool,
    /// Output frame rate (the `fps` filter): every rendition has it.
    pub fps: f64,
    /// Frames per GOP (and group), the same for every rendition.
    pub gop: u64,
    /// Hold the media until every track has been subscribed once.
    pub wait_subscribers: bool,
    /// The ffmpeg and ffprobe programs.
    pub ffmpeg: String,
    /// See `ffmpeg`.
    pub ffprobe: String,
}

impl LadderOptions {
    /// The ffmpeg command line writing rendition `i` to `sockets[i]` and, when `audio` is
    /// given, the input's first audio stream (Opus) to that socket.
    pub fn ffmpeg_args(&self, sockets: &[PathBuf], audio: Option<&Path>) -> Vec<String> {
        let mut a: Vec<String> = ["-hide_banner", "-loglevel", "error", "-nostats"]
            .map(String::from)
            .to_vec();
        if self.input != "-" {
            a.push("-nostdin".into());
        }
        if self.looped {
            a.extend(["-stream_loop".into(), "-1".into()]);
        }
        if let Some(f) = &self.input_format {
            a.extend(["-f".into(), f.clone()]);
        }
        a.extend(["-i".into(), self.input.clone()]);
        let n = self.renditions.len();
        let mut graph = format!(
            "[0:v:0]fps=fps={}:start_time=0,format=yuv420p,split={n}",
            self.fps
        );
        for i in 0..n {
            graph.push_str(&format!("[s{i}]"));
        }
        for (i, r) in self.renditions.iter().enumerate() {
            graph.push_str(&format!(";[s{i}]scale={}:{},setsar=1[v{i}]", r.width, r.height));
        }
        a.extend(["-filter_complex".into(), graph]);
        let gop = self.gop.to_string();
        for (i, (r, socket)) in self.renditions.iter().zip(sockets).enumerate() {
            let rate = r.bitrate.to_string();
            a.extend([
                "-map".into(),
                format!("[v{i}]"),
                "-c:v".into(),
                "libx264".into(),
                "-preset".into(),
                "veryfast".into(),
                "-tune".into(),
                "zerolatency".into(),
                "-b:v".into(),
                rate.clone(),
                "-maxrate".into(),
                rate.clone(),
                "-bufsize".into(),
                rate,
                "-g".into(),
                gop.clone(),
                "-keyint_min".into(),
                gop.clone(),
                "-sc_threshold".into(),
                "0".into(),
                "-flags".into(),
                "+cgop".into(),
                "-bf".into(),
                "0".into(),
            ]);
            a.extend(fmp4_output(socket));
        }
        if let Some(socket) = audio {
            a.extend(
                [
                    "-map",
                    "0:a:0",
                    "-af",
                    "aresample=async=1:first_pts=0",
                    "-c:a",
                    "libopus",
                    "-b:a",
                ]
                .map(String::from)
                .to_vec(),
            );
            a.push(AUDIO_BITRATE.to_string());
            a.extend(fmp4_output(socket));
        }
        a
    }
}

fn fmp4_output(socket: &Path) -> Vec<String> {
    vec![
        "-f".into(),
        "mp4".into(),
        "-movflags".into(),
        "frag_keyframe+empty_moov+default_base_moof+frag_every_frame".into(),
        "-flush_packets".into(),
        "1".into(),
        format!("unix:{}", socket.display()),
    ]
}

/// Run ffmpeg for the ladder and publish its renditions (and audio) into `broadcast` until the
/// input ends (then end the broadcast).
pub async fn run_ladder(options: LadderOptions, broadcast: Arc<Broadcast>) -> anyhow::Result<()> {
    let result = ladder_inner(&options, &broadcast).await;
    broadcast.end();
    result
}

async fn ladder_inner(options: &LadderOptions, broadcast: &Arc<Broadcast>) -> anyhow::Result<()> {
    let audio = options.input != "-" && has_audio(options).await?;
    let dir = tempfile::Builder::new()
        .prefix("banyan-ladder-")
        .tempdir()
        .context("creating the ladder's socket directory")?;
    let mut sockets: Vec<PathBuf> = (0..options.renditions.len())
        .map(|i| dir.path().join(format!("{i}.sock")))
        .collect();
    if audio {
        sockets.push(dir.path().join("audio.sock"));
    }
    let listeners = sockets
        .iter()
        .map(|p| UnixListener::bind(p).with_context(|| format!("listening on {}", p.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let video_sockets = sockets.get(..options.renditions.len()).unwrap_or_default();
    let args = options.ffmpeg_args(
        video_sockets,
        audio.then(|| sockets.last()).flatten().map(PathBuf::as_path),
    );
    tracing::debug!(?args, "ffmpeg");
    let mut child = Command::new(&options.ffmpeg)
        .args(&args)
        .stdin(if options.input == "-" {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (--ladder needs ffmpeg with libx264 and libopus)",
                options.ffmpeg
            )
        })?;
    // ffmpeg's stderr (errors only: `-loglevel error`) goes to ours; its last lines explain
    // a failure.
    let stderr = child.stderr.take();
    let mut errors = tokio::spawn(async move {
        let mut tail = VecDeque::new();
        let Some(stderr) = stderr else { return tail };
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("ffmpeg: {line}");
            if tail.len() == 8 {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        tail
    });
    let ffmpeg_failed = |status: std::process::ExitStatus| async move {
        // ffmpeg has exited: its stderr ends at once (bounded, in case a child of it kept it).
        let tail = tokio::time::timeout(Duration::from_secs(2), &mut errors)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        anyhow::anyhow!("ffmpeg exited with {status}: {}", Vec::from(tail).join(" | "))
    };
    let outputs = publish_outputs(options, broadcast, listeners, audio);
    tokio::pin!(outputs);
    tokio::select! {
        r = &mut outputs => {
            // Every output ended (or one failed: dropping the child kills ffmpeg).
            r?;
            let status = child.wait().await.context("waiting for ffmpeg")?;
            if !status.success() {
                return Err(ffmpeg_failed(status).await);
            }
            Ok(())
        }
        status = child.wait() => {
            let status = status.context("waiting for ffmpeg")?;
            if !status.success() {
                return Err(ffmpeg_failed(status).await);
            }
            // ffmpeg is done; its outputs drain to their ends.
            outputs.await
        }
    }
}

/// Whether the input has an audio stream (ffprobe; not asked of stdin, which it would consume).
async fn has_audio(options: &LadderOptions) -> anyhow::Result<bool> {
    let mut probe = Command::new(&options.ffprobe);
    probe.args(["-v", "error"]);
    if let Some(f) = &options.input_format {
        probe.args(["-f", f]);
    }
    let out = probe
        .args([
            "-select_streams",
            "a",
            "-show_entries",
            "stream=index",
            "-of",
            "csv=p=0",
        ])
        .arg(&options.input)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| {
            format!(
                "starting {} (--ladder probes its input for audio)",
                options.ffprobe
            )
        })?;
    if !out.status.success() {
        bail!(
            "ffprobe could not read the input {:?}: {}",
            options.input,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(!out.stdout.iter().all(u8::is_ascii_whitespace))
}

/// One connected ffmpeg output, read up to its init segment.
struct Output {
    index: usize,
    stream: UnixStream,
    demuxer: Demuxer,
    tracks: Vec<DemuxTrack>,
}

/// Accept every output, publish the catalog once all init segments are in, then publish each
/// output's samples (paced by one shared clock) until they all end.
async fn publish_outputs(
    options: &LadderOptions,
    broadcast: &Arc<Broadcast>,
    listeners: Vec<UnixListener>,
    audio: bool,
) -> anyhow::Result<()> {
    // Each output is read up to its init segment, and on (buffered, bounded) until every
    // output has sent its own: ffmpeg may write one output's frames before another's header
    // (an input whose audio starts late), and would block on a socket nobody reads.
    let count = listeners.len();
    let (init_tx, mut init_rx) = tokio::sync::mpsc::channel::<()>(count.max(1));
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(false);
    let mut set = tokio::task::JoinSet::new();
    for (index, listener) in listeners.into_iter().enumerate() {
        let (init_tx, ready_rx) = (init_tx.clone(), ready_rx.clone());
        set.spawn(read_init(index, listener, init_tx, ready_rx));
    }
    let mut inits_in = 0;
    while inits_in < count {
        tokio::select! {
            Some(()) = init_rx.recv() => inits_in += 1,
            Some(joined) = set.join_next() => {
                // An output task ends before every init only when it failed.
                joined.context("ladder output task")??;
                bail!("an ffmpeg output ended before every output's init segment");
            }
        }
    }
    let _ = ready_tx.send(true);
    let mut outputs = Vec::new();
    while let Some(joined) = set.join_next().await {
        outputs.push(joined.context("ladder output task")??);
    }
    outputs.sort_by_key(|o| o.index);

    // The catalog: the renditions (highest bitrate first), then the audio.
    let mut catalog_tracks = Vec::new();
    let mut inits = Vec::new();
    let mut per_output: Vec<Vec<(u32, Arc<MediaTrack>)>> = Vec::new();
    let mut all_tracks = Vec::new();
    for output in &outputs {
        let rendition = options.renditions.get(output.index);
        let mut producers = Vec::new();
        for t in &output.tracks {
            let config = &t.config;
            let (name, priority) = match (config.kind, rendition, audio) {
                (MediaKind::Video, Some(r), _) => (r.track_name(), VIDEO_PRIORITY),
                (MediaKind::Audio, None, true) => ("audio".to_string(), AUDIO_PRIORITY),
                _ => bail!(
                    "ffmpeg output {} has an unexpected {:?} track",
                    output.index,
                    config.kind
                ),
            };
            let mut track = config.catalog_track(&name);
            match rendition {
                Some(r) => {
                    track.alt_group = Some(VIDEO_ALT_GROUP);
                    track.label = Some(r.name.clone());
                    track.bitrate = Some(r.bitrate);
                    track.framerate = Some(options.fps);
                    track.max_gop_duration = Some((options.gop as f64 * 1000.0 / options.fps).round() as u64);
                }
                None => track.bitrate = Some(AUDIO_BITRATE),
            }
            inits.push(config.description.clone());
            catalog_tracks.push(track);
            let producer = Arc::new(MediaTrack::new(
                &name,
                config.kind,
                config.description.clone(),
                priority,
                broadcast.first_group,
            ));
            all_tracks.push(producer.clone());
            producers.push((t.track_id, producer));
        }
        per_output.push(producers);
    }
    let mut catalog = Catalog::live(catalog_tracks);
    for (i, init) in inits.iter().enumerate() {
        if let Some(d) = init {
            catalog.set_init_data(i, d);
        }
    }
    broadcast.publish(Published {
        catalog,
        tracks: all_tracks.clone(),
    });
    if options.wait_subscribers {
        eprintln!("publish: waiting for every track to be subscribed");
        for t in &all_tracks {
            t.first_subscription().await;
        }
    }

    let shared = Arc::new(Shared {
        clock: Mutex::new(None),
        aligner: GroupAligner::new(broadcast.first_group),
    });
    let mut set = tokio::task::JoinSet::new();
    for (output, producers) in outputs.into_iter().zip(per_output) {
        set.spawn(publish_output(output, producers, shared.clone()));
    }
    while let Some(joined) = set.join_next().await {
        joined.context("ladder output task")??;
    }
    Ok(())
}

/// Bytes an output may buffer while the others' init segments are awaited.
pub const MAX_PENDING: usize = 16 << 20;

/// Accept output `index` and read it up to its init segment (then tell `init`), and on
/// (buffering up to [`MAX_PENDING`] bytes) until `ready`.
async fn read_init(
    index: usize,
    listener: UnixListener,
    init: tokio::sync::mpsc::Sender<()>,
    mut ready: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Output> {
    let (mut stream, _) = listener.accept().await.context("accepting ffmpeg's output")?;
    let mut demuxer = Demuxer::default();
    let mut buf = vec![0u8; 64 * 1024];
    let tracks = loop {
        if let Some(event) = demuxer.poll_event().context("reading ffmpeg's fragmented MP4")? {
            match event {
                DemuxEvent::Init(tracks) => break tracks,
                DemuxEvent::Sample(_) => bail!("ffmpeg output {index}: a sample before its init segment"),
            }
        }
        let n = stream.read(&mut buf).await.context("reading ffmpeg's output")?;
        ensure!(n > 0, "ffmpeg output {index} ended before its init segment");
        demuxer.push(buf.get(..n).unwrap_or_default());
    };
    let _ = init.send(()).await;
    let mut pending = 0;
    let mut open = true;
    while open && pending < MAX_PENDING {
        tokio::select! {
            _ = ready.wait_for(|r| *r) => break,
            n = stream.read(&mut buf) => {
                let n = n.context("reading ffmpeg's output")?;
                open = n > 0;
                pending += n;
                demuxer.push(buf.get(..n).unwrap_or_default());
            }
        }
    }
    let _ = ready.wait_for(|r| *r).await;
    Ok(Output {
        index,
        stream,
        demuxer,
        tracks,
    })
}

/// What the outputs share: the pacing clock and the group numbering.
struct Shared {
    clock: Mutex<Option<Clock>>,
    aligner: GroupAligner,
}

/// Per track of an output: the group being written.
#[derive(Default)]
struct TrackState {
    /// Video: the keyframe the current group started with.
    keyframe: Option<Keyframe>,
    /// Audio: the presentation time the current group started at.
    audio_start: Option<u64>,
}

async fn publish_output(
    mut output: Output,
    producers: Vec<(u32, Arc<MediaTrack>)>,
    shared: Arc<Shared>,
) -> anyhow::Result<()> {
    let mut states: Vec<TrackState> = producers.iter().map(|_| TrackState::default()).collect();
    let mut buf = vec![0u8; 64 * 1024];
    let mut unaligned_warned = false;
    loop {
        while let Some(event) = output
            .demuxer
            .poll_event()
            .context("reading ffmpeg's fragmented MP4")?
        {
            let DemuxEvent::Sample(sample) = event else {
                continue;
            };
            let Some(index) = producers.iter().position(|(id, _)| *id == sample.track_id) else {
                continue;
            };
            let (Some((_, producer)), Some(state)) = (producers.get(index), states.get_mut(index)) else {
                continue;
            };
            let dts = sample.decode_time_us();
            let due = {
                let mut clock = shared.clock.lock();
                clock.get_or_insert_with(|| Clock::start(dts)).observe(dts)
            };
            if let Some(due) = due {
                tokio::time::sleep_until(due).await;
            }
            let stamp = |pts| {
                shared
                    .clock
                    .lock()
                    .as_ref()
                    .map_or(0, |c: &Clock| c.timestamp(pts))
            };
            write_sample(
                producer,
                state,
                &shared.aligner,
                sample,
                stamp,
                &mut unaligned_warned,
            );
        }
        let n = output
            .stream
            .read(&mut buf)
            .await
            .context("reading ffmpeg's output")?;
        if n == 0 {
            break;
        }
        output.demuxer.push(buf.get(..n).unwrap_or_default());
    }
    output
        .demuxer
        .finish()
        .context("reading ffmpeg's fragmented MP4")?;
    Ok(())
}

/// Write one sample of an output into its track: video groups start at keyframes, numbered
/// and stamped by the aligner; audio groups every [`AUDIO_GROUP`] of media time.
fn write_sample(
    producer: &MediaTrack,
    state: &mut TrackState,
    aligner: &GroupAligner,
    sample: Sample,
    stamp: impl Fn(u64) -> u64,
    unaligned_warned: &mut bool,
) {
    let dts = sample.decode_time_us();
    let pts = sample.presentation_time_us();
    let decode_offset_us = pts.saturating_sub(dts);
    match producer.kind {
        MediaKind::Video => {
            let mut group = None;
            if sample.keyframe {
                match aligner.keyframe(pts, || stamp(pts)) {
                    Some(k) if state.keyframe.is_none_or(|c| k.group > c.group) => {
                        group = Some(k.group);
                        state.keyframe = Some(k);
                    }
                    Some(_) => {}
                    None if !*unaligned_warned => {
                        *unaligned_warned = true;
                        tracing::warn!(track = %producer.name, pts, "a keyframe no other rendition has; continuing the group");
                    }
                    None => {}
                }
            }
            let Some(k) = state.keyframe else {
                return; // before the first group
            };
            let timestamp_us = k.timestamp_us.saturating_add(pts).saturating_sub(k.pts_us);
            let frame = LocFrame {
                timestamp_us,
                decode_offset_us,
                config: None,
                payload: sample.data,
            };
            producer.write_in(frame, group);
        }
        MediaKind::Audio => {
            let new_group = match state.audio_start {
                Some(start) if pts < start + AUDIO_GROUP.as_micros() as u64 => false,
                _ => {
                    state.audio_start = Some(pts);
                    true
                }
            };
            let frame = LocFrame {
                timestamp_us: stamp(pts),
                decode_offset_us,
                config: None,
                payload: sample.data,
            };
            producer.write(frame, new_group);
        }
    }
}

/// A keyframe as the aligner numbered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyframe {
    /// Presentation time, µs of media time.
    pub pts_us: u64,
    /// The group it starts in every rendition.
    pub group: u64,
    /// Its LOC capture timestamp, µs since the Unix epoch.
    pub timestamp_us: u64,
}

/// Group numbering shared by a ladder's renditions: a keyframe's group ID and capture
/// timestamp follow from its presentation time, whichever rendition reaches it first.
#[derive(Debug)]
pub struct GroupAligner {
    state: Mutex<(u64, VecDeque<Keyframe>)>,
}

impl GroupAligner {
    /// Numbering from `first_group` (the broadcast's first group ID).
    pub fn new(first_group: u64) -> Self {
        Self {
            state: Mutex::new((first_group, VecDeque::new())),
        }
    }

    /// The keyframe at `pts_us`: the one another rendition already reached at the same
    /// presentation time (within [`ALIGN_TOLERANCE_US`]), else, if it is newer than every
    /// keyframe seen, the next group ID with the capture timestamp `stamp()`. `None` for a
    /// keyframe older than the newest that matches none (not aligned with the others).
    pub fn keyframe(&self, pts_us: u64, stamp: impl FnOnce() -> u64) -> Option<Keyframe> {
        let mut state = self.state.lock();
        let (next, recent) = &mut *state;
        if let Some(k) = recent
            .iter()
            .find(|k| k.pts_us.abs_diff(pts_us) <= ALIGN_TOLERANCE_US)
        {
            return Some(*k);
        }
        if recent.back().is_some_and(|k| k.pts_us > pts_us) {
            return None;
        }
        let k = Keyframe {
            pts_us,
            group: *next,
            timestamp_us: stamp(),
        };
        *next += 1;
        if recent.len() == REMEMBERED_KEYFRAMES {
            recent.pop_front();
        }
        recent.push_back(k);
        Some(k)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn presets_and_lists_parse_highest_bitrate_first() {
        let l = parse_ladder("360p, 720p").unwrap();
        let names: Vec<&str> = l.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["720p", "360p"]);
        assert_eq!((l[0].width, l[0].height, l[0].bitrate), (1280, 720, 2_500_000));
        assert_eq!(l[1].track_name(), "video/360p");
    }

    #[test]
    fn bad_ladders_say_why() {
        let err = |spec: &str| format!("{:#}", parse_ladder(spec).unwrap_err());
        assert!(
            err("720p,4k").contains("unknown rendition preset \"4k\""),
            "{}",
            err("720p,4k")
        );
        assert!(err("720p,720p").contains("duplicate rendition name \"720p\""));
        assert!(err("").contains("unknown rendition preset \"\""));
        assert!(err("/nonexistent/ladder.toml").contains("reading /nonexistent/ladder.toml"));
    }

    #[test]
    fn toml_ladders_parse_and_validate() {
        let text = r#"
            [[rendition]]
            name = "small"
            width = 320
            height = 180
            bitrate = "300k"

            [[rendition]]
            name = "big"
            width = 640
            height = 360
            bitrate = 900000
        "#;
        let l = validate(parse_ladder_toml(text).unwrap()).unwrap();
        assert_eq!(l[0].name, "big");
        assert_eq!(l[1].bitrate, 300_000);
        assert!(
            parse_ladder_toml("[[rendition]]\nname = \"x\"\nwidth = 2").is_err(),
            "missing fields"
        );
        assert!(
            parse_ladder_toml("[[rendition]]\nname = \"x\"\nwidth = 2\nheight = 2\nbitrate = \"fast\"")
                .is_err()
        );
        assert!(parse_ladder_toml("not toml [").is_err());
        let odd = Rendition {
            name: "odd".into(),
            width: 321,
            height: 180,
            bitrate: 300_000,
        };
        assert!(format!("{:#}", validate(vec![odd]).unwrap_err()).contains("even"));
        let slash = Rendition {
            name: "a/b".into(),
            width: 320,
            height: 180,
            bitrate: 300_000,
        };
        assert!(validate(vec![slash]).is_err());
    }

    #[test]
    fn ffmpeg_gets_one_split_and_equal_gops() {
        let options = LadderOptions {
            renditions: parse_ladder("720p,360p").unwrap(),
            input: "in.mp4".into(),
            input_format: None,
            looped: true,
            fps: 30.0,
            gop: 60,
            wait_subscribers: false,
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
        };
        let sockets = [PathBuf::from("/t/0.sock"), PathBuf::from("/t/1.sock")];
        let args = options.ffmpeg_args(&sockets, Some(Path::new("/t/audio.sock")));
        let joined = args.join(" ");
        assert!(joined.contains("-nostdin -stream_loop -1 -i in.mp4"), "{joined}");
        assert!(joined.contains(
            "[0:v:0]fps=fps=30:start_time=0,format=yuv420p,split=2[s0][s1];[s0]scale=1280:720,setsar=1[v0];[s1]scale=640:360,setsar=1[v1]"
        ));
        assert_eq!(args.iter().filter(|a| *a == "-keyint_min").count(), 2);
        assert_eq!(joined.matches("-g 60 -keyint_min 60 -sc_threshold 0").count(), 2);
        assert!(joined.contains("-b:v 2500000 -maxrate 2500000"));
        assert!(joined.ends_with("-map 0:a:0 -af aresample=async=1:first_pts=0 -c:a libopus -b:a 128000 -f mp4 -movflags frag_keyframe+empty_moov+default_base_moof+frag_every_frame -flush_packets 1 unix:/t/audio.sock"));
        assert!(joined.contains("unix:/t/0.sock -map [v1]"));
    }

    #[test]
    fn keyframes_at_one_time_share_a_group_and_timestamp() {
        let a = GroupAligner::new(100);
        let k0 = a.keyframe(0, || 5_000).unwrap();
        assert_eq!((k0.group, k0.timestamp_us), (100, 5_000));
        // Another rendition's keyframe at the same time (rounded differently): the same.
        assert_eq!(a.keyframe(400, || 9), Some(k0));
        let k1 = a.keyframe(1_000_000, || 1_005_000).unwrap();
        assert_eq!(k1.group, 101);
        // A lagging rendition still finds the older keyframe.
        assert_eq!(a.keyframe(0, || 7), Some(k0));
        // A keyframe between known ones matches none: not aligned.
        assert_eq!(a.keyframe(500_000, || 7), None);
        assert_eq!(a.keyframe(2_000_000, || 2_005_000).unwrap().group, 102);
    }

    #[test]
    fn renditions_write_the_same_groups() {
        let aligner = GroupAligner::new(10);
        let tracks = [
            MediaTrack::new("video/a", MediaKind::Video, None, 1, 10),
            MediaTrack::new("video/b", MediaKind::Video, None, 1, 10),
        ];
        let mut states = [TrackState::default(), TrackState::default()];
        let sample = |t_us: u64, keyframe| Sample {
            track_id: 1,
            timescale: 1_000_000,
            decode_time: t_us,
            composition_offset: 0,
            duration: 33_333,
            keyframe,
            data: bytes::Bytes::from_static(b"x"),
        };
        let mut warned = false;
        // Rendition b lags a by a frame; its keyframe at 0 arrives after a's.
        for (i, (t, key)) in [(0, true), (33_333, false), (66_666, true)]
            .into_iter()
            .enumerate()
        {
            for (r, track) in tracks.iter().enumerate() {
                let stamp = |pts| 1_000 + pts + r as u64 * 7 + i as u64;
                write_sample(
                    track,
                    &mut states[r],
                    &aligner,
                    sample(t, key),
                    stamp,
                    &mut warned,
                );
            }
        }
        for (r, s) in states.iter().enumerate() {
            let k = s.keyframe.unwrap();
            assert_eq!(
                (k.group, k.pts_us, k.timestamp_us),
                (11, 66_666, 1_000 + 66_666 + 2),
                "rendition {r}"
            );
        }
        assert_eq!(tracks[0].current_group(), Some(11));
        assert_eq!(tracks[1].current_group(), Some(11));
        assert!(!warned);
    }
}
