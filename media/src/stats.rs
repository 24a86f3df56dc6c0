//! Latency statistics: nearest-rank percentiles over samples and the [`Distribution`]
//! (count, p50/p90/p95/p99, max, mean in milliseconds) that the benchmark's report and the
//! viewer's summary show.

use serde::{Deserialize, Serialize};

/// The nearest-rank `p`-th percentile (0 < p ≤ 100) of `sorted` (ascending): the smallest
/// sample such that at least `p` % of the samples are at or below it. `None` when there are
/// no samples; `p` outside (0, 100] is clamped into it.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let p = if p.is_nan() {
        100.0
    } else {
        p.clamp(f64::MIN_POSITIVE, 100.0)
    };
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    let index = rank.clamp(1, n) - 1;
    sorted.get(index).copied()
}

/// A summary of microsecond samples, reported in milliseconds.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Distribution {
    /// Number of samples.
    pub samples: u64,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Largest sample.
    pub max: Option<f64>,
    /// Arithmetic mean.
    pub mean: Option<f64>,
}

impl Distribution {
    /// Summarise samples given in microseconds (any order) as milliseconds.
    pub fn from_micros(mut samples: Vec<u64>) -> Self {
        samples.sort_unstable();
        let ms = |us: Option<u64>| us.map(|us| round3(us as f64 / 1000.0));
        let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
        let mean = (!samples.is_empty()).then(|| round3(sum as f64 / samples.len() as f64 / 1000.0));
        Self {
            samples: samples.len() as u64,
            p50: ms(percentile(&samples, 50.0)),
            p90: ms(percentile(&samples, 90.0)),
            p95: ms(percentile(&samples, 95.0)),
            p99: ms(percentile(&samples, 99.0)),
            max: ms(samples.last().copied()),
            mean,
        }
    }
}

/// Round to three decimals (microsecond resolution in milliseconds), for readable JSON.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_on_one_to_hundred() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 90.0), Some(90));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 99.5), Some(100));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 1.0), Some(1));
    }

    #[test]
    fn small_and_edge_inputs() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7], 50.0), Some(7));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        // Nearest rank of 4 samples: p50 is the 2nd, p51 the 3rd.
        assert_eq!(percentile(&[1, 2, 3, 4], 50.0), Some(2));
        assert_eq!(percentile(&[1, 2, 3, 4], 51.0), Some(3));
        // Out-of-range and NaN percentiles are clamped, not panics.
        assert_eq!(percentile(&[1, 2, 3], 0.0), Some(1));
        assert_eq!(percentile(&[1, 2, 3], -5.0), Some(1));
        assert_eq!(percentile(&[1, 2, 3], 250.0), Some(3));
        assert_eq!(percentile(&[1, 2, 3], f64::NAN), Some(3));
    }

    #[test]
    fn distribution_in_milliseconds() {
        let d = Distribution::from_micros(vec![3000, 1000, 2000, 10_500]);
        assert_eq!(d.samples, 4);
        assert_eq!(d.p50, Some(2.0));
        assert_eq!(d.p99, Some(10.5));
        assert_eq!(d.max, Some(10.5));
        assert_eq!(d.mean, Some(4.125));
        let empty = Distribution::from_micros(Vec::new());
        assert_eq!(empty.samples, 0);
        assert_eq!(empty.p50, None);
        assert_eq!(empty.mean, None);
    }
}
