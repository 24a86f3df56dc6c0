//! Adaptive bitrate: which rendition of a video ladder a viewer plays, decided from what it
//! receives. Sans-IO: the player feeds each video object's size, capture time and arrival time,
//! and asks after each group which rendition to play next.
//!
//! # Estimating the bandwidth a viewer receives
//! A live stream arrives paced by the encoder, so a viewer on a fast link spends most of its
//! time waiting for frames that do not exist yet: bytes over wall time would only measure the
//! stream's own bitrate. [`Estimator`] counts only the time the link was busy, per object:
//! - The delay of an object from capture to arrival is the path's (propagation, clock offset)
//!   plus its size over the link's rate plus any queueing. The smallest delay seen lately
//!   ([`BASE_WINDOW_GROUPS`] groups) is the empty path plus the transfer of that object (the
//!   *base*, remembered with the object's size).
//! - An object that arrives without waiting behind another took `delay − base` for the bytes it
//!   has beyond the base object's: that is the sample. An object that was queued (it could have
//!   started before the previous one had arrived) took from the previous arrival to its own for
//!   all its bytes. Idle gaps between frames never count.
//! - Objects whose busy time is under [`MIN_BUSY_US`] (clock noise) are left out.
//!
//! A group's sample is its counted bytes over its busy time; the estimate is an exponentially
//! weighted average of the samples ([`SMOOTHING`]), and a sample below the average replaces it
//! at once, so a link that gets worse is believed sooner than one that gets better. Jitter only
//! adds busy time, so it makes the estimate lower, never higher.
//!
//! Clocks: capture times are the publisher's wall clock, arrival times the viewer's; only
//! differences of differences are used, so a constant offset between them cancels.
//!
//! # Choosing a rendition
//! [`Chooser`] follows the estimate with hysteresis (numbers in [`Policy`]):
//! - **Down** at once when the estimate is below the playing rendition's bitrate times
//!   `down_below`, or when the player reports it is falling behind live: to the highest
//!   rendition whose bitrate times `down_headroom` fits the estimate (the lowest if none).
//! - **Up** one step only after the estimate has stayed above the next rendition's bitrate
//!   times `up_above` for `up_hold` groups in a row, and `up_hold` groups after any switch.
//!
//! A switch takes effect at a group boundary (the player subscribes to the new rendition and
//! starts it at its next group's keyframe); the chooser only says which.

use std::collections::VecDeque;

/// Groups over which the smallest delay (the empty path) is remembered.
pub const BASE_WINDOW_GROUPS: usize = 10;
/// Weight of a new sample in the estimate when it is above it.
pub const SMOOTHING: f64 = 0.3;
/// The least busy time counted for one object, in microseconds (a smaller one is clock noise).
pub const MIN_BUSY_US: u64 = 250;

/// One rendition of a ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendition {
    /// Its track name.
    pub name: String,
    /// Its bitrate, bits per second (the catalog's `bitrate`).
    pub bitrate: u64,
}

/// The bandwidth a viewer receives, from its video objects (see the module docs).
#[derive(Debug, Default)]
pub struct Estimator {
    /// The smallest `arrival - capture` of each recent group and that object's size, newest last.
    base: VecDeque<(i128, u64)>,
    group: Option<Group>,
    previous_arrival_us: Option<u64>,
    estimate: Option<f64>,
    samples: u64,
}

#[derive(Debug)]
struct Group {
    id: u64,
    /// Bytes counted (see the module docs) and the busy time they took.
    bytes: u64,
    busy_us: u64,
    /// The smallest delay in the group and that object's size.
    min_delay: (i128, u64),
}

impl Estimator {
    /// A fresh estimator (no estimate until the first group ends).
    pub fn new() -> Self {
        Self::default()
    }

    /// One video object of `bytes` in `group`, captured at `capture_us` (publisher clock) and
    /// read whole at `arrival_us` (viewer clock), in arrival order. The first object of a new
    /// group ends the previous one: returns its sample (bits per second) if it had any bytes.
    pub fn object(&mut self, group: u64, bytes: usize, capture_us: u64, arrival_us: u64) -> Option<u64> {
        let size = bytes as u64;
        let delay = (i128::from(arrival_us) - i128::from(capture_us), size);
        let mut finished = None;
        if self.group.as_ref().is_none_or(|g| g.id != group) {
            if let Some(done) = self.group.take() {
                finished = self.finish(done);
            }
            self.group = Some(Group {
                id: group,
                bytes: 0,
                busy_us: 0,
                min_delay: delay,
            });
        }
        let in_group = self.group.as_ref().map_or(delay, |g| g.min_delay);
        let (base_delay, base_size) = self
            .base
            .iter()
            .copied()
            .chain([in_group, delay])
            .min()
            .unwrap_or(delay);
        // It could have started arriving at its capture plus the empty path's delay; if the
        // link was still busy with the previous object then, it waited for it.
        let earliest = i128::from(capture_us) + base_delay;
        let (start, counted) = match self.previous_arrival_us.map(i128::from) {
            Some(previous) if previous > earliest => (previous, size),
            _ => (earliest, size.saturating_sub(base_size)),
        };
        let busy = u64::try_from(i128::from(arrival_us) - start).unwrap_or(0);
        if let Some(g) = &mut self.group {
            if busy >= MIN_BUSY_US && counted > 0 {
                g.bytes = g.bytes.saturating_add(counted);
                g.busy_us = g.busy_us.saturating_add(busy);
            }
            g.min_delay = g.min_delay.min(delay);
        }
        self.previous_arrival_us = Some(arrival_us);
        finished
    }

