//! The on-disk recording: one directory per broadcast (`DIR/<namespace path>`), one directory
//! per media track with its init segment, a `.m4s` segment per group, an `index.jsonl` and an
//! HLS media playlist; the broadcast's `recording.json`, `catalog.json`, `master.m3u8` and
//! interaction `timeline.jsonl`. The format is described in docs/recording.md.
//!
//! Crash safety: a segment is written to a dot-prefixed temp file, renamed into place once its
//! group is complete, and only then appended to the index; files rewritten whole (playlists,
//! an index after retention deleted segments) go through a temp file and a rename too. On
//! reopening, a torn last index line is cut off and temp files and segments the index does not
//! name are removed, so the recording continues where the index ends.

use std::collections::{BTreeSet, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use banyan_media::catalog::Catalog;
use banyan_media::fmp4::Muxer;
use banyan_media::{LocFrame, MediaKind, TrackConfig};
use banyan_moq::data::SubgroupObject;
use serde::{Deserialize, Serialize};

/// The broadcast's description file; its presence marks a directory as a recording.
pub const RECORDING_FILE: &str = "recording.json";
/// Each track's segment index: one JSON [`Segment`] per line.
pub const INDEX_FILE: &str = "index.jsonl";
/// Each track's init segment.
pub const INIT_FILE: &str = "init.mp4";
/// Each track's HLS media playlist.
pub const PLAYLIST_FILE: &str = "playlist.m3u8";
/// The broadcast's HLS master playlist.
pub const MASTER_FILE: &str = "master.m3u8";
/// The broadcast's chat, likes, viewers and gifts as they arrived.
pub const TIMELINE_FILE: &str = "timeline.jsonl";
/// The first catalog received.
pub const CATALOG_FILE: &str = "catalog.json";

/// `recording.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordingInfo {
    /// The broadcast (namespace path).
    pub broadcast: String,
    /// Capture time (µs since the Unix epoch) that is media time zero in every segment.
    pub base_us: u64,
    /// When the recording started (ms since the Unix epoch).
    pub started_unix_ms: u64,
    /// Set when every media track ended (the playlists carry `EXT-X-ENDLIST`).
    #[serde(default)]
    pub ended: bool,
    /// The recorded media tracks.
    pub tracks: Vec<TrackInfo>,
}

/// One recorded track in `recording.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrackInfo {
    /// The MoQT track name.
    pub name: String,
    /// `video` or `audio`.
    pub kind: String,
    /// Its directory, relative to the recording.
    pub dir: String,
}

/// One line of a track's `index.jsonl`: one group, one `.m4s` file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// The MoQT group ID.
    pub group: u64,
    /// The segment's number in this track (the HLS media sequence number).
    pub seq: u64,
    /// Its file in the track directory.
    pub file: String,
    /// The file's size.
    pub bytes: u64,
    /// Objects (frames) in the group.
    pub objects: u64,
    /// Capture timestamp of each object, in object order (µs since the Unix epoch).
    pub captures_us: Vec<u64>,
    /// Byte offset in the file of each object's payload (the sample data in `mdat`).
    pub offsets: Vec<u64>,
    /// Decode time of the first sample, µs from the recording's `base_us`.
    pub dts_us: u64,
    /// The segment's duration (sum of its sample durations), µs.
    pub duration_us: u64,
    /// When its last object arrived (ms since the Unix epoch).
    pub received_unix_ms: u64,
}

impl Segment {
    /// Payload bytes of object `i` (its offset to the next one's, or to the end of the file).
    pub fn object_range(&self, i: usize) -> Option<(u64, u64)> {
        let start = *self.offsets.get(i)?;
        let end = self.offsets.get(i + 1).copied().unwrap_or(self.bytes);
        Some((start, end))
    }
}

/// Retention bounds (none by default).
#[derive(Debug, Clone, Default)]
pub struct Retention {
    /// Delete segments whose capture time is older than this.
    pub max_age: Option<Duration>,
    /// Segment bytes of this broadcast.
    pub max_bytes_per_broadcast: Option<u64>,
    /// Bytes of every recording under the root directory.
    pub max_bytes: Option<u64>,
}

