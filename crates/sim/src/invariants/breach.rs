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
/// Each case's `#[error]` sentence puts its fields' values into words;
/// [`Breach::invariant`] names the property it breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Breach {
    // Election Safety.
    /// Election Safety (§5.2): two nodes led one term.
    #[error("nodes {first} and {second} both lead term {term}")]
    TwoLeaders {
        /// The term both led.
        term: Term,
        /// The node first seen leading it.
        first: NodeId,
        /// The node later seen leading it too.
        second: NodeId,
    },

    // Leader Append-Only.
    /// Leader Append-Only (§5.3): a leader's last log index went down.
    #[error("leader {leader} of term {term} shrank its log from {from} to {to}")]
    LeaderLogShrank {
        /// The leader.
        leader: NodeId,
        /// The term it leads.
        term: Term,
        /// Its last index as recorded before.
        from: LogIndex,
        /// Its last index now, lower.
        to: LogIndex,
    },
    /// Leader Append-Only (§5.3): a leader overwrote an entry of its log with another.
    #[error(
        "leader {leader} of term {term} overwrote its entry {index} with one of term {entry_term}"
    )]
    LeaderOverwrote {
        /// The leader.
        leader: NodeId,
        /// The term it leads.
        term: Term,
        /// The index of the overwritten entry.
        index: LogIndex,
        /// The term of the entry it wrote there.
        entry_term: Term,
    },
    /// Leader Append-Only (§5.3): a leader wrote an entry neither in its log nor next after it.
    #[error("leader {leader} of term {term} wrote entry {index} outside its log {first}..={last}")]
    LeaderWroteOutsideLog {
        /// The leader.
        leader: NodeId,
        /// The term it leads.
        term: Term,
        /// The index of the entry it wrote.
        index: LogIndex,
        /// The first index of its log as recorded when it was elected.
        first: LogIndex,
        /// The last index of its log as recorded since.
        last: LogIndex,
    },

    // Log Matching.
    /// Log Matching (§5.3): two nodes wrote different entries with one index and term.
    #[error(
        "node {node} wrote a different entry at index {index} term {term} than node {first_writer} did"
    )]
    DifferentEntry {
        /// The node that wrote the differing entry.
        node: NodeId,
        /// The entry's index.
        index: LogIndex,
        /// The entry's term.
        term: Term,
        /// The node that first wrote an entry at that index and term.
        first_writer: NodeId,
    },
    /// Log Matching (§5.3): one index and term followed different terms on two nodes.
    #[error(
        "entry {index} of term {term} follows term {prev_term:?} on node {node} \
         but term {first_prev_term:?} on node {first_writer}"
    )]
    DifferentPrefix {
        /// The entry's index.
        index: LogIndex,
        /// The entry's term.
        term: Term,
        /// The node that wrote it after a different term.
        node: NodeId,
        /// The term of the entry before it on `node`; `None` if its log lacked that entry.
        prev_term: Option<Term>,
        /// The node that first wrote the entry.
        first_writer: NodeId,
        /// The term of the entry before it on `first_writer`, when that node wrote it.
        first_prev_term: Option<Term>,
    },

    // Leader Completeness.
    /// Leader Completeness (§5.4): a leader's log lacks an entry committed before its term.
    #[error(
        "leader {leader} of term {term} lacks committed entry {index}: it holds {}",
        Held(.held_term)
    )]
    LeaderLacksCommitted {
        /// The leader.
        leader: NodeId,
        /// The term it leads.
        term: Term,
        /// The index of the committed entry.
        index: LogIndex,
        /// The term of the entry it holds there instead, if any.
        held_term: Option<Term>,
    },

    // State Machine Safety.
    /// State Machine Safety (§5.4.3): a node applied an entry not yet known committed.
    #[error("node {node} applied entry {index} beyond the commit index {commit}")]
    AppliedUncommitted {
        /// The node.
        node: NodeId,
        /// The index of the entry it applied.
        index: LogIndex,
        /// The highest index known committed.
        commit: LogIndex,
    },
    /// State Machine Safety (§5.4.3): a node applied another entry than the committed one.
    #[error(
        "node {node} applied entry {index} of term {term}, but the committed one has term {committed_term:?}"
    )]
    AppliedOtherEntry {
        /// The node.
        node: NodeId,
        /// The index of the entry it applied.
        index: LogIndex,
        /// The term of the entry it applied.
        term: Term,
        /// The committed entry's term; `None` if the node reporting it had compacted it.
        committed_term: Option<Term>,
    },
    /// State Machine Safety (§5.4.3): a node applied a command entry that does not decode.
    #[error("node {node} applied a corrupt entry {index}: {error}")]
    AppliedCorruptEntry {
        /// The node.
        node: NodeId,
        /// The index of the entry.
        index: LogIndex,
        /// Why the command did not decode.
        #[source]
        error: DecodeError,
    },
    /// State Machine Safety (§5.4.3): two state machines at one index were in different states.
    #[error(
        "node {node}'s state machine at index {index} ({reached_by}) differs from node {first}'s"
    )]
    StatesDiffer {
        /// The node whose state differs.
        node: NodeId,
        /// The index both state machines reached.
        index: LogIndex,
        /// How `node` reached `index`.
        reached_by: StateReachedBy,
        /// The node that first reached `index`, in the other state.
        first: NodeId,
    },
    /// State Machine Safety (§5.4.3): a node's log holds another entry than the committed one.
    #[error(
        "node {node} considers entry {index} of term {term} committed, \
         but a different entry was committed there"
    )]
    CommittedOtherEntry {
        /// The node.
        node: NodeId,
        /// The index of the entry.
        index: LogIndex,
        /// The term of the entry in its log.
        term: Term,
    },

    // Committed entries are durable.
    /// Durability: the newest committed entry was on no quorum's disks; a crash could lose it.
    #[error(
        "committed entry {index} is durable only on nodes {:?}, not on a quorum of {voters:?} (outgoing {outgoing:?})",
        numbers(.holders)
    )]
    CommittedNotDurable {
        /// The index of the newest committed entry.
        index: LogIndex,
        /// The nodes of that configuration whose durable log or snapshot holds it.
        holders: Vec<NodeId>,
        /// The configuration's incoming (or only) voters.
        voters: BTreeSet<NodeId>,
        /// The configuration's outgoing voters; empty unless joint.
        outgoing: BTreeSet<NodeId>,
    },

    // The durable commit index never decreases.
    /// Commit monotonicity: a node's durable commit index went down.
    #[error("node {node}: commit index went from {from} back to {to} ({record})")]
    CommitWentBack {
        /// The node.
        node: NodeId,
        /// Its commit index before.
        from: LogIndex,
        /// Its commit index after, lower.
        to: LogIndex,
        /// Which record of the commit index went down.
        record: CommitRecord,
    },

    /// The core's own check (`Raft::check_invariants`) failed.
    #[error(transparent)]
    Core(#[from] InvariantViolation),

    // The Ready storage contract.
    /// Storage contract: a node's core refused to start from its durable state.
    #[error("restart: {0}")]
    RestartRefused(#[source] RestoreError),
    /// Storage contract: a node's core asked its disk for a write no disk can do.
    #[error("node {node}: the core asked for an impossible write: {error}")]
    ImpossibleWrite {
        /// The node.
        node: NodeId,
        /// Why the disk refused the write.
        #[source]
        error: WriteError,
    },
    /// Storage contract: a node's core asked to install a snapshot whose data never arrived.
    #[error("node {node} was told to install snapshot {index} whose data never arrived")]
    SnapshotDataMissing {
        /// The node.
        node: NodeId,
        /// The snapshot's last included index.
        index: LogIndex,
    },
    /// Storage contract: a node sent a snapshot whose data it does not hold.
    #[error("node {node} sent snapshot {index} it does not hold")]
    SnapshotNotHeld {
        /// The sending node.
        node: NodeId,
        /// The snapshot's last included index.
        index: LogIndex,
    },

    // Check-quorum.
    /// Check-quorum (§6.2): a leader cut off from every other node did not step down.
    #[error(
        "node {leader} still leads term {term} {ticks_cut_off} ticks after it was cut \
         off from every other node; check-quorum steps down within {limit_ticks}"
    )]
    IsolatedLeaderStayed {
        /// The isolated leader.
        leader: NodeId,
        /// The term it still leads.
        term: Term,
        /// Ticks of its own clock since it was cut off.
        ticks_cut_off: u64,
        /// Ticks within which it must step down: two election timeouts.
        limit_ticks: u64,
    },

    // Liveness after heal.
    /// Liveness: no leader at the end of the heal phase.
    #[error("no leader {heal_ticks} ticks after faults stopped")]
    NoLeaderAfterHeal {
        /// The length of the heal phase, in ticks.
        heal_ticks: u64,
    },
    /// Liveness: a member of the leader's configuration was not running after the heal.
    #[error("member {member} of the leader's configuration is not running")]
    MemberNotRunning {
        /// The member that is not running.
        member: NodeId,
    },
    /// Liveness: a member did not follow the leader in its term after the heal.
    #[error(
        "member {member} follows {follows:?} in term {term}, not leader {leader} of term {leader_term}"
    )]
    MemberNotFollowing {
        /// The member.
        member: NodeId,
        /// The leader it follows, if it knows one.
        follows: Option<NodeId>,
        /// The member's term.
        term: Term,
        /// The leader.
        leader: NodeId,
        /// The leader's term.
        leader_term: Term,
    },
    /// Liveness: a member had not applied up to the leader's commit index after the heal.
    #[error("member {member} applied {applied} but the leader committed {commit}")]
    MemberBehind {
        /// The member.
        member: NodeId,
        /// The member's applied index.
        applied: LogIndex,
        /// The leader's commit index.
        commit: LogIndex,
    },
    /// Liveness: a client request sent well after the heal timed out.
    #[error(
        "client {client} request {request} was sent {settle_ticks}+ ticks after faults stopped, and timed out"
    )]
    LateTimeout {
        /// The client, counted from 1.
        client: u32,
        /// The request's number within the client.
        request: u32,
        /// How long after the heal clients had to recover.
        settle_ticks: u64,
    },
    /// Liveness: a client completed no write in the settled part of the heal phase.
    #[error("client {client} completed no write between {from} and {to}")]
    NoWriteAfterHeal {
        /// The client, counted from 1.
        client: usize,
        /// When clients were due to have recovered from the heal.
        from: Micros,
        /// When the drain began, after which clients start nothing new.
        to: Micros,
    },

    // Linearizability.
    /// Linearizability: the client history has none; holds the checker's refutation.
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
