//! Checking media with the ordinary tools, as a user would: `ffprobe` decodes a file (or bytes)
//! and reports how many frames of each stream it decoded (and a video stream's size). Used by the tests of the fMP4 muxer,
//! the publisher and the ingest gateway, which all judge their output this way.
//!
//! These are test helpers: a missing tool or an ffprobe failure panics with a message that says
//! what to install or what ffprobe said.

// Test helpers: a failure is the test's failure, reported by panicking with the reason.
#![allow(clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const INSTALL: &str = "ffprobe must be installed (scripts/test installs it; apt-get install ffmpeg)";

/// `(codec name, frames decoded)` for each stream of the file at `path`.
pub fn ffprobe_frames(path: &Path) -> Vec<(String, u64)> {
    let output = probe().arg(path).output().expect(INSTALL);
    frames(&output, &path.display().to_string())
}

/// [`ffprobe_frames`] for `data` fed to ffprobe on its stdin.
pub fn ffprobe_frames_of(data: &[u8]) -> Vec<(String, u64)> {
    let mut child = probe()
        .args(["-i", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(INSTALL);
    let mut stdin = child.stdin.take().expect("ffprobe's stdin is piped");
    let data = data.to_vec();
    // Written from a thread: ffprobe may start answering before it has read everything.
    let writer = std::thread::spawn(move || {
        // ffprobe may stop reading early (it has seen enough, or the input is bad): its
        // verdict, not the broken pipe, is what the caller checks.
        let _ = stdin.write_all(&data);
    });
    let output = child.wait_with_output().expect("ffprobe runs");
    writer.join().expect("the stdin writer does not panic");
    frames(&output, "stdin")
}

/// `(width, height, frames decoded)` of the first video stream of the file at `path`.
pub fn ffprobe_video_size(path: &Path) -> (u32, u32, u64) {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height,nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect(INSTALL);
    let input = path.display();
    let text = stdout(&output, &input.to_string());
    let fields: Vec<u64> = text
        .trim()
        .split(',')
        .map(|f| {
            f.parse()
                .unwrap_or_else(|e| panic!("ffprobe {input}: {text:?}: {e}"))
        })
        .collect();
    let [width, height, frames] = fields[..] else {
        panic!("ffprobe {input}: expected width,height,frames, got {text:?}");
    };
    let size = |v: u64| u32::try_from(v).unwrap_or_else(|e| panic!("ffprobe {input}: {v}: {e}"));
    (size(width), size(height), frames)
}

fn probe() -> Command {
    let mut command = Command::new("ffprobe");
    command.args([
        "-v",
        "error",
        "-count_frames",
        "-show_entries",
        "stream=codec_name,nb_read_frames",
        "-of",
        "csv=p=0",
    ]);
    command
}

/// ffprobe's stdout, once it has succeeded (else the test fails with what it said).
fn stdout<'o>(output: &'o Output, input: &str) -> std::borrow::Cow<'o, str> {
    assert!(
        output.status.success(),
        "ffprobe {input}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
}

fn frames(output: &Output, input: &str) -> Vec<(String, u64)> {
    stdout(output, input)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (codec, n) = l
                .trim()
                .split_once(',')
                .unwrap_or_else(|| panic!("ffprobe {input}: unexpected line {l:?}"));
            let n = n
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("ffprobe {input}: frame count in {l:?}: {e}"));
            (codec.to_string(), n)
        })
        .collect()
}