/// One recorded track.
#[derive(Debug)]
struct TrackStore {
    name: String,
    kind: MediaKind,
    dir: PathBuf,
    muxer: Muxer,
    segments: VecDeque<Segment>,
    /// Every group recorded (a group the relay sends again is not written twice).
    groups: BTreeSet<u64>,
    next_seq: u64,
    last_dts: Option<u64>,
    last_duration: u32,
    /// The index or playlist needs rewriting (retention removed segments).
    dirty: bool,
}

/// A broadcast's recording, open for writing.
#[derive(Debug)]
pub struct Recording {
    root: PathBuf,
    dir: PathBuf,
    info: RecordingInfo,
    tracks: Vec<TrackStore>,
    timeline: std::fs::File,
    retention: Retention,
    /// Other recordings under `root` and their sizes, and when they were last measured.
    others: Option<(std::time::Instant, Vec<Other>)>,
    /// Segments deleted by retention (this run).
    pub deleted_segments: u64,
    /// Other recordings deleted by `--max-bytes` (this run).
    pub deleted_recordings: u64,
}

/// Another recording under the root.
#[derive(Debug, Clone)]
struct Other {
    dir: PathBuf,
    info: RecordingInfo,
    bytes: u64,
}

/// Other recordings' sizes are measured again after this long.
const OTHERS_RESCAN: Duration = Duration::from_secs(30);

/// A group bigger than this is not recorded (bounds memory per open group).
pub const MAX_GROUP_BYTES: usize = 64 * 1024 * 1024;

/// The directory name of track `name` (`video/720p` becomes `video_720p`).
fn track_dir(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `DIR/<broadcast>`, refusing a broadcast path that would leave `root`.
pub fn recording_dir(root: &Path, broadcast: &str) -> anyhow::Result<PathBuf> {
    let mut dir = root.to_path_buf();
    for part in broadcast.split('/') {
        anyhow::ensure!(
            !part.is_empty() && part != "." && part != ".." && !part.contains('\\'),
            "broadcast {broadcast:?}: a path component is empty, '.', '..' or has a backslash"
        );
        dir.push(part);
    }
    Ok(dir)
}

fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Video => "video",
        MediaKind::Audio => "audio",
    }
}

/// Write `data` to `path` through a temp file beside it and a rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let written = std::fs::write(&tmp, data).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Read a JSON-lines file, cutting off a torn last line (a write cut short by a crash). A
/// malformed complete line is an error.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path, repair: bool) -> anyhow::Result<Vec<T>> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if complete < text.len() && repair {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        f.set_len(complete as u64)
            .with_context(|| format!("truncating the torn last line of {}", path.display()))?;
    }
    let body = text.get(..complete).unwrap_or_default();
    let mut out = Vec::new();
    for (n, line) in body.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        out.push(serde_json::from_slice(line).with_context(|| format!("{} line {}", path.display(), n + 1))?);
    }
    Ok(out)
}

fn append_line(path: &Path, line: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let mut buf = line.to_vec();
    buf.push(b'\n');
    f.write_all(&buf)
}

