//! The ABR rule against a simulated link: a FIFO of a given capacity and 20 ms propagation,
//! a 30 fps stream with one-second groups (a keyframe of a quarter of the group's bytes), the
//! publisher's clock offset from the viewer's, and seeded jitter. Proves the estimator measures
//! the link (not the stream) whether the link is faster or slower than the stream, that a clock
//! offset changes nothing, and that the chooser moves down at once, up with hysteresis, does
//! not oscillate on a link between two renditions, and steps down when the player falls behind.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use banyan_media::abr::{Chooser, Estimator, Policy, Rendition};

const FPS: u64 = 30;
const PROPAGATION_US: f64 = 20_000.0;

/// A FIFO link: an object leaves when the link has sent everything before it.
struct Link {
    capacity_bps: f64,
    free_at_us: f64,
    /// 0..=jitter_us of extra delay per object, from a seeded LCG.
    jitter_us: u64,
    seed: u64,
    last_arrival_us: f64,
}

impl Link {
    fn new(capacity_bps: f64, jitter_us: u64) -> Self {
        Self {
            capacity_bps,
            free_at_us: 0.0,
            jitter_us,
            seed: 0x2545_f491_4f6c_dd1d,
            last_arrival_us: 0.0,
        }
    }

    /// When an object of `bytes` handed over at `at_us` has arrived whole.
    fn send(&mut self, at_us: f64, bytes: usize) -> u64 {
        let start = at_us.max(self.free_at_us);
        self.free_at_us = start + bytes as f64 * 8.0 * 1e6 / self.capacity_bps;
        self.seed = self.seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let jitter = if self.jitter_us == 0 {
            0
        } else {
            (self.seed >> 33) % self.jitter_us
        };
        // Jitter delays delivery, never reorders a stream.
        let arrival = (self.free_at_us + PROPAGATION_US + jitter as f64).max(self.last_arrival_us);
        self.last_arrival_us = arrival;
        arrival as u64
    }
}

/// The frame sizes of one group of a stream of `bitrate`.
fn group_sizes(bitrate: u64) -> Vec<usize> {
    let group_bytes = bitrate as f64 / 8.0;
    (0..FPS)
        .map(|i| if i == 0 { group_bytes * 0.25 } else { group_bytes * 0.75 / (FPS - 1) as f64 } as usize)
        .collect()
}

/// Play `groups` groups over `link` (its capacity changed by `capacity(g)` before group g),
/// feeding `estimator` and, if given, letting `chooser` pick each next group's rendition; the
/// publisher's clock is `offset_us` ahead. Returns (rendition bitrate per group, samples).
fn play(
    groups: u64,
    capacity: impl Fn(u64) -> f64,
    jitter_us: u64,
    offset_us: u64,
    stream_bitrate: u64,
    mut chooser: Option<&mut Chooser>,
    estimator: &mut Estimator,
) -> (Vec<u64>, Vec<u64>) {
    let mut link = Link::new(capacity(0), jitter_us);
    let mut played = Vec::new();
    let mut samples = Vec::new();
    for g in 0..groups {
        link.capacity_bps = capacity(g);
        let bitrate = chooser.as_ref().map_or(stream_bitrate, |c| c.current().bitrate);
        played.push(bitrate);
        let mut latency_us = 0;
        for (i, bytes) in group_sizes(bitrate).into_iter().enumerate() {
            let capture_us = 1_000_000 + g * 1_000_000 + i as u64 * 1_000_000 / FPS;
            let arrival_us = link.send(capture_us as f64, bytes);
            latency_us = arrival_us - capture_us;
            if let Some(s) = estimator.object(g, bytes, capture_us + offset_us, arrival_us) {
                samples.push(s);
            }
        }
        if let Some(s) = estimator.end_group() {
            samples.push(s);
        }
        if let Some(c) = chooser.as_deref_mut() {
            // Falling behind: the group's last frame more than a group late.
            c.on_group(estimator.estimate(), latency_us > 1_000_000);
        }
    }
    (played, samples)
}

fn ladder() -> Vec<Rendition> {
    [
        ("video/240p", 300_000),
        ("video/360p", 800_000),
        ("video/720p", 2_500_000),
    ]
    .into_iter()
    .map(|(name, bitrate)| Rendition {
        name: name.into(),
        bitrate,
    })
    .collect()
}

fn within(value: u64, target: f64, tolerance: f64) -> bool {
    (value as f64 - target).abs() <= target * tolerance
}

