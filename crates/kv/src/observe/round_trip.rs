//! etcd's `etcd_network_peer_round_trip_time_seconds`: how long a request
//! to each other member's peer listener takes to come back.
//!
//! etcd measures it with a prober of its own, an HTTP request to each
//! peer's `/raft/probing` every four seconds (`rafthttp/probing_status.go`).
//! Keel does the same over its peer listener, with the cheapest call there
//! is, `Observe/Status` (a read of the member's metrics), through the
//! same connected channels and peer addresses as the web view's
//! [`ClusterObserver`]. So the figure is a round trip through the network,
//! both gRPC stacks and nothing else: no disk, no Raft. etcd observes the
//! prober's smoothed round trip every 30 seconds; Keel observes every
//! probe, which is finer and fills the same buckets.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;

use super::ClusterObserver;
use crate::latency::{LatencyRecorder, LatencySnapshot, PEER_ROUND_TRIP_BOUNDS};

/// How often each peer is probed: etcd's prober interval.
pub const PEER_PROBE_INTERVAL: Duration = Duration::from_secs(4);

/// The round trips measured to each peer, by member ID.
#[derive(Debug, Default)]
pub struct PeerRoundTrips {
    by_peer: Mutex<BTreeMap<u64, Arc<LatencyRecorder>>>,
}

impl PeerRoundTrips {
    /// Each current peer's histogram.
    pub fn snapshot(&self) -> BTreeMap<u64, LatencySnapshot> {
        self.peers()
            .iter()
            .map(|(id, recorder)| (*id, recorder.snapshot()))
            .collect()
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<LatencyRecorder>>> {
        self.by_peer
            .lock()
            .expect("round trip lock poisoned by a panic")
    }

    /// The recorder of each peer in `peers`; peers no longer in the
    /// configuration are dropped, as etcd drops a removed peer's series.
    fn recorders(&self, peers: &[u64]) -> Vec<(u64, Arc<LatencyRecorder>)> {
        let mut by_peer = self.peers();
        by_peer.retain(|id, _| peers.contains(id));
        peers
            .iter()
            .map(|&id| {
                let recorder = by_peer
                    .entry(id)
                    .or_insert_with(|| Arc::new(LatencyRecorder::new(PEER_ROUND_TRIP_BOUNDS)));
                (id, recorder.clone())
            })
            .collect()
    }
}

/// Probes every other member of the configuration each `interval`, all at
/// once, and records the round trip of each that answers within the
/// interval (one that does not is not a round trip). Ends when the node
/// stops.
pub(crate) async fn probe_peers(
    observer: ClusterObserver,
    trips: Arc<PeerRoundTrips>,
    interval: Duration,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(peers) = observer.peers() else {
            return;
        };
        let probes = trips.recorders(&peers).into_iter().map(|(id, recorder)| {
            let observer = observer.clone();
            async move {
                if let Some(took) = observer.round_trip(id, interval).await {
                    recorder.observe(took);
                }
            }
        });
        join_all(probes).await;
    }
}