impl Recording {
    /// Open (or create) the recording of `broadcast` under `root` for the tracks of `catalog`
    /// (its LOC video and audio tracks; synthetic ones are refused). An existing recording is
    /// continued: its tracks' init segments must match the catalog's.
    pub fn open(
        root: &Path,
        broadcast: &str,
        catalog: &Catalog,
        retention: Retention,
    ) -> anyhow::Result<Self> {
        let dir = recording_dir(root, broadcast)?;
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let info_path = dir.join(RECORDING_FILE);
        let existing: Option<RecordingInfo> = match std::fs::read(&info_path) {
            Ok(b) => {
                Some(serde_json::from_slice(&b).with_context(|| format!("parsing {}", info_path.display()))?)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", info_path.display())),
        };
        let mut tracks = Vec::new();
        let mut infos = Vec::new();
        for track in catalog.tracks() {
            let Some(kind) = track.media_kind() else { continue };
            anyhow::ensure!(
                !track.is_synthetic(),
                "track {} is synthetic (filler payload): there is nothing to record",
                track.name
            );
            let config =
                TrackConfig::from_catalog(catalog, track).with_context(|| format!("track {}", track.name))?;
            let name = track_dir(&track.name);
            let tdir = dir.join(&name);
            std::fs::create_dir_all(&tdir).with_context(|| format!("creating {}", tdir.display()))?;
            let muxer = Muxer::new(vec![config]);
            let init = muxer.init_segment().context("the init segment")?;
            let init_path = tdir.join(INIT_FILE);
            match std::fs::read(&init_path) {
                Ok(old) => anyhow::ensure!(
                    old == init.as_ref(),
                    "track {}: its codec configuration differs from the one this recording started with \
                     ({}); record the new stream into another --dir",
                    track.name,
                    init_path.display()
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => write_atomic(&init_path, &init)
                    .with_context(|| format!("writing {}", init_path.display()))?,
                Err(e) => return Err(e).with_context(|| format!("reading {}", init_path.display())),
            }
            let segments = reopen_track(&tdir)?;
            let last = segments.back();
            tracks.push(TrackStore {
                name: track.name.clone(),
                kind,
                groups: segments.iter().map(|s| s.group).collect(),
                next_seq: last.map_or(0, |s| s.seq + 1),
                last_dts: last.map(|s| s.dts_us + s.duration_us.saturating_sub(1)),
                last_duration: 0,
                dir: tdir,
                muxer,
                segments,
                dirty: true,
            });
            infos.push(TrackInfo {
                name: track.name.clone(),
                kind: kind_name(kind).into(),
                dir: name,
            });
        }
        anyhow::ensure!(!tracks.is_empty(), "the catalog has no LOC video or audio track");
        let info = match existing {
            Some(mut info) => {
                for t in infos {
                    if !info.tracks.iter().any(|o| o.name == t.name) {
                        info.tracks.push(t);
                    }
                }
                info.ended = false;
                info
            }
            None => RecordingInfo {
                broadcast: broadcast.to_string(),
                base_us: 0,
                started_unix_ms: banyan_media::loc::unix_micros() / 1000,
                ended: false,
                tracks: infos,
            },
        };
        write_atomic(&dir.join(CATALOG_FILE), &catalog.to_json()).context("writing catalog.json")?;
        let timeline_path = dir.join(TIMELINE_FILE);
        read_jsonl::<serde_json::Value>(&timeline_path, true)?;
        let timeline = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&timeline_path)
            .with_context(|| format!("opening {}", timeline_path.display()))?;
        let mut rec = Self {
            root: root.to_path_buf(),
            dir,
            info,
            tracks,
            timeline,
            retention,
            others: None,
            deleted_segments: 0,
            deleted_recordings: 0,
        };
        rec.save_info()?;
        rec.write_master(catalog)?;
        rec.flush_dirty()?;
        Ok(rec)
    }

    /// Check a catalog received after a reconnect: each recorded track it still has must have
    /// the codec configuration the recording started with (a restarted publisher may encode
    /// differently; its frames cannot go under the old init segment).
    pub fn check_catalog(&self, catalog: &Catalog) -> anyhow::Result<()> {
        for t in &self.tracks {
            let Some(track) = catalog.tracks().iter().find(|c| c.name == t.name) else {
                continue;
            };
            let config =
                TrackConfig::from_catalog(catalog, track).with_context(|| format!("track {}", t.name))?;
            anyhow::ensure!(
                t.muxer.tracks() == [config],
                "track {}: the broadcast's codec configuration changed during the recording; \
                 record the new stream into another --dir",
                t.name
            );
        }
        Ok(())
    }

    /// The recording's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The recorded tracks' names, in order.
    pub fn track_names(&self) -> Vec<String> {
        self.tracks.iter().map(|t| t.name.clone()).collect()
    }

    /// Segments on disk, over all tracks.
    pub fn segments(&self) -> usize {
        self.tracks.iter().map(|t| t.segments.len()).sum()
    }

    /// Segment bytes on disk, over all tracks.
    pub fn bytes(&self) -> u64 {
        self.tracks
            .iter()
            .flat_map(|t| &t.segments)
            .map(|s| s.bytes)
            .sum()
    }

    /// Whether track `track` already has group `group`.
    pub fn has_group(&self, track: usize, group: u64) -> bool {
        self.tracks.get(track).is_some_and(|t| t.groups.contains(&group))
    }

    fn save_info(&self) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(&self.info).context("recording.json")?;
        write_atomic(&self.dir.join(RECORDING_FILE), &json).context("writing recording.json")
    }

