//! The command lines of `banyan-publish` and `banyan-watch`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use banyan_moq::coding::TrackNamespace;

use crate::broadcast::Broadcast;
use crate::connect::ConnectArgs;
use crate::ladder::LadderOptions;
use crate::source::{Fmp4Options, Input, SyntheticOptions};

/// Publish a live broadcast to a MoQT relay: fragmented MP4 from ffmpeg (stdin) or a file, or
/// a synthetic timestamped source.
#[derive(clap::Parser, Debug)]
#[command(name = "banyan-publish", version)]
#[command(group(clap::ArgGroup::new("generated").args(["synthetic", "ladder"]).multiple(false)))]
pub struct PublishArgs {
    /// Relay connection.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The broadcast name (the track namespace, `/`-separated).
    #[arg(long, value_name = "NAME")]
    pub broadcast: String,
    /// Read fMP4 from this file (`-` = stdin, the default); with `--ladder`, ffmpeg's input
    /// (a file, URL, `-`, or a lavfi graph with `--input-format lavfi`).
    #[arg(
        long,
        short = 'i',
        value_name = "FILE",
        default_value = "-",
        conflicts_with = "synthetic"
    )]
    pub input: String,
    /// Start over at the end of the file.
    #[arg(long = "loop")]
    pub looped: bool,
    /// Hold the media until every track has been subscribed once (deliver a whole file).
    #[arg(long)]
    pub wait_subscribers: bool,
    /// Generate synthetic frames instead of reading fMP4.
    #[arg(long)]
    pub synthetic: bool,
    /// Encode a rendition ladder with ffmpeg from `--input` (any input ffmpeg reads): a comma
    /// list of presets (1080p, 720p, 480p, 360p, 240p) or a `.toml` file of `[[rendition]]`
    /// name/width/height/bitrate. Each rendition is a video track `video/NAME`, keyframes
    /// aligned (`--fps`, `--gop`).
    #[arg(long, value_name = "PRESETS|FILE.toml", conflicts_with = "synthetic")]
    pub ladder: Option<String>,
    /// Ladder: ffmpeg's input format (`-f`), e.g. `lavfi` for a test source.
    #[arg(long, value_name = "FORMAT", requires = "ladder")]
    pub input_format: Option<String>,
    /// Synthetic and ladder: frames per second.
    #[arg(long, default_value_t = 30.0, requires = "generated")]
    pub fps: f64,
    /// Synthetic and ladder: frames per group (the keyframe interval of every rendition).
    #[arg(long, default_value_t = 30, requires = "generated")]
    pub gop: u64,
    /// Synthetic: bits per second (`2M`, `500k`, `64000`).
    #[arg(long, default_value = "2M", value_parser = parse_rate, requires = "synthetic")]
    pub bitrate: u64,
    /// Synthetic: declared size `WxH`.
    #[arg(long, default_value = "1280x720", value_parser = parse_size, requires = "synthetic")]
    pub size: (u32, u32),
    /// Synthetic: stop after this long.
    #[arg(long, value_parser = humantime::parse_duration, requires = "synthetic")]
    pub duration: Option<Duration>,
    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(long, default_value = "warn", env = "BANYAN_LOG")]
    pub log: String,
}

/// Watch a broadcast: subscribe to its catalog, video and audio; write fragmented MP4 and a
/// JSON summary with latency from the capture timestamps, how far behind live it played,
/// groups skipped and stalls.
#[derive(clap::Parser, Debug)]
#[command(name = "banyan-watch", version)]
pub struct WatchArgs {
    /// Relay connection.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The broadcast name (the track namespace, `/`-separated).
    #[arg(long, value_name = "NAME")]
    pub broadcast: String,
    /// Where to write fragmented MP4: a file, `-` for stdout, or `none`.
    #[arg(long, short = 'o', default_value = "none")]
    pub output: String,
    /// Stop after this long (default: until the broadcast ends).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Watch this rendition of a ladder (`720p` or its track name `video/720p`) instead of the
    /// catalog's first video track; `auto`: start on the lowest and switch by the bandwidth
    /// measured (make-before-break, at group boundaries), printing a `watch: abr` timeline line
    /// each second and at each switch, and an `abr` object in the summary. `auto` needs
    /// `--output none` (renditions differ in size; one MP4 track cannot hold them).
    #[arg(long, value_name = "NAME|auto")]
    pub rendition: Option<String>,
    /// Also write the JSON summary to this file.
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
    /// How long the relay may hold a SUBSCRIBE for the catalog or a media track while nobody
    /// publishes the broadcast (RENDEZVOUS_TIMEOUT, draft-18; the relay may cap it). Lets a
    /// viewer start before the broadcaster; `0s` asks for an immediate refusal instead.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "5s",
        env = "BANYAN_RENDEZVOUS",
        value_parser = humantime::parse_duration
    )]
    pub rendezvous: Duration,
    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(long, default_value = "warn", env = "BANYAN_LOG")]
    pub log: String,
}

