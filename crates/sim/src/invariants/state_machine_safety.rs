//! State Machine Safety (§5.4.3): if a node has applied an entry at an
//! index, no other node ever applies a different entry at that index.
//!
//! Checked three ways: every applied entry must be the committed one;
//! every node's log must agree with the committed log up to its commit
//! index; and state machines that reached one index — by applying entries
//! or by installing or restoring a snapshot — must be in the same state.

use std::collections::{BTreeMap, HashMap};

use keel_raft::{Entry, LogIndex, NodeId, Raft};

use super::{Breach, CommittedLog, StateReachedBy, Violation, entry_digest};

#[derive(Debug, Default)]
pub struct StateMachineSafety {
    /// The state digest first reached at each index, and by whom.
    states: HashMap<LogIndex, (u64, NodeId)>,
    /// Per node, the commit index up to which its log was compared.
    compared_to: BTreeMap<NodeId, LogIndex>,
}

impl StateMachineSafety {
    pub fn on_applied(
        &mut self,
        node: NodeId,
        entry: &Entry,
        committed: &CommittedLog,
    ) -> Result<(), Violation> {
        match committed.get(entry.index) {
            None => Err(Breach::AppliedUncommitted {
                node,
                index: entry.index,
                commit: committed.last_index(),
            }
            .into()),
            Some(c) if c.digest.is_some_and(|d| d != entry_digest(entry)) => {
                Err(Breach::AppliedOtherEntry {
                    node,
                    index: entry.index,
                    term: entry.term,
                    committed_term: c.term,
                }
                .into())
            }
            Some(_) => Ok(()),
        }
    }

    pub fn on_state(
        &mut self,
        node: NodeId,
        index: LogIndex,
        digest: u64,
        reached_by: StateReachedBy,
    ) -> Result<(), Violation> {
        let (first, by) = *self.states.entry(index).or_insert((digest, node));
        if first != digest {
            return Err(Breach::StatesDiffer {
                node,
                index,
                reached_by,
                first: by,
            }
            .into());
        }
        Ok(())
    }

    /// The node's log agrees with the committed log up to its commit index
    /// (compared incrementally as the commit index grows).
    pub fn check_committed_prefix(
        &mut self,
        raft: &Raft,
        commit: LogIndex,
        committed: &CommittedLog,
    ) -> Result<(), Violation> {
        let node = raft.id();
        let from = self.compared_to.get(&node).copied().unwrap_or_default();
        if commit <= from {
            return Ok(());
        }
        let mut index = from.next();
        while index <= commit {
            let expected = committed.get(index).and_then(|c| c.digest);
            if let (Some(entry), Some(expected)) = (raft.entry(index), expected)
                && entry_digest(entry) != expected
            {
                return Err(Breach::CommittedOtherEntry {
                    node,
                    index,
                    term: entry.term,
                }
                .into());
            }
            index = index.next();
        }
        self.compared_to.insert(node, commit);
        Ok(())
    }

    /// A node restarted: its commit index starts over from its disk.
    pub fn restarted(&mut self, node: NodeId) {
        self.compared_to.remove(&node);
    }
}
