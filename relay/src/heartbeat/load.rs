//! Load figures: egress and CPU as rates over the interval between two samples.

use std::time::Duration;

use tokio::time::Instant;

/// Clock ticks per second in `/proc/self/stat` (`USER_HZ`, 100 on every Linux architecture
/// the relay is built for).
const TICKS_PER_SECOND: u64 = 100;

/// Turns counter readings into rates over the interval between two samples.
#[derive(Debug, Clone, Default)]
pub struct LoadSampler {
    last: Option<Reading>,
}

#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    bytes_out: u64,
    cpu_ticks: Option<u64>,
}

impl LoadSampler {
    /// Record the readings at `now` (`bytes_out` from the `bytes_out` counter, `cpu_ticks` the
    /// process's user + system clock ticks, `None` without `/proc`) and return the egress in
    /// bits per second and the CPU in cores since the previous sample. The first sample, and
    /// a figure whose reading is missing, gives 0.
    pub fn sample(&mut self, now: Instant, bytes_out: u64, cpu_ticks: Option<u64>) -> (u64, f64) {
        let current = Reading {
            at: now,
            bytes_out,
            cpu_ticks,
        };
        let Some(last) = self.last.replace(current) else {
            return (0, 0.0);
        };
        let elapsed = now.saturating_duration_since(last.at);
        let egress = bits_per_second(bytes_out.saturating_sub(last.bytes_out), elapsed);
        let cpu = match (last.cpu_ticks, cpu_ticks) {
            (Some(before), Some(after)) => cores(after.saturating_sub(before), TICKS_PER_SECOND, elapsed),
            _ => 0.0,
        };
        (egress, cpu)
    }
}

/// `bytes` sent over `elapsed`, in bits per second (0 over no time).
pub fn bits_per_second(bytes: u64, elapsed: Duration) -> u64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return 0;
    }
    // `as` saturates for floats: an absurd figure becomes u64::MAX, never a panic.
    (bytes as f64 * 8.0 / secs).round() as u64
}

/// CPU `ticks` (at `ticks_per_second`) used over `elapsed`, in cores (0 over no time).
pub fn cores(ticks: u64, ticks_per_second: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 || ticks_per_second == 0 {
        return 0.0;
    }
    ticks as f64 / ticks_per_second as f64 / secs
}

/// The process's user + system CPU time in clock ticks, from `/proc/self/stat`; `None` where
/// there is no `/proc`.
pub(super) fn process_cpu_ticks() -> Option<u64> {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|text| parse_cpu_ticks(&text))
}

/// `utime + stime` (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name (field 2)
/// is in parentheses and may hold spaces and parentheses, so fields are counted after the last
/// `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    // `rest` starts at field 3 (state): utime is field 14, the 12th from here.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime.saturating_add(stime))
}
