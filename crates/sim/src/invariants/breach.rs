//! What a broken property looked like: one case per check that can fail,
//! holding the values it saw (nodes, terms, indexes, the checker's
//! refutation), so that a test matches the case and a person reads the
//! sentence its `Display` makes of them.

use std::collections::BTreeSet;
use std::fmt;

use keel_raft::{InvariantViolation, LogIndex, NodeId, RestoreError, Term};

use super::Invariant;
use crate::disk::WriteError;
use crate::kv::DecodeError;
use crate::time::Micros;
use crate::verdict::Refutation;

/// A broken property, with what was seen.
///
/// Each case's `#[error]` sentence says what every one of its fields holds;
/// doc comments on them would repeat it, so the crate's `missing_docs`
/// check is waived here alone.
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Breach {
    // Election Safety.
    #[error("nodes {first} and {second} both lead term {term}")]
    TwoLeaders {
        term: Term,
        first: NodeId,
        second: NodeId,
    },

    // Leader Append-Only.
    #[error("leader {leader} of term {term} shrank its log from {from} to {to}")]
    LeaderLogShrank {
        leader: NodeId,
        term: Term,
        from: LogIndex,
        to: LogIndex,
    },
    #[error(
        "leader {leader} of term {term} overwrote its entry {index} with one of term {entry_term}"
    )]
    LeaderOverwrote {
        leader: NodeId,
        term: Term,
        index: LogIndex,
        entry_term: Term,
    },
    #[error("leader {leader} of term {term} wrote entry {index} outside its log {first}..={last}")]
    LeaderWroteOutsideLog {
        leader: NodeId,
        term: Term,
        index: LogIndex,
        first: LogIndex,
        last: LogIndex,
    },

    // Log Matching.
    #[error(
        "node {node} wrote a different entry at index {index} term {term} than node {first_writer} did"
    )]
    DifferentEntry {
        node: NodeId,
        index: LogIndex,
        term: Term,
        first_writer: NodeId,
    },
    #[error(
        "entry {index} of term {term} follows term {prev_term:?} on node {node} \
         but term {first_prev_term:?} on node {first_writer}"
    )]
    DifferentPrefix {
        index: LogIndex,
        term: Term,
        node: NodeId,
        prev_term: Option<Term>,
        first_writer: NodeId,
        first_prev_term: Option<Term>,
    },

    // Leader Completeness.
    #[error(
        "leader {leader} of term {term} lacks committed entry {index}: it holds {}",
        Held(.held_term)
    )]
    LeaderLacksCommitted {
        leader: NodeId,
        term: Term,
        index: LogIndex,
        /// The term of the entry it holds there instead, if any.
        held_term: Option<Term>,
    },

    // State Machine Safety.
    #[error("node {node} applied entry {index} beyond the commit index {commit}")]
    AppliedUncommitted {
        node: NodeId,
        index: LogIndex,
        commit: LogIndex,
    },
    #[error(
        "node {node} applied entry {index} of term {term}, but the committed one has term {committed_term:?}"
    )]
    AppliedOtherEntry {
        node: NodeId,
        index: LogIndex,
        term: Term,
        /// `None` when the node that reported the commit had compacted it.
        committed_term: Option<Term>,
    },
    #[error("node {node} applied a corrupt entry {index}: {error}")]
    AppliedCorruptEntry {
        node: NodeId,
        index: LogIndex,
        #[source]
        error: DecodeError,
    },
    #[error(
        "node {node}'s state machine at index {index} ({reached_by}) differs from node {first}'s"
    )]
    StatesDiffer {
        node: NodeId,
        index: LogIndex,
        reached_by: StateReachedBy,
        /// The node that first reached `index`, in the other state.
        first: NodeId,
    },
    #[error(
        "node {node} considers entry {index} of term {term} committed, \
         but a different entry was committed there"
    )]
    CommittedOtherEntry {
        node: NodeId,
        index: LogIndex,
        term: Term,
    },

    // Committed entries are durable.
    #[error(
        "committed entry {index} is durable only on nodes {:?}, not on a quorum of {voters:?} (outgoing {outgoing:?})",
        numbers(.holders)
    )]
    CommittedNotDurable {
        index: LogIndex,
        holders: Vec<NodeId>,
        voters: BTreeSet<NodeId>,
        outgoing: BTreeSet<NodeId>,
    },

    // The durable commit index never decreases.
    #[error("node {node}: commit index went from {from} back to {to} ({record})")]
    CommitWentBack {
        node: NodeId,
        from: LogIndex,
        to: LogIndex,
        record: CommitRecord,
    },

    /// The core's own check (`Raft::check_invariants`) failed.
    #[error(transparent)]
    Core(#[from] InvariantViolation),

    // The Ready storage contract.
    #[error("restart: {0}")]
    RestartRefused(#[source] RestoreError),
    #[error("node {node}: the core asked for an impossible write: {error}")]
    ImpossibleWrite {
        node: NodeId,
        #[source]
        error: WriteError,
    },
    #[error("node {node} was told to install snapshot {index} whose data never arrived")]
    SnapshotDataMissing { node: NodeId, index: LogIndex },
    #[error("node {node} sent snapshot {index} it does not hold")]
    SnapshotNotHeld { node: NodeId, index: LogIndex },

    // Check-quorum.
    #[error(
        "node {leader} still leads term {term} {ticks_cut_off} ticks after it was cut \
         off from every other node; check-quorum steps down within {limit_ticks}"
    )]
    IsolatedLeaderStayed {
        leader: NodeId,
        term: Term,
        ticks_cut_off: u64,
        limit_ticks: u64,
    },

    // Liveness after heal.
    #[error("no leader {heal_ticks} ticks after faults stopped")]
    NoLeaderAfterHeal { heal_ticks: u64 },
    #[error("member {member} of the leader's configuration is not running")]
    MemberNotRunning { member: NodeId },
    #[error(
        "member {member} follows {follows:?} in term {term}, not leader {leader} of term {leader_term}"
    )]
    MemberNotFollowing {
        member: NodeId,
        follows: Option<NodeId>,
        term: Term,
        leader: NodeId,
        leader_term: Term,
    },
    #[error("member {member} applied {applied} but the leader committed {commit}")]
    MemberBehind {
        member: NodeId,
        applied: LogIndex,
        commit: LogIndex,
    },
    #[error(
        "client {client} request {request} was sent {settle_ticks}+ ticks after faults stopped, and timed out"
    )]
    LateTimeout {
        client: u32,
        request: u32,
        /// How long after the heal clients had to recover.
        settle_ticks: u64,
    },
    #[error("client {client} completed no write between {from} and {to}")]
    NoWriteAfterHeal {
        /// Counted from 1.
        client: usize,
        from: Micros,
        to: Micros,
    },

    // Linearizability.
    #[error("{0}")]
    NotLinearizable(Refutation),
}