    fn write_master(&self, catalog: &Catalog) -> anyhow::Result<()> {
        let mut m = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
        let codec = |name: &str| {
            catalog
                .tracks()
                .iter()
                .find(|t| t.name == name)
                .and_then(|t| t.codec.clone())
                .unwrap_or_default()
        };
        let audio = self.tracks.iter().find(|t| t.kind == MediaKind::Audio);
        if let Some(a) = audio {
            m.push_str(&format!(
                "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"{}\",DEFAULT=YES,AUTOSELECT=YES,URI=\"{}/{PLAYLIST_FILE}\"\n",
                a.name,
                track_dir(&a.name)
            ));
        }
        for v in self.tracks.iter().filter(|t| t.kind == MediaKind::Video) {
            let bitrate = catalog
                .tracks()
                .iter()
                .find(|t| t.name == v.name)
                .and_then(|t| t.bitrate)
                .unwrap_or(2_000_000);
            let mut codecs = codec(&v.name);
            if let Some(a) = audio {
                codecs = format!("{codecs},{}", codec(&a.name));
            }
            m.push_str(&format!(
                "#EXT-X-STREAM-INF:BANDWIDTH={bitrate},CODECS=\"{codecs}\"{}\n{}/{PLAYLIST_FILE}\n",
                if audio.is_some() { ",AUDIO=\"audio\"" } else { "" },
                track_dir(&v.name)
            ));
        }
        write_atomic(&self.dir.join(MASTER_FILE), m.as_bytes()).context("writing master.m3u8")
    }

