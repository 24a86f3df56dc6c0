//! `banyan-record export`: a recording's first video and first audio track as one fragmented
//! MP4 (init segment, then each recorded segment re-muxed with its new track ID, in decode-time
//! order across the tracks). It reads one segment at a time, so memory does not grow with the
//! recording's length.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use banyan_media::fmp4::{DemuxEvent, Demuxer, Muxer, Sample, DEFAULT_MAX_BOX_SIZE};
use banyan_media::TrackConfig;

use super::store::{Segment, Stored};

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exported {
    /// Segments read.
    pub segments: u64,
    /// Samples (frames) written.
    pub samples: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// The samples of a recorded segment, read with its track's init segment.
pub fn read_segment(init: &[u8], path: &Path) -> anyhow::Result<(TrackConfig, Vec<Sample>)> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut demuxer = Demuxer::new(DEFAULT_MAX_BOX_SIZE);
    demuxer.push(init);
    demuxer.push(&data);
    let mut config = None;
    let mut samples = Vec::new();
    while let Some(event) = demuxer
        .poll_event()
        .with_context(|| format!("parsing {}", path.display()))?
    {
        match event {
            DemuxEvent::Init(tracks) => config = tracks.into_iter().next().map(|t| t.config),
            DemuxEvent::Sample(s) => samples.push(s),
        }
    }
    demuxer
        .finish()
        .with_context(|| format!("{} is cut short", path.display()))?;
    let config = config.with_context(|| format!("the init segment for {} has no track", path.display()))?;
    Ok((config, samples))
}

/// The track's configuration, from its init segment.
fn init_config(init: &[u8]) -> anyhow::Result<TrackConfig> {
    let mut demuxer = Demuxer::new(DEFAULT_MAX_BOX_SIZE);
    demuxer.push(init);
    while let Some(event) = demuxer.poll_event()? {
        if let DemuxEvent::Init(tracks) = event {
            return tracks
                .into_iter()
                .next()
                .map(|t| t.config)
                .context("an init segment without a track");
        }
    }
    anyhow::bail!("an init segment without a moov")
}

/// Export the recording in `dir` to `output`.
pub fn export(dir: &Path, output: &Path) -> anyhow::Result<Exported> {
    let stored = Stored::read(dir)?;
    // The first video and the first audio track.
    let mut chosen: Vec<usize> = Vec::new();
    for kind in ["video", "audio"] {
        if let Some(i) = stored.info.tracks.iter().position(|t| t.kind == kind) {
            chosen.push(i);
        }
    }
    anyhow::ensure!(!chosen.is_empty(), "{}: no video or audio track", dir.display());
    let mut configs = Vec::new();
    let mut cursors: Vec<(&[u8], &[Segment], usize, std::path::PathBuf)> = Vec::new();
    for &i in &chosen {
        let (Some(info), Some((init, segments))) = (stored.info.tracks.get(i), stored.tracks.get(i)) else {
            continue;
        };
        configs.push(init_config(init).with_context(|| format!("track {}", info.name))?);
        cursors.push((init.as_slice(), segments.as_slice(), 0, dir.join(&info.dir)));
    }
    let total: usize = cursors.iter().map(|c| c.1.len()).sum();
    anyhow::ensure!(total > 0, "{}: the recording has no segments", dir.display());
    let mut muxer = Muxer::new(configs);
    let file = std::fs::File::create(output).with_context(|| format!("creating {}", output.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let mut done = Exported::default();
    let init = muxer.init_segment()?;
    out.write_all(&init).context("writing the export")?;
    done.bytes += init.len() as u64;
    loop {
        // The segment that starts first among the tracks' next ones.
        let next = cursors
            .iter()
            .enumerate()
            .filter_map(|(t, (_, segments, at, _))| Some((t, segments.get(*at)?.dts_us)))
            .min_by_key(|&(_, dts)| dts);
        let Some((t, _)) = next else { break };
        let Some((init, segments, at, tdir)) = cursors.get_mut(t) else {
            break;
        };
        let Some(segment) = segments.get(*at) else { break };
        *at += 1;
        let (_, mut samples) = read_segment(init, &tdir.join(&segment.file))?;
        if samples.is_empty() {
            continue;
        }
        let track_id = u32::try_from(t + 1).unwrap_or(1);
        for s in &mut samples {
            s.track_id = track_id;
        }
        let fragment = muxer.fragment(track_id, &samples)?;
        out.write_all(&fragment).context("writing the export")?;
        done.segments += 1;
        done.samples += samples.len() as u64;
        done.bytes += fragment.len() as u64;
    }
    out.flush().context("writing the export")?;
    Ok(done)
}