impl Breach {
    /// The property this breaks.
    pub fn invariant(&self) -> Invariant {
        match self {
            Breach::TwoLeaders { .. } => Invariant::ElectionSafety,
            Breach::LeaderLogShrank { .. }
            | Breach::LeaderOverwrote { .. }
            | Breach::LeaderWroteOutsideLog { .. } => Invariant::LeaderAppendOnly,
            Breach::DifferentEntry { .. } | Breach::DifferentPrefix { .. } => {
                Invariant::LogMatching
            }
            Breach::LeaderLacksCommitted { .. } => Invariant::LeaderCompleteness,
            Breach::AppliedUncommitted { .. }
            | Breach::AppliedOtherEntry { .. }
            | Breach::AppliedCorruptEntry { .. }
            | Breach::StatesDiffer { .. }
            | Breach::CommittedOtherEntry { .. } => Invariant::StateMachineSafety,
            Breach::CommittedNotDurable { .. } => Invariant::CommittedDurable,
            Breach::CommitWentBack { .. } => Invariant::CommitMonotonic,
            Breach::Core(_) => Invariant::CoreInvariant,
            Breach::RestartRefused(_)
            | Breach::ImpossibleWrite { .. }
            | Breach::SnapshotDataMissing { .. }
            | Breach::SnapshotNotHeld { .. } => Invariant::StorageContract,
            Breach::IsolatedLeaderStayed { .. } => Invariant::CheckQuorum,
            Breach::NoLeaderAfterHeal { .. }
            | Breach::MemberNotRunning { .. }
            | Breach::MemberNotFollowing { .. }
            | Breach::MemberBehind { .. }
            | Breach::LateTimeout { .. }
            | Breach::NoWriteAfterHeal { .. } => Invariant::Liveness,
            Breach::NotLinearizable(_) => Invariant::Linearizability,
        }
    }
}

/// How a state machine reached the index its state is compared at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateReachedBy {
    /// Applying committed entries.
    AppliedEntries,
    /// Installing a leader's snapshot.
    InstalledSnapshot,
    /// Restoring its own newest snapshot when it restarted.
    SnapshotRestoredOnRestart,
}

impl fmt::Display for StateReachedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StateReachedBy::AppliedEntries => "applied entries",
            StateReachedBy::InstalledSnapshot => "installed snapshot",
            StateReachedBy::SnapshotRestoredOnRestart => "snapshot restored on restart",
        })
    }
}

/// Which record of a node's commit index is compared with the one before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitRecord {
    /// A hard state handed to the disk.
    WrittenHardState,
    /// The hard state an fsync made durable.
    DurableHardState,
    /// The commit index a restarted core starts from.
    Restart,
}

impl fmt::Display for CommitRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CommitRecord::WrittenHardState => "written hard state",
            CommitRecord::DurableHardState => "durable hard state",
            CommitRecord::Restart => "restart",
        })
    }
}

/// What a leader holds where a committed entry should be.
struct Held<'a>(&'a Option<Term>);

impl fmt::Display for Held<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("nothing"),
            Some(term) => write!(f, "an entry of term {term}"),
        }
    }
}

/// Node ids as bare numbers, the way a person lists them.
fn numbers(ids: &[NodeId]) -> Vec<u64> {
    ids.iter().map(|id| id.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::Violation;

    /// The line `--ack-before-fsync --seed 3` prints, from the values.
    #[test]
    fn a_report_says_what_broke_with_its_values() {
        let violation = Violation::from(Breach::CommittedNotDurable {
            index: LogIndex(221),
            holders: vec![NodeId(2), NodeId(3)],
            voters: [1, 2, 3, 4].map(NodeId).into(),
            outgoing: BTreeSet::new(),
        });
        assert_eq!(violation.invariant, Invariant::CommittedDurable);
        assert_eq!(
            violation.to_string(),
            "Committed entries are durable on a quorum: committed entry 221 is durable only \
             on nodes [2, 3], not on a quorum of {NodeId(1), NodeId(2), NodeId(3), NodeId(4)} \
             (outgoing {})"
        );
    }

    #[test]
    fn a_leader_lacking_a_committed_entry_says_what_it_holds_instead() {
        let lacks = |held_term| {
            Breach::LeaderLacksCommitted {
                leader: NodeId(2),
                term: Term(5),
                index: LogIndex(9),
                held_term,
            }
            .to_string()
        };
        assert_eq!(
            lacks(None),
            "leader 2 of term 5 lacks committed entry 9: it holds nothing"
        );
        assert_eq!(
            lacks(Some(Term(3))),
            "leader 2 of term 5 lacks committed entry 9: it holds an entry of term 3"
        );
    }
}