    /// Write group `group` of track `track` (its objects in order, the last arriving at
    /// `received_unix_ms`) as a segment: temp file, rename, index line, playlist; then apply
    /// retention. `Ok(false)`: not written (already recorded, or not a whole group from object 0).
    pub fn write_group(
        &mut self,
        track: usize,
        group: u64,
        objects: &[SubgroupObject],
        received_unix_ms: u64,
    ) -> anyhow::Result<bool> {
        let base = self.base_us(objects);
        let Some(t) = self.tracks.get_mut(track) else {
            return Ok(false);
        };
        if t.groups.contains(&group) || objects.is_empty() {
            return Ok(false);
        }
        if objects.iter().enumerate().any(|(i, o)| o.object_id != i as u64) {
            tracing::info!(
                track = t.name,
                group,
                "group not whole from object 0; not recorded"
            );
            return Ok(false);
        }
        let mut samples = Vec::with_capacity(objects.len());
        let mut captures = Vec::with_capacity(objects.len());
        for o in objects {
            let frame = LocFrame::from_object(t.kind, o)
                .with_context(|| format!("track {} group {group} object {}", t.name, o.object_id))?;
            captures.push(frame.timestamp_us);
            samples.push(crate::watch::frame_sample(
                frame,
                base,
                &mut t.last_dts,
                1,
                o.object_id == 0,
            ));
        }
        let default_duration = match t.kind {
            MediaKind::Video => 33_333,
            MediaKind::Audio => 20_000,
        };
        for i in 0..samples.len() {
            let next = samples.get(i + 1).map(|s| s.decode_time);
            if let Some(s) = samples.get_mut(i) {
                s.duration = match next {
                    Some(n) => u32::try_from(n.saturating_sub(s.decode_time))
                        .unwrap_or(u32::MAX)
                        .max(1),
                    None if t.last_duration > 0 => t.last_duration,
                    None => default_duration,
                };
                t.last_duration = s.duration;
            }
        }
        let payload: u64 = samples.iter().map(|s| s.data.len() as u64).sum();
        let fragment = t.muxer.fragment(1, &samples)?;
        let mut offset = fragment.len() as u64 - payload;
        let mut offsets = Vec::with_capacity(samples.len());
        for s in &samples {
            offsets.push(offset);
            offset += s.data.len() as u64;
        }
        let file = format!("{group}.m4s");
        let path = t.dir.join(&file);
        write_atomic(&path, &fragment).with_context(|| format!("writing {}", path.display()))?;
        let segment = Segment {
            group,
            seq: t.next_seq,
            file,
            bytes: fragment.len() as u64,
            objects: samples.len() as u64,
            captures_us: captures,
            offsets,
            dts_us: samples.first().map_or(0, |s| s.decode_time),
            duration_us: samples.iter().map(|s| u64::from(s.duration)).sum(),
            received_unix_ms,
        };
        let line = serde_json::to_vec(&segment).context("index line")?;
        let index = t.dir.join(INDEX_FILE);
        append_line(&index, &line).with_context(|| format!("appending to {}", index.display()))?;
        t.next_seq += 1;
        t.groups.insert(group);
        t.segments.push_back(segment);
        write_playlist(t, self.info.ended)?;
        self.enforce_retention()?;
        Ok(true)
    }

    /// The recording's time zero, fixed by the first frame recorded (half a second before it,
    /// so another track's slightly earlier first frame still lands at or after zero).
    fn base_us(&mut self, objects: &[SubgroupObject]) -> u64 {
        if self.info.base_us == 0 {
            let first = objects
                .first()
                .and_then(|o| banyan_media::loc::capture_timestamp(&o.properties));
            if let Some(ts) = first {
                self.info.base_us = ts.saturating_sub(500_000).max(1);
                if let Err(e) = self.save_info() {
                    tracing::warn!(error = %format!("{e:#}"), "saving recording.json");
                }
            }
        }
        self.info.base_us
    }

