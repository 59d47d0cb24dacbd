//! Leader Append-Only (§5.3): a leader never overwrites or deletes entries
//! in its log; it only appends.
//!
//! When a node is first seen leading a term, its log is fingerprinted.
//! Every batch it then hands to its disk must either repeat fingerprinted
//! entries unchanged (ones it received as a follower and had not yet
//! written) or extend the log, and its last index must never shrink.

use std::collections::BTreeMap;

use keel_raft::{Entry, LogIndex, NodeId, Raft, Term};

use super::{Breach, Violation, entry_digest};

#[derive(Debug)]
struct LeaderLog {
    term: Term,
    /// Fingerprint of entry `first + k` at position `k`.
    first: LogIndex,
    digests: Vec<u64>,
}

impl LeaderLog {
    fn last_index(&self) -> LogIndex {
        LogIndex(self.first.0 + self.digests.len() as u64).prev()
    }
}

#[derive(Debug, Default)]
pub struct LeaderAppendOnly {
    logs: BTreeMap<NodeId, LeaderLog>,
}

impl LeaderAppendOnly {
    /// `raft` was just elected: remember its log.
    pub fn elected(&mut self, raft: &Raft) {
        let status = raft.status();
        let mut digests = Vec::new();
        let mut index = status.first_index;
        while let Some(entry) = raft.entry(index) {
            digests.push(entry_digest(entry));
            index = index.next();
        }
        self.logs.insert(
            status.id,
            LeaderLog {
                term: status.term,
                first: status.first_index,
                digests,
            },
        );
    }

    pub fn check_not_shrunk(
        &self,
        node: NodeId,
        term: Term,
        last_index: LogIndex,
    ) -> Result<(), Violation> {
        match self.logs.get(&node) {
            Some(log) if log.term == term && last_index < log.last_index() => {
                Err(Breach::LeaderLogShrank {
                    leader: node,
                    term,
                    from: log.last_index(),
                    to: last_index,
                }
                .into())
            }
            _ => Ok(()),
        }
    }

    /// The leader of `term` writes `entries`.
    pub fn on_written(
        &mut self,
        node: NodeId,
        term: Term,
        entries: &[Entry],
    ) -> Result<(), Violation> {
        let Some(log) = self.logs.get_mut(&node).filter(|l| l.term == term) else {
            return Ok(());
        };
        for entry in entries {
            let digest = entry_digest(entry);
            if entry.index == log.last_index().next() {
                log.digests.push(digest);
                continue;
            }
            let known = entry
                .index
                .0
                .checked_sub(log.first.0)
                .and_then(|k| log.digests.get(k as usize));
            match known {
                Some(&d) if d == digest => {}
                Some(_) => {
                    return Err(Breach::LeaderOverwrote {
                        leader: node,
                        term,
                        index: entry.index,
                        entry_term: entry.term,
                    }
                    .into());
                }
                None => {
                    return Err(Breach::LeaderWroteOutsideLog {
                        leader: node,
                        term,
                        index: entry.index,
                        first: log.first,
                        last: log.last_index(),
                    }
                    .into());
                }
            }
        }
        Ok(())
    }
}