/// Log to stderr (stdout may carry media or the summary).
pub fn init_tracing(filter: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Run `banyan-publish`.
pub async fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let connector = args.connect.connector()?;
    args.connect.announce_token_expiry("publish");
    let namespace = TrackNamespace::from_path(&args.broadcast).context("--broadcast")?;
    let broadcast = Arc::new(Broadcast::new());
    let source = {
        let broadcast = broadcast.clone();
        if args.synthetic {
            let options = SyntheticOptions {
                fps: args.fps,
                gop: args.gop,
                bitrate: args.bitrate,
                width: args.size.0,
                height: args.size.1,
                duration: args.duration,
            };
            tokio::spawn(crate::source::run_synthetic(options, broadcast))
        } else if let Some(spec) = &args.ladder {
            anyhow::ensure!(args.fps > 0.0 && args.fps <= 240.0, "--fps must be in (0, 240]");
            anyhow::ensure!(args.gop > 0, "--gop must be at least 1");
            if args.looped && args.input == "-" {
                anyhow::bail!("--loop needs a file (--input FILE), not stdin");
            }
            let options = LadderOptions {
                renditions: crate::ladder::parse_ladder(spec)?,
                input: args.input.clone(),
                input_format: args.input_format.clone(),
                looped: args.looped,
                fps: args.fps,
                gop: args.gop,
                wait_subscribers: args.wait_subscribers,
                ffmpeg: "ffmpeg".into(),
                ffprobe: "ffprobe".into(),
            };
            tokio::spawn(crate::ladder::run_ladder(options, broadcast))
        } else {
            let input = if args.input == "-" {
                Input::Stdin
            } else {
                Input::File(PathBuf::from(&args.input))
            };
            if args.looped && matches!(input, Input::Stdin) {
                anyhow::bail!("--loop needs a file (--input FILE), not stdin");
            }
            let options = Fmp4Options {
                input,
                looped: args.looped,
                wait_subscribers: args.wait_subscribers,
            };
            tokio::spawn(crate::source::run_fmp4(options, broadcast))
        }
    };
    let shutdown = banyan_control::binary::shutdown_signal()?;
    let progress = tokio::spawn(crate::publish::progress(broadcast.clone()));
    let publishing = crate::publish::run(connector, namespace, broadcast.clone());
    tokio::pin!(publishing);
    let mut source = source;
    // A source error (bad input) ends the run at once; otherwise publish until it ends.
    let result = tokio::select! {
        r = &mut publishing => r,
        s = &mut source => match s {
            Ok(Err(e)) => Err(e),
            Err(e) => Err(anyhow::anyhow!("source task: {e}")),
            Ok(Ok(())) => publishing.await,
        },
        () = shutdown => {
            // End the broadcast cleanly: the last objects, the final catalog and the end of
            // each track reach the relay (bounded by the publish loop's linger) before we exit.
            eprintln!("publish: stopping (signal); ending the broadcast");
            broadcast.end();
            publishing.await
        }
    };
    progress.abort();
    if result.is_ok() {
        eprintln!("publish: broadcast complete");
    }
    result
}

/// A rate like `2M`, `500k`, `64000` (bits per second).
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (s.get(..i).unwrap_or_default(), 1_000.0),
        Some((i, 'm' | 'M')) => (s.get(..i).unwrap_or_default(), 1_000_000.0),
        Some((i, 'g' | 'G')) => (s.get(..i).unwrap_or_default(), 1_000_000_000.0),
        _ => (s, 1.0),
    };
    let v: f64 = digits.parse().map_err(|_| format!("not a rate: {s:?}"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("not a positive rate: {s:?}"));
    }
    Ok((v * mult) as u64)
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("expected WxH, got {s:?}"))?;
    let w = w.parse().map_err(|_| format!("bad width in {s:?}"))?;
    let h = h.parse().map_err(|_| format!("bad height in {s:?}"))?;
    Ok((w, h))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use clap::Parser;

    #[test]
    fn publish_flags_parse() {
        let a = PublishArgs::try_parse_from([
            "banyan-publish",
            "moqt://localhost:4443",
            "--broadcast",
            "live/demo",
            "--synthetic",
            "--fps",
            "60",
            "--gop",
            "60",
            "--bitrate",
            "2.5M",
            "--size",
            "1920x1080",
            "--tls-hash",
            "ab",
        ])
        .unwrap();
        assert!(a.synthetic);
        assert_eq!(
            (a.fps, a.gop, a.bitrate, a.size),
            (60.0, 60, 2_500_000, (1920, 1080))
        );
        assert_eq!(a.connect.tls_hash.as_deref(), Some("ab"));
        assert!(
            PublishArgs::try_parse_from(["banyan-publish", "moqt://h:1", "--broadcast", "x", "--fps", "5"])
                .is_err(),
            "--fps needs --synthetic"
        );
        assert!(PublishArgs::try_parse_from([
            "banyan-publish",
            "moqt://h:1",
            "--broadcast",
            "x",
            "--tls-insecure",
            "--tls-hash",
            "00"
        ])
        .is_err());
        assert_eq!(parse_rate("500k").unwrap(), 500_000);
        assert!(parse_rate("fast").is_err());
        assert!(parse_size("640").is_err());
    }

    #[test]
    fn watch_flags_parse() {
        let a = WatchArgs::try_parse_from([
            "banyan-watch",
            "https://localhost:4443/",
            "--broadcast",
            "live/demo",
            "--output",
            "-",
            "--duration",
            "10s",
            "--summary",
            "s.json",
            "--token",
            "t",
        ])
        .unwrap();
        assert_eq!(a.output, "-");
        assert_eq!(a.duration, Some(Duration::from_secs(10)));
        assert_eq!(a.connect.token.as_deref(), Some("t"));
        assert_eq!(a.rendezvous, Duration::from_secs(5), "default rendezvous");
        let a = WatchArgs::try_parse_from([
            "banyan-watch",
            "moqt://h:1",
            "--broadcast",
            "x",
            "--rendezvous",
            "750ms",
        ])
        .unwrap();
        assert_eq!(a.rendezvous, Duration::from_millis(750));
        assert!(WatchArgs::try_parse_from([
            "banyan-watch",
            "moqt://h:1",
            "--broadcast",
            "x",
            "--rendezvous",
            "soon"
        ])
        .is_err());
    }
}
