//! A histogram of durations kept in atomics, for the store writer's commits: recording one is
//! a few relaxed atomic adds, and a scrape reads the counts without taking a lock, so a scrape
//! can never make the writer wait.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds in seconds of the commit-duration buckets. A commit is an fsync and a few
/// B-tree pages, milliseconds on a healthy disk; the upper buckets catch a disk that stalls.
pub const COMMIT_BOUNDS_S: [f64; 13] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Counts of durations per bucket (the last one past every bound), and their sum.
#[derive(Debug)]
pub struct Timings {
    bounds_s: &'static [f64],
    /// One count per bound, then the overflow (`+Inf`) bucket; not cumulative.
    counts: Vec<AtomicU64>,
    sum_ns: AtomicU64,
}

/// What a scrape reads: per-bucket counts (not cumulative), their total and the sum.
#[derive(Debug, Clone, PartialEq)]
pub struct TimingsSnapshot {
    /// (upper bound in seconds, count), the last bound `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_s: f64,
}

impl Timings {
    pub fn new(bounds_s: &'static [f64]) -> Timings {
        Timings {
            bounds_s,
            counts: (0..=bounds_s.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = self.bounds_s.partition_point(|bound| *bound < seconds);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The count is the sum of the buckets read, so the two always agree; the sum may be a
    /// recording ahead of or behind them, which Prometheus tolerates.
    pub fn snapshot(&self) -> TimingsSnapshot {
        let bounds = self.bounds_s.iter().copied().chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds
            .zip(&self.counts)
            .map(|(bound, count)| (bound, count.load(Ordering::Relaxed)))
            .collect();
        TimingsSnapshot {
            count: buckets.iter().map(|b| b.1).sum(),
            buckets,
            sum_s: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_on_a_bound_counts_in_that_bound() {
        let timings = Timings::new(&[0.001, 0.01]);
        timings.observe(Duration::from_millis(1));
        timings.observe(Duration::from_micros(1_001));
        timings.observe(Duration::from_secs(3));
        let snap = timings.snapshot();
        assert_eq!(
            snap.buckets,
            vec![(0.001, 1), (0.01, 1), (f64::INFINITY, 1)]
        );
        assert_eq!(snap.count, 3);
        assert!((snap.sum_s - 3.002_001).abs() < 1e-9);
    }
}
