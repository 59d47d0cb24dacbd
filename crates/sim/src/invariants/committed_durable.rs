//! Committed entries are never lost across crashes: the newest committed
//! entry (and by Log Matching every one before it) is durable on a quorum
//! of the configuration the commit was decided in. A leader that counts
//! an acknowledgement sent before its fsync, or itself before its own
//! fsync, breaks this the moment it commits; a crash then loses the entry.
//!
//! This module also keeps the committed log itself, which the other
//! properties are stated over.

use keel_raft::{LogIndex, Membership, NodeId, Payload, Raft, Term};

use super::{Breach, Violation, entry_digest};
use crate::disk::LogImage;
use crate::kv::{Command, Tag};

/// One committed entry as first seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedEntry {
    /// `None` when the node that reported the commit had compacted it.
    pub term: Option<Term>,
    pub digest: Option<u64>,
    /// The client request it carries, if it is a command.
    pub tag: Option<Tag>,
    /// The term of the node that first reported it committed: the term
    /// it was committed in.
    pub commit_term: Term,
}

/// The log prefix known to be committed.
#[derive(Debug, Default)]
pub struct CommittedLog {
    /// Entry `i` is at position `i - 1`.
    entries: Vec<CommittedEntry>,
    /// The configuration of the node that last advanced the commit index.
    quorum: Membership,
    /// The newest committed configuration entry seen, and its index.
    config: Option<(LogIndex, Membership)>,
}

impl CommittedLog {
    /// The highest committed index.
    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.entries.len() as u64)
    }

    /// The committed entry at `index`, if known.
    pub fn get(&self, index: LogIndex) -> Option<&CommittedEntry> {
        let position = usize::try_from(index.0).ok()?.checked_sub(1)?;
        self.entries.get(position)
    }

    /// Learns the entries up to `commit` from a node whose commit index
    /// passed everything seen so far. Returns whether it did.
    pub(super) fn extend_from(
        &mut self,
        raft: &Raft,
        term: Term,
        commit: LogIndex,
        membership: &Membership,
    ) -> bool {
        if commit <= self.last_index() {
            return false;
        }
        let mut index = self.last_index().next();
        while index <= commit {
            let entry = raft.entry(index);
            if let Some(Payload::Membership(m)) = entry.map(|e| &e.payload) {
                self.config = Some((index, m.clone()));
            }
            self.entries.push(CommittedEntry {
                term: entry.map(|e| e.term),
                digest: entry.map(entry_digest),
                tag: entry.and_then(|e| match &e.payload {
                    Payload::Command(data) => Command::decode(data).ok().map(|c| c.tag),
                    _ => None,
                }),
                commit_term: term,
            });
            index = index.next();
        }
        self.quorum = membership.clone();
        true
    }

    /// The newest committed configuration entry, if one was seen.
    pub fn config(&self) -> Option<&(LogIndex, Membership)> {
        self.config.as_ref()
    }

    /// Whether a durable image holds committed entry `index`.
    fn holds(&self, image: &LogImage, index: LogIndex) -> bool {
        if image.snapshot.index >= index {
            return true;
        }
        let expected = self.get(index).and_then(|c| c.digest);
        image
            .entry(index)
            .is_some_and(|e| expected.is_none_or(|d| d == entry_digest(e)))
    }

    pub(super) fn check_durable<'a>(
        &self,
        durable_of: impl Fn(NodeId) -> Option<&'a LogImage>,
    ) -> Result<(), Violation> {
        let index = self.last_index();
        if index == LogIndex(0) {
            return Ok(());
        }
        let holds = |id: NodeId| durable_of(id).is_some_and(|image| self.holds(image, index));
        if self.quorum.has_quorum(holds) {
            return Ok(());
        }
        Err(Breach::CommittedNotDurable {
            index,
            holders: self
                .quorum
                .nodes()
                .into_iter()
                .filter(|&id| holds(id))
                .collect(),
            voters: self.quorum.voters().clone(),
            outgoing: self.quorum.outgoing().clone(),
        }
        .into())
    }
}
