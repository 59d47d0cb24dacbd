//! What a node publishes about itself, through a `tokio::sync::watch`.

use std::collections::BTreeMap;

use keel_raft::{LogIndex, Membership, NodeId, Role, Status, Term};
use keel_transport::TransportMetrics;

use crate::histogram::LatencyHistogram;

/// A node's state at one moment. Published at least once per tick and on
/// every change of role, term or leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metrics {
    pub id: NodeId,
    pub role: Role,
    pub term: Term,
    pub leader: Option<NodeId>,
    /// The highest index known to be committed.
    pub commit_index: LogIndex,
    /// The highest index the state machine has applied.
    pub applied_index: LogIndex,
    /// The highest index durable in this node's log.
    pub persisted_index: LogIndex,
    pub last_index: LogIndex,
    /// The log's first index; entries before it are in the snapshot.
    pub first_index: LogIndex,
    pub membership: Membership,
    /// Leader only: each follower's replication state.
    pub peers: BTreeMap<NodeId, PeerMetrics>,
    /// Proposals appended and not yet answered.
    pub pending_proposals: usize,
    /// Since start: this node's proposals (commands and configuration
    /// changes) whose entry committed.
    pub proposals_committed: u64,
    /// Since start: this node's proposals whose entry was appended but
    /// that failed (dropped, outcome unknown, node stopped). Refusals
    /// before appending (not leader, overloaded) are not counted, so
    /// appended = committed + failed + pending.
    pub proposals_failed: u64,
    /// Snapshots this node created from its state machine.
    pub snapshots_created: u64,
    /// Snapshots this node installed from a leader.
    pub snapshots_installed: u64,
    pub transport: TransportMetrics,
    /// Per group commit: writing the log and making it durable.
    pub log_append: LatencyHistogram,
    /// Per group commit: the log's `sync` (with the file store, the write
    /// syscalls and the `fdatasync`).
    pub log_sync: LatencyHistogram,
    /// Set when the node has stopped, with the reason.
    pub stopped: Option<String>,
}

/// The leader's view of one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerMetrics {
    /// The highest index known to be replicated on the follower.
    pub match_index: LogIndex,
    /// The next index the leader will send.
    pub next_index: LogIndex,
}

impl Metrics {
    pub(crate) fn from_status(status: Status) -> Metrics {
        Metrics {
            id: status.id,
            role: status.role,
            term: status.term,
            leader: status.leader,
            commit_index: status.commit,
            applied_index: status.applied,
            persisted_index: status.persisted,
            last_index: status.last_index,
            first_index: status.first_index,
            membership: status.membership,
            peers: status
                .progress
                .iter()
                .map(|(&id, p)| {
                    let peer = PeerMetrics {
                        match_index: p.match_index(),
                        next_index: p.next_index(),
                    };
                    (id, peer)
                })
                .collect(),
            pending_proposals: 0,
            proposals_committed: 0,
            proposals_failed: 0,
            snapshots_created: 0,
            snapshots_installed: 0,
            transport: TransportMetrics::default(),
            log_append: LatencyHistogram::default(),
            log_sync: LatencyHistogram::default(),
            stopped: None,
        }
    }
}
