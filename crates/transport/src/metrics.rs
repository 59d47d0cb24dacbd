//! Counters of what the transport sent, dropped and refused.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters, shared by the transport's tasks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) sent_msgs: AtomicU64,
    pub(crate) sent_batches: AtomicU64,
    pub(crate) dropped_queue_full: AtomicU64,
    pub(crate) dropped_unreachable: AtomicU64,
    pub(crate) dropped_unknown_peer: AtomicU64,
    pub(crate) stream_failures: AtomicU64,
    pub(crate) received_msgs: AtomicU64,
    pub(crate) dropped_inbox_full: AtomicU64,
    pub(crate) rejected_malformed: AtomicU64,
    pub(crate) rejected_wrong_cluster: AtomicU64,
    pub(crate) rejected_wrong_version: AtomicU64,
    pub(crate) rejected_wrong_node: AtomicU64,
    pub(crate) snapshots_sent: AtomicU64,
    pub(crate) snapshots_received: AtomicU64,
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// A copy of the transport's counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportMetrics {
    /// Messages handed to a peer stream or vote call.
    pub sent_msgs: u64,
    /// Stream writes (each carries one batch of messages).
    pub sent_batches: u64,
    /// Messages dropped because a peer's queue was full.
    pub dropped_queue_full: u64,
    /// Messages dropped because their peer was unreachable.
    pub dropped_unreachable: u64,
    /// Messages dropped because no address is known for their peer.
    pub dropped_unknown_peer: u64,
    /// Peer streams that failed (connect errors, resets, refusals).
    pub stream_failures: u64,
    /// Valid messages received.
    pub received_msgs: u64,
    /// Received messages dropped because the node's inbox was full.
    pub dropped_inbox_full: u64,
    /// Received messages or calls refused as malformed.
    pub rejected_malformed: u64,
    /// Calls refused because they came from another cluster.
    pub rejected_wrong_cluster: u64,
    /// Calls refused because they spoke another protocol version.
    pub rejected_wrong_version: u64,
    /// Messages refused because they were addressed to another node.
    pub rejected_wrong_node: u64,
    /// Snapshots sent to a peer in full (every chunk accepted).
    pub snapshots_sent: u64,
    /// Snapshots received in full (the last chunk stored).
    pub snapshots_received: u64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> TransportMetrics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TransportMetrics {
            sent_msgs: get(&self.sent_msgs),
            sent_batches: get(&self.sent_batches),
            dropped_queue_full: get(&self.dropped_queue_full),
            dropped_unreachable: get(&self.dropped_unreachable),
            dropped_unknown_peer: get(&self.dropped_unknown_peer),
            stream_failures: get(&self.stream_failures),
            received_msgs: get(&self.received_msgs),
            dropped_inbox_full: get(&self.dropped_inbox_full),
            rejected_malformed: get(&self.rejected_malformed),
            rejected_wrong_cluster: get(&self.rejected_wrong_cluster),
            rejected_wrong_version: get(&self.rejected_wrong_version),
            rejected_wrong_node: get(&self.rejected_wrong_node),
            snapshots_sent: get(&self.snapshots_sent),
            snapshots_received: get(&self.snapshots_received),
        }
    }
}
