//! Latency histograms with fixed buckets, recorded by the storage thread
//! and read by the driver when it publishes [`crate::Metrics`].
//!
//! Recording is a few relaxed atomic adds, so the storage thread pays
//! nothing measurable per group commit and the driver never waits on it.
//! The buckets are fixed (not configurable) so that every node's series
//! line up and can be summed across a cluster.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds: from 100µs (a write that
/// only reached the page cache) to 2.5s (a disk that stalls elections).
pub const LATENCY_BUCKET_BOUNDS_MICROS: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000,
];

const BUCKETS: usize = LATENCY_BUCKET_BOUNDS_MICROS.len();

/// A histogram at one moment, in Prometheus' shape: cumulative counts.
///
/// Invariant: `cumulative` is non-decreasing and its last value is at
/// most `count` (the rest were slower than the last bound).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    cumulative: [u64; BUCKETS],
    sum_nanos: u64,
    count: u64,
}

impl LatencyHistogram {
    /// `(upper bound, observations at or below it)`, ascending; the
    /// implicit `+Inf` bucket is [`LatencyHistogram::count`].
    pub fn buckets(&self) -> impl Iterator<Item = (Duration, u64)> + '_ {
        LATENCY_BUCKET_BOUNDS_MICROS
            .iter()
            .zip(&self.cumulative)
            .map(|(&bound, &n)| (Duration::from_micros(bound), n))
    }

    /// The total of every observation.
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_nanos)
    }

    /// How many observations there were.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// The live counters behind a [`LatencyHistogram`]; one writer (the
/// storage thread), any number of readers.
#[derive(Debug, Default)]
pub(crate) struct LatencyRecorder {
    /// Per bucket, not cumulative; the last slot counts what exceeded
    /// every bound. Cumulating on read keeps recording to one add.
    counts: [AtomicU64; BUCKETS + 1],
    sum_nanos: AtomicU64,
}

impl LatencyRecorder {
    pub(crate) fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BUCKET_BOUNDS_MICROS.partition_point(|&bound| bound * 1_000 < nanos);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// A copy in cumulative form. Reads race with `observe`, so the sum
    /// may be one observation ahead of the counts; `count` is derived from
    /// the buckets so that the two always agree.
    pub(crate) fn snapshot(&self) -> LatencyHistogram {
        let mut cumulative = [0; BUCKETS];
        let mut running = 0;
        for (slot, count) in cumulative.iter_mut().zip(&self.counts) {
            running += count.load(Ordering::Relaxed);
            *slot = running;
        }
        let count = running + self.counts[BUCKETS].load(Ordering::Relaxed);
        LatencyHistogram {
            cumulative,
            sum_nanos: self.sum_nanos.load(Ordering::Relaxed),
            count,
        }
    }
}

/// The storage thread's timings of each group commit.
#[derive(Debug, Default)]
pub(crate) struct LogTimings {
    /// Writing the batches to the log and making them durable.
    pub(crate) append: LatencyRecorder,
    /// [`keel_storage::LogStore::sync`] alone.
    pub(crate) sync: LatencyRecorder,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_cumulative_buckets_by_upper_bound() {
        let recorder = LatencyRecorder::default();
        recorder.observe(Duration::from_micros(100)); // on the first bound
        recorder.observe(Duration::from_nanos(100_001));
        recorder.observe(Duration::from_secs(10)); // beyond every bound
        let h = recorder.snapshot();
        let buckets: Vec<(Duration, u64)> = h.buckets().collect();
        assert_eq!(buckets[0], (Duration::from_micros(100), 1));
        assert_eq!(buckets[1], (Duration::from_micros(250), 2));
        assert_eq!(buckets[BUCKETS - 1].1, 2);
        assert_eq!(h.count(), 3);
        assert_eq!(h.sum(), Duration::from_nanos(10_000_200_001));
    }
}