    /// Append one interaction event to the timeline.
    pub fn timeline(&mut self, event: &serde_json::Value) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(event).context("timeline line")?;
        line.push(b'\n');
        self.timeline
            .write_all(&line)
            .with_context(|| format!("appending to {}", self.dir.join(TIMELINE_FILE).display()))
    }

    /// Every media track ended: close the playlists.
    pub fn end(&mut self) -> anyhow::Result<()> {
        self.info.ended = true;
        self.save_info()?;
        for t in &self.tracks {
            write_playlist(t, true)?;
        }
        Ok(())
    }

    /// Delete the oldest segments (and, for `max_bytes`, whole older recordings) until every
    /// bound holds. A track's newest segment is never deleted.
    fn enforce_retention(&mut self) -> anyhow::Result<()> {
        if let Some(age) = self.retention.max_age {
            let cutoff = banyan_media::loc::unix_micros()
                .saturating_sub(u64::try_from(age.as_micros()).unwrap_or(u64::MAX));
            while self.oldest().is_some_and(|(_, start)| start < cutoff) {
                self.delete_oldest()?;
            }
        }
        if let Some(max) = self.retention.max_bytes_per_broadcast {
            while self.bytes() > max && self.oldest().is_some() {
                self.delete_oldest()?;
            }
        }
        if let Some(max) = self.retention.max_bytes {
            let stale = self
                .others
                .as_ref()
                .is_none_or(|(at, _)| at.elapsed() > OTHERS_RESCAN);
            if stale {
                let others = find_recordings(&self.root, &self.dir);
                self.others = Some((std::time::Instant::now(), others));
            }
            loop {
                let others: u64 = self
                    .others
                    .as_ref()
                    .map_or(0, |(_, o)| o.iter().map(|o| o.bytes).sum());
                if others + self.bytes() <= max {
                    break;
                }
                let oldest_other = self.others.as_mut().and_then(|(_, o)| {
                    let i = o
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, o)| o.info.started_unix_ms)
                        .map(|(i, _)| i)?;
                    Some(o.remove(i))
                });
                if let Some(other) = oldest_other {
                    eprintln!(
                        "record: --max-bytes: deleting the older recording {} ({} bytes)",
                        other.dir.display(),
                        other.bytes
                    );
                    delete_recording(&other)?;
                    self.deleted_recordings += 1;
                } else if self.oldest().is_some() {
                    self.delete_oldest()?;
                } else {
                    break;
                }
            }
        }
        self.flush_dirty()
    }

    /// The track holding the oldest deletable segment and that segment's capture start.
    fn oldest(&self) -> Option<(usize, u64)> {
        self.tracks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.segments.len() > 1)
            .filter_map(|(i, t)| Some((i, *t.segments.front()?.captures_us.first()?)))
            .min_by_key(|&(_, start)| start)
    }

    fn delete_oldest(&mut self) -> anyhow::Result<()> {
        let Some((track, _)) = self.oldest() else {
            return Ok(());
        };
        let Some(t) = self.tracks.get_mut(track) else {
            return Ok(());
        };
        if let Some(s) = t.segments.pop_front() {
            let path = t.dir.join(&s.file);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("deleting {}", path.display())),
            }
            t.dirty = true;
            self.deleted_segments += 1;
        }
        Ok(())
    }

    /// Rewrite the index and playlist of tracks retention changed.
    fn flush_dirty(&mut self) -> anyhow::Result<()> {
        let ended = self.info.ended;
        for t in self.tracks.iter_mut().filter(|t| t.dirty) {
            let mut index = Vec::new();
            for s in &t.segments {
                index.extend(serde_json::to_vec(s).context("index line")?);
                index.push(b'\n');
            }
            let path = t.dir.join(INDEX_FILE);
            write_atomic(&path, &index).with_context(|| format!("writing {}", path.display()))?;
            write_playlist(t, ended)?;
            t.dirty = false;
        }
        Ok(())
    }
}

/// Load a track's index on reopening: cut a torn last line, remove temp files and segments
/// the index does not name (written but not indexed when the recorder died).
fn reopen_track(dir: &Path) -> anyhow::Result<VecDeque<Segment>> {
    let segments: VecDeque<Segment> = read_jsonl(&dir.join(INDEX_FILE), true)?.into();
    let named: BTreeSet<&str> = segments.iter().map(|s| s.file.as_str()).collect();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let stray = (name.starts_with('.') && name.ends_with(".tmp"))
            || (name.ends_with(".m4s") && !named.contains(name));
        if stray {
            tracing::info!(file = name, "removing a file the index does not name");
            std::fs::remove_file(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
        }
    }
    Ok(segments)
}

fn write_playlist(t: &TrackStore, ended: bool) -> anyhow::Result<()> {
    let target = t
        .segments
        .iter()
        .map(|s| s.duration_us.div_ceil(1_000_000))
        .max()
        .unwrap_or(1)
        .max(1);
    let mut p = format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:{}\n#EXT-X-MAP:URI=\"{INIT_FILE}\"\n",
        t.segments.front().map_or(t.next_seq, |s| s.seq)
    );
    for s in &t.segments {
        p.push_str(&format!(
            "#EXTINF:{:.6},\n{}\n",
            s.duration_us as f64 / 1e6,
            s.file
        ));
    }
    if ended {
        p.push_str("#EXT-X-ENDLIST\n");
    }
    let path = t.dir.join(PLAYLIST_FILE);
    write_atomic(&path, p.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// The recordings under `root` other than `own`, with their sizes.
fn find_recordings(root: &Path, own: &Path) -> Vec<Other> {
    let mut found = Vec::new();
    let mut stack = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        if dir != own {
            if let Some(info) = std::fs::read(dir.join(RECORDING_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice::<RecordingInfo>(&b).ok())
            {
                let bytes = recording_files(&dir, &info).iter().map(|p| du(p)).sum();
                found.push(Other {
                    dir: dir.clone(),
                    info,
                    bytes,
                });
            }
        }
        if depth >= 16 {
            continue;
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push((e.path(), depth + 1));
                }
            }
        }
    }
    found
}

