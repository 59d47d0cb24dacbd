//! The properties every run must keep, checked after every step, one module
//! per property and each named after the Raft paper's (Figure 3) or the
//! simulator's own guarantees.
//!
//! The [`Checker`] sees what the nodes do: their state after every input
//! (`observe`), every batch of entries they write, every entry they apply,
//! and their disks. It keeps the global knowledge the properties are
//! stated over: the leader of each term and the committed log.
//!
//! A check that fails returns a [`Violation`]: the property it breaks and
//! a [`Breach`] that holds what was seen.

mod breach;
mod commit_monotonic;
mod committed_durable;
mod election_safety;
mod leader_append_only;
mod leader_completeness;
pub mod liveness;
mod log_matching;
mod state_machine_safety;

use std::fmt;
use std::hash::{Hash, Hasher};

use keel_raft::{Entry, LogIndex, NodeId, Payload, Raft, Role, Term};

use crate::disk::LogImage;
use crate::rng::Fnv;

pub use breach::{Breach, CommitRecord, StateReachedBy};
pub use committed_durable::CommittedLog;

/// Which property a violation breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invariant {
    /// At most one leader per term (§5.2).
    ElectionSafety,
    /// A leader never overwrites or deletes entries in its log (§5.3).
    LeaderAppendOnly,
    /// Same index and term means same entry and same prefix (§5.3).
    LogMatching,
    /// A committed entry is in the log of every later leader (§5.4).
    LeaderCompleteness,
    /// No two nodes apply different entries, or reach different states,
    /// at one index (§5.4.3).
    StateMachineSafety,
    /// A committed entry is durable on a quorum, so no crash loses it.
    CommittedDurable,
    /// A node's durable commit index never goes back.
    CommitMonotonic,
    /// `Raft::check_invariants` failed.
    CoreInvariant,
    /// The core asked its caller for something no storage can do.
    StorageContract,
    /// A leader cut off from every other voter steps down within two
    /// election timeouts of its own clock (§6.2, check-quorum).
    CheckQuorum,
    /// After faults stop, the cluster elects a leader and serves clients.
    Liveness,
    /// The client history has no linearization.
    Linearizability,
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Invariant::ElectionSafety => "Election Safety (§5.2)",
            Invariant::LeaderAppendOnly => "Leader Append-Only (§5.3)",
            Invariant::LogMatching => "Log Matching (§5.3)",
            Invariant::LeaderCompleteness => "Leader Completeness (§5.4)",
            Invariant::StateMachineSafety => "State Machine Safety (§5.4.3)",
            Invariant::CommittedDurable => "Committed entries are durable on a quorum",
            Invariant::CommitMonotonic => "Durable commit index never decreases",
            Invariant::CoreInvariant => "Core internal invariant",
            Invariant::StorageContract => "Ready storage contract",
            Invariant::CheckQuorum => "Check-quorum: an isolated leader steps down (§6.2)",
            Invariant::Liveness => "Liveness after heal",
            Invariant::Linearizability => "Linearizability of client history",
        })
    }
}

/// A broken property, with what was seen. Build it from its [`Breach`]
/// (`Violation::from`, or `?`), whose `invariant()` fills `invariant`, so
/// that the two always agree.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{invariant}: {detail}")]
pub struct Violation {
    /// The property.
    pub invariant: Invariant,
    /// What was seen that breaks it, with the values at fault.
    pub detail: Breach,
}

impl From<Breach> for Violation {
    fn from(detail: Breach) -> Violation {
        Violation {
            invariant: detail.invariant(),
            detail,
        }
    }
}

/// A fingerprint of an entry: its term and payload.
pub fn entry_digest(entry: &Entry) -> u64 {
    let mut h = Fnv::default();
    entry.term.hash(&mut h);
    match &entry.payload {
        Payload::Blank => 0u8.hash(&mut h),
        Payload::Command(data) => {
            1u8.hash(&mut h);
            data.as_ref().hash(&mut h);
        }
        Payload::Membership(m) => {
            2u8.hash(&mut h);
            m.voters().hash(&mut h);
            m.outgoing().hash(&mut h);
            m.learners().hash(&mut h);
        }
    }
    h.finish()
}

