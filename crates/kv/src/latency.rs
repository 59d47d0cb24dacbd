//! Latency histograms with etcd's buckets, for the series Keel KV exports
//! under etcd's names (`etcd_disk_backend_commit_duration_seconds`,
//! `etcd_network_peer_round_trip_time_seconds`): the same bounds as
//! etcd's, so that dashboards' bucket queries read the same.
//!
//! Recording is a few relaxed atomic adds, so the store's apply and the
//! peer prober pay nothing measurable, and a scrape never waits on them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// etcd's `ExponentialBuckets(0.001, 2, 14)`: 1 ms to 8.192 s, the
/// backend commit's buckets.
pub const BACKEND_COMMIT_BOUNDS: Bounds = Bounds {
    first_seconds: 0.001,
    count: 14,
};

/// etcd's `ExponentialBuckets(0.0001, 2, 16)`: 0.1 ms to 3.2768 s, the
/// peer round trip's buckets.
pub const PEER_ROUND_TRIP_BOUNDS: Bounds = Bounds {
    first_seconds: 0.0001,
    count: 16,
};

/// Exponential upper bounds, doubling from `first_seconds`, as etcd's
/// Prometheus histograms have them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bounds {
    pub first_seconds: f64,
    pub count: usize,
}

impl Bounds {
    /// The upper bounds in seconds, ascending.
    pub fn seconds(self) -> impl Iterator<Item = f64> {
        (0..self.count).map(move |i| self.first_seconds * f64::from(1u32 << i))
    }
}

/// A histogram at one moment, in Prometheus' shape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatencySnapshot {
    /// `(upper bound in seconds, observations at or below it)`, ascending;
    /// the `+Inf` bucket is `count`.
    pub buckets: Vec<(f64, u64)>,
    pub sum_seconds: f64,
    pub count: u64,
}

/// The live counters of one histogram: any number of writers and readers.
#[derive(Debug)]
pub struct LatencyRecorder {
    bounds: Vec<f64>,
    /// Per bucket, not cumulative; the last slot counts what exceeded
    /// every bound.
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

impl LatencyRecorder {
    pub fn new(bounds: Bounds) -> LatencyRecorder {
        LatencyRecorder {
            bounds: bounds.seconds().collect(),
            counts: (0..=bounds.count).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = self.bounds.partition_point(|&bound| bound < seconds);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// A copy in cumulative form. Reads race with `observe`, so the sum
    /// may be an observation ahead of the counts; `count` is derived from
    /// the buckets so that the two always agree.
    pub fn snapshot(&self) -> LatencySnapshot {
        let mut running = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(&self.counts)
            .map(|(&bound, n)| {
                running += n.load(Ordering::Relaxed);
                (bound, running)
            })
            .collect();
        let beyond = self.counts[self.bounds.len()].load(Ordering::Relaxed);
        LatencySnapshot {
            buckets,
            sum_seconds: Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed)).as_secs_f64(),
            count: running + beyond,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_etcds() {
        let commit: Vec<f64> = BACKEND_COMMIT_BOUNDS.seconds().collect();
        assert_eq!((commit[0], commit[13]), (0.001, 8.192));
        let rtt: Vec<f64> = PEER_ROUND_TRIP_BOUNDS.seconds().collect();
        assert_eq!(rtt.len(), 16);
        assert!((rtt[15] - 3.2768).abs() < 1e-12);
    }

    #[test]
    fn observations_land_in_cumulative_buckets_by_upper_bound() {
        let recorder = LatencyRecorder::new(BACKEND_COMMIT_BOUNDS);
        recorder.observe(Duration::from_millis(1)); // on the first bound
        recorder.observe(Duration::from_micros(1_001));
        recorder.observe(Duration::from_secs(10)); // beyond every bound
        let h = recorder.snapshot();
        assert_eq!(h.buckets[0], (0.001, 1));
        assert_eq!(h.buckets[1], (0.002, 2));
        assert_eq!(h.buckets[13].1, 2);
        assert_eq!(h.count, 3);
        assert!((h.sum_seconds - 10.002001).abs() < 1e-9);
    }
}