/// The files and track directories that make up a recording (not other recordings nested in
/// its directory).
fn recording_files(dir: &Path, info: &RecordingInfo) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = [RECORDING_FILE, CATALOG_FILE, MASTER_FILE, TIMELINE_FILE]
        .iter()
        .map(|f| dir.join(f))
        .collect();
    files.extend(
        info.tracks
            .iter()
            .filter(|t| !t.dir.contains('/') && t.dir != ".." && t.dir != ".")
            .map(|t| dir.join(&t.dir)),
    );
    files
}

/// Bytes under `path` (a file, or a directory's files one level down).
fn du(path: &Path) -> u64 {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => std::fs::read_dir(path)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.metadata().ok())
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

fn delete_recording(other: &Other) -> anyhow::Result<()> {
    // recording.json goes last: a recording interrupted while being deleted is still found.
    let mut files = recording_files(&other.dir, &other.info);
    files.rotate_left(1);
    for path in files {
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("deleting {}", path.display())),
        }
    }
    let _ = std::fs::remove_dir(&other.dir);
    Ok(())
}

/// A recording read back (for export, and later for serving FETCH).
#[derive(Debug)]
pub struct Stored {
    /// `recording.json`.
    pub info: RecordingInfo,
    /// Per track in `info.tracks`: its init segment and its index.
    pub tracks: Vec<(Vec<u8>, Vec<Segment>)>,
    /// The recording's directory.
    pub dir: PathBuf,
}

impl Stored {
    /// Read the recording in `dir` (read-only: a torn last index line is skipped, not cut).
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        let info_path = dir.join(RECORDING_FILE);
        let info: RecordingInfo = serde_json::from_slice(
            &std::fs::read(&info_path)
                .with_context(|| format!("reading {} (is this a recording?)", info_path.display()))?,
        )
        .with_context(|| format!("parsing {}", info_path.display()))?;
        let mut tracks = Vec::new();
        for t in &info.tracks {
            let tdir = dir.join(&t.dir);
            let init = std::fs::read(tdir.join(INIT_FILE))
                .with_context(|| format!("reading {}/{INIT_FILE}", tdir.display()))?;
            tracks.push((init, read_jsonl(&tdir.join(INDEX_FILE), false)?));
        }
        Ok(Self {
            info,
            tracks,
            dir: dir.to_path_buf(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_paths_stay_under_the_root() {
        let root = Path::new("/rec");
        assert_eq!(recording_dir(root, "a/b").unwrap(), Path::new("/rec/a/b"));
        for bad in ["../x", "a/../../x", "a//b", "", "a/."] {
            assert!(recording_dir(root, bad).is_err(), "{bad:?}");
        }
        assert_eq!(track_dir("video/720p"), "video_720p");
        assert_eq!(track_dir("../x"), "___x");
    }

    #[test]
    fn a_torn_last_line_is_cut_and_complete_lines_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        std::fs::write(&path, b"{\"a\":1}\n{\"a\":2}\n{\"a\":").unwrap();
        let read: Vec<serde_json::Value> = read_jsonl(&path, false).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(
            std::fs::read(&path).unwrap().len(),
            21,
            "read-only leaves the file"
        );
        let read: Vec<serde_json::Value> = read_jsonl(&path, true).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\":1}\n{\"a\":2}\n");
        std::fs::write(&path, b"{\"a\":1}\nnot json\n").unwrap();
        assert!(
            read_jsonl::<serde_json::Value>(&path, true).is_err(),
            "a bad complete line is an error"
        );
    }
}