/// The estimate after `groups` groups of a `stream` bit/s stream over a `capacity` link.
fn estimate_over(groups: u64, capacity: f64, jitter_us: u64, stream: u64) -> u64 {
    let mut e = Estimator::new();
    play(groups, |_| capacity, jitter_us, 0, stream, None, &mut e);
    e.estimate().unwrap()
}

#[test]
fn a_fast_link_is_measured_not_the_stream_it_carries() {
    let estimate = estimate_over(10, 20e6, 0, 1_000_000);
    assert!(
        within(estimate, 20e6, 0.1),
        "20 Mbit/s link carrying 1 Mbit/s: estimate {estimate}"
    );
}

#[test]
fn a_link_slower_than_the_stream_is_measured_at_its_pace() {
    let estimate = estimate_over(6, 1.5e6, 0, 2_500_000);
    assert!(
        within(estimate, 1.5e6, 0.05),
        "1.5 Mbit/s link under 2.5 Mbit/s: estimate {estimate}"
    );
}

#[test]
fn jitter_makes_the_estimate_conservative_not_wrong() {
    let estimate = estimate_over(10, 8e6, 2_000, 1_000_000);
    assert!(
        estimate as f64 > 2.0e6 && (estimate as f64) < 8.8e6,
        "8 Mbit/s link, up to 2 ms jitter: estimate {estimate}"
    );
}

#[test]
fn a_clock_offset_between_publisher_and_viewer_changes_nothing() {
    let (mut a, mut b) = (Estimator::new(), Estimator::new());
    let (_, sa) = play(8, |_| 6e6, 1_000, 0, 1_000_000, None, &mut a);
    let (_, sb) = play(8, |_| 6e6, 1_000, 3_600_000_000, 1_000_000, None, &mut b);
    assert_eq!(sa, sb);
}

#[test]
fn the_chooser_moves_down_at_once_and_back_up_with_hysteresis() {
    let mut e = Estimator::new();
    let mut c = Chooser::new(ladder(), 3_000_000, Policy::default()).unwrap();
    assert_eq!(
        c.current().name,
        "video/720p",
        "starts at the highest at or below 3 Mbit/s"
    );
    // 1.5 Mbit/s for 30 s, then 10 Mbit/s.
    let (played, _) = play(
        60,
        |g| if g < 30 { 1.5e6 } else { 10e6 },
        1_000,
        0,
        0,
        Some(&mut c),
        &mut e,
    );
    let first_down = played.iter().position(|b| *b < 2_500_000).unwrap();
    assert!(
        first_down <= 2,
        "down within two groups of a too-narrow link: {played:?}"
    );
    assert!(
        played[first_down..30].iter().all(|b| *b == 800_000),
        "800 kbit/s fits 1.5 Mbit/s with headroom and stays: {played:?}"
    );
    let back_up = played[30..].iter().position(|b| *b == 2_500_000).unwrap();
    assert!(
        back_up <= 5,
        "back to 720p within 5 groups of the link widening: {played:?}"
    );
    assert!(
        played[30 + back_up..].iter().all(|b| *b == 2_500_000),
        "{played:?}"
    );
    assert_eq!(c.switches(), 2, "{played:?}");
}

#[test]
fn a_link_between_two_renditions_does_not_make_it_oscillate() {
    let mut e = Estimator::new();
    let mut c = Chooser::new(ladder(), 800_000, Policy::default()).unwrap();
    // 2.8 Mbit/s: above 720p's 2.5 but not by the 40 % a climb needs.
    let (played, _) = play(60, |_| 2.8e6, 2_000, 0, 0, Some(&mut c), &mut e);
    assert!(played.iter().all(|b| *b == 800_000), "{played:?}");
    assert_eq!(c.switches(), 0);
}

#[test]
fn falling_behind_steps_down_even_when_the_estimate_fits() {
    let mut c = Chooser::new(ladder(), 3_000_000, Policy::default()).unwrap();
    assert_eq!(
        c.on_group(Some(50_000_000), true).map(|r| r.name.clone()),
        Some("video/360p".into())
    );
    assert_eq!(
        c.on_group(Some(50_000_000), true).map(|r| r.name.clone()),
        Some("video/240p".into())
    );
    assert_eq!(
        c.on_group(Some(50_000_000), true),
        None,
        "nothing below the lowest"
    );
}

#[test]
fn no_ladder_no_chooser_and_no_estimate_no_switch() {
    assert!(Chooser::new(vec![], 1, Policy::default()).is_none());
    let mut c = Chooser::new(ladder(), 0, Policy::default()).unwrap();
    assert_eq!(
        c.current().name,
        "video/240p",
        "below every rendition: the lowest"
    );
    assert_eq!(c.on_group(None, false), None);
    assert!(Estimator::new().estimate().is_none());
}
