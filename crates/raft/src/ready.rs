//! The core's output: everything the caller must do, and in which order.

use crate::entry::{Entry, SnapshotMeta};
use crate::message::{Message, ReadId};
use crate::types::{HardState, LogIndex, NodeId, Role, Term};

/// One batch of work for the caller, taken with [`crate::Raft::ready`].
///
/// Handle Readies one at a time, in the order they were taken. Within one
/// Ready the duties are:
///
/// 1. `messages` may be sent at once, even before anything is persisted.
/// 2. Persist `snapshot` (if any), then `entries` (replacing any stored
///    entries at or after the first one's index), then `hard_state` —
///    durably (fsync) — and only then send `persisted_messages`.
/// 3. Report durability with [`crate::Raft::persisted`] using
///    [`Ready::persisted_up_to`] and the proof the store's sync returned
///    ([`crate::DurabilityProof`]).
/// 4. Apply `committed_entries` in order (they are already durable), and
///    report with [`crate::Raft::applied`].
/// 5. Serve `reads` whose result is `Ok` from the state machine: the core
///    only releases them once everything they must observe is applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use = "a Ready holds messages to send and entries to persist"]
pub struct Ready {
    /// Set when the role, term or known leader changed.
    pub soft_state: Option<SoftState>,
    /// Messages that depend on nothing unpersisted: a leader's
    /// AppendEntries, heartbeats and snapshots. A leader may replicate
    /// entries before its own write of them completes (thesis §10.2.1) since
    /// it counts itself toward a quorum only once they are durable.
    pub messages: Vec<Message>,
    /// A snapshot received from the leader: the caller already holds its
    /// data; it must restore the state machine from it and discard the log
    /// it covers before persisting `entries`.
    pub snapshot: Option<SnapshotMeta>,
    /// Entries to append to durable storage. The first entry's index may be
    /// at or below the stored last index: stored entries from there on are
    /// replaced.
    pub entries: Vec<Entry>,
    /// Term, vote and commit to persist. A vote must be durable before the
    /// vote response in `persisted_messages` leaves, or a restarted node
    /// could vote twice in one term (§5.2).
    pub hard_state: Option<HardState>,
    /// Messages that may leave only once `snapshot`, `entries` and
    /// `hard_state` are durable: votes, and acknowledgements of entries.
    pub persisted_messages: Vec<Message>,
    /// Committed entries to apply to the state machine, in order.
    pub committed_entries: Vec<Entry>,
    /// Reads that may now be served, or that failed.
    pub reads: Vec<ReadOutcome>,
}

/// Volatile state worth reporting when it changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoftState {
    /// The node's role.
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// The leader it knows of, if any.
    pub leader: Option<NodeId>,
}

/// The fate of a read request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadOutcome {
    /// The read this is the outcome of.
    pub id: ReadId,
    /// `Ok(index)`: the state machine has applied at least `index`, which
    /// covers every write committed before the read was requested; serve it.
    /// For a read asked with [`crate::Raft::confirm_read_index`], `index` is
    /// only confirmed: serve the read once the state machine has applied it.
    pub result: Result<LogIndex, ReadError>,
}

/// Why a read could not be confirmed. The read may be retried.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// This node is not the leader, and either knows no leader to ask or
    /// the node it asked was not the leader either.
    #[error("this node is not the leader (leader hint: {leader_hint:?})")]
    NotLeader {
        /// The leader this node knows of, if any.
        leader_hint: Option<NodeId>,
    },
    /// Leadership changed before the read was confirmed.
    #[error("leadership changed before the read was confirmed")]
    LeadershipLost,
}

impl Ready {
    /// The `(index, term)` to pass to [`crate::Raft::persisted`] once this
    /// Ready's snapshot and entries are durable.
    pub fn persisted_up_to(&self) -> Option<(LogIndex, Term)> {
        self.entries
            .last()
            .map(|e| (e.index, e.term))
            .or_else(|| self.snapshot.as_ref().map(|s| (s.index, s.term)))
    }

    /// The index to pass to [`crate::Raft::applied`] once `committed_entries`
    /// (and any snapshot) are applied.
    pub fn applied_up_to(&self) -> Option<LogIndex> {
        self.committed_entries
            .last()
            .map(|e| e.index)
            .or_else(|| self.snapshot.as_ref().map(|s| s.index))
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        *self == Ready::default()
    }
}