    /// The current group is complete (its subgroup stream ended): take its sample now rather
    /// than at the next group's first object. Returns the sample, as [`Estimator::object`].
    pub fn end_group(&mut self) -> Option<u64> {
        let done = self.group.take()?;
        self.finish(done)
    }

    /// The estimate, bits per second (none before the first group has ended).
    pub fn estimate(&self) -> Option<u64> {
        self.estimate.map(|e| e as u64)
    }

    /// Group samples taken so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    fn finish(&mut self, group: Group) -> Option<u64> {
        if self.base.len() == BASE_WINDOW_GROUPS {
            self.base.pop_front();
        }
        self.base.push_back(group.min_delay);
        if group.bytes == 0 || group.busy_us == 0 {
            return None;
        }
        let sample = group.bytes as f64 * 8.0 * 1e6 / group.busy_us as f64;
        self.estimate = Some(match self.estimate {
            Some(e) if sample >= e => e + SMOOTHING * (sample - e),
            _ => sample,
        });
        self.samples += 1;
        Some(sample as u64)
    }
}

/// The chooser's numbers (see the module docs for the rule).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Switch down when the estimate is below the playing rendition's bitrate times this.
    pub down_below: f64,
    /// Switching down, pick a rendition whose bitrate times this fits the estimate.
    pub down_headroom: f64,
    /// Switch up when the estimate is above the next rendition's bitrate times this...
    pub up_above: f64,
    /// ...for this many groups in a row, and no sooner than this many groups after a switch.
    pub up_hold: u32,
}

impl Default for Policy {
    /// 10 % headroom to stay, 25 % to land on, 40 % for three groups (3 s at 1 s GOPs) to climb:
    /// a link just above a rendition keeps it instead of trying the next and falling back.
    fn default() -> Self {
        Self {
            down_below: 1.1,
            down_headroom: 1.25,
            up_above: 1.4,
            up_hold: 3,
        }
    }
}

/// Which rendition to play, following an [`Estimator`] (see the module docs).
#[derive(Debug)]
pub struct Chooser {
    /// By bitrate, lowest first; never empty.
    ladder: Vec<Rendition>,
    /// The lowest (a copy of the first), so there is always a rendition to name.
    lowest: Rendition,
    current: usize,
    policy: Policy,
    /// Groups in a row the estimate allowed the next rendition up.
    above: u32,
    /// Groups since the last switch.
    since_switch: u32,
    switches: u64,
}

impl Chooser {
    /// Start on the highest rendition at or below `start_bitrate` (the lowest if none is). Returns
    /// `None` for an empty ladder.
    pub fn new(mut ladder: Vec<Rendition>, start_bitrate: u64, policy: Policy) -> Option<Self> {
        ladder.sort_by(|a, b| a.bitrate.cmp(&b.bitrate).then_with(|| a.name.cmp(&b.name)));
        let current = ladder
            .iter()
            .rposition(|r| r.bitrate <= start_bitrate)
            .unwrap_or(0);
        let lowest = ladder.first()?.clone();
        Some(Self {
            ladder,
            lowest,
            current,
            policy,
            above: 0,
            since_switch: 0,
            switches: 0,
        })
    }

    /// The rendition to play.
    pub fn current(&self) -> &Rendition {
        self.ladder.get(self.current).unwrap_or(&self.lowest)
    }

    /// Switches made so far.
    pub fn switches(&self) -> u64 {
        self.switches
    }

    /// A group has ended with the estimator at `estimate` (bits per second; `None`: nothing
    /// measured yet) and the player `behind` live or not. Returns the rendition to switch to,
    /// if the rule says switch.
    pub fn on_group(&mut self, estimate: Option<u64>, behind: bool) -> Option<&Rendition> {
        self.since_switch = self.since_switch.saturating_add(1);
        let current = self.ladder.get(self.current)?.bitrate as f64;
        let estimate = estimate.map(|e| e as f64)?;
        let p = self.policy;
        if (estimate < current * p.down_below || behind) && self.current > 0 {
            let fits = self
                .ladder
                .iter()
                .rposition(|r| r.bitrate as f64 * p.down_headroom <= estimate)
                .unwrap_or(0);
            // Falling behind with an estimate that still fits: one step down at least.
            return self.switch(fits.min(self.current - 1));
        }
        match self.ladder.get(self.current + 1) {
            Some(next) if estimate >= next.bitrate as f64 * p.up_above => {
                self.above = self.above.saturating_add(1);
                if self.above >= p.up_hold && self.since_switch >= p.up_hold {
                    return self.switch(self.current + 1);
                }
            }
            _ => self.above = 0,
        }
        None
    }

    fn switch(&mut self, to: usize) -> Option<&Rendition> {
        let rendition = self.ladder.get(to)?;
        self.current = to;
        self.above = 0;
        self.since_switch = 0;
        self.switches += 1;
        Some(rendition)
    }
}