/// Every property's state.
#[derive(Debug, Default)]
pub struct Checker {
    election: election_safety::ElectionSafety,
    append_only: leader_append_only::LeaderAppendOnly,
    matching: log_matching::LogMatching,
    committed: CommittedLog,
    machine: state_machine_safety::StateMachineSafety,
    /// The commit index advanced since the durability check last ran.
    commit_advanced_by: Option<Term>,
}

impl Checker {
    /// The node's state after an input: runs the core's own checks, and
    /// the properties that depend on roles and commit indexes.
    pub fn observe(&mut self, raft: &Raft) -> Result<(), Violation> {
        raft.check_invariants().map_err(Breach::Core)?;
        let status = raft.status();
        if status.role == Role::Leader && self.election.observe_leader(status.id, status.term)? {
            leader_completeness::check_new_leader(raft, &self.committed)?;
            self.append_only.elected(raft);
        }
        if status.role == Role::Leader {
            self.append_only
                .check_not_shrunk(status.id, status.term, status.last_index)?;
        }
        if self
            .committed
            .extend_from(raft, status.term, status.commit, &status.membership)
        {
            self.commit_advanced_by = Some(status.term);
        }
        self.machine
            .check_committed_prefix(raft, status.commit, &self.committed)
    }

    /// After any node's commit advanced: the committed entries must be
    /// durable on a quorum, and in every leader of a later term.
    pub fn after_commit<'a>(
        &mut self,
        durable_of: impl Fn(NodeId) -> Option<&'a LogImage>,
        leaders: impl Iterator<Item = &'a Raft>,
    ) -> Result<(), Violation> {
        let Some(term) = self.commit_advanced_by.take() else {
            return Ok(());
        };
        self.committed.check_durable(durable_of)?;
        for raft in leaders.filter(|r| r.role() == Role::Leader && r.term() > term) {
            leader_completeness::check_holds_last_committed(raft, &self.committed)?;
        }
        Ok(())
    }

    /// After a crash: what was committed must still be durable.
    pub fn after_crash<'a>(
        &self,
        durable_of: impl Fn(NodeId) -> Option<&'a LogImage>,
    ) -> Result<(), Violation> {
        self.committed.check_durable(durable_of)
    }

    /// A node wrote `entries` (appended by the leader of `leader_term`,
    /// after an entry of `prev_term`): logs only grow at a leader and
    /// match where they share an entry.
    pub fn on_entries_written(
        &mut self,
        node: NodeId,
        leader_term: Option<Term>,
        prev_term: Option<Term>,
        entries: &[Entry],
    ) -> Result<(), Violation> {
        if let Some(term) = leader_term {
            self.append_only.on_written(node, term, entries)?;
        }
        self.matching.on_written(node, prev_term, entries)
    }

    /// A node's durable commit index went from `before` to `after`
    /// (`record` says by which write): it never decreases.
    pub fn on_commit_written(
        &self,
        node: NodeId,
        before: LogIndex,
        after: LogIndex,
        record: CommitRecord,
    ) -> Result<(), Violation> {
        commit_monotonic::check(node, before, after, record)
    }

    /// A node applied `entry`: the committed entry at its index.
    pub fn on_applied(&mut self, node: NodeId, entry: &Entry) -> Result<(), Violation> {
        self.machine.on_applied(node, entry, &self.committed)
    }

    /// A node's state machine stands at `index` with state `digest`
    /// (`how` it got there): every node agrees at each index.
    pub fn on_state(
        &mut self,
        node: NodeId,
        index: LogIndex,
        digest: u64,
        reached_by: StateReachedBy,
    ) -> Result<(), Violation> {
        self.machine.on_state(node, index, digest, reached_by)
    }

    /// A node restarted: its commit index starts over from its disk.
    pub fn restarted(&mut self, node: NodeId) {
        self.machine.restarted(node);
    }

    /// The log known to be committed so far.
    pub fn committed(&self) -> &CommittedLog {
        &self.committed
    }
}
