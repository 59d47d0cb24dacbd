//! What the node loop hands the storage thread — one Ready's durable part,
//! a [`WriteBatch`] — and what comes back once a group commit made it
//! durable, a [`DurableWrite`] carrying the store's proof. Both the
//! storage thread and the driver's events speak of them, so they live
//! apart from either.

use keel_raft::{Entry, HardState, LogIndex, Message, SnapshotMeta, Term};
use keel_storage::{Durable, LogStore};

/// One Ready's durable part.
#[derive(Debug)]
pub struct WriteBatch {
    /// Its position in the node loop's sequence of writes.
    pub seq: u64,
    /// A snapshot received from the leader (already published in the
    /// snapshot store): the log is compacted to it before `entries`.
    pub snapshot: Option<SnapshotMeta>,
    /// Entries to append, replacing any stored from the first one's index.
    pub entries: Vec<Entry>,
    /// A new term, vote or commit index to record, if any.
    pub hard_state: Option<HardState>,
    /// What to report to the core once durable.
    pub persisted_up_to: Option<(LogIndex, Term)>,
    /// Messages that may leave only once this batch is durable.
    pub messages: Vec<Message>,
    /// Whether the batch must be fsynced before it counts as persisted:
    /// it holds entries, a snapshot, or a new term or vote. Not when it
    /// only moves the commit index, which may be lost in a crash (it rides
    /// along with the next sync), or only carries messages, whose grounds
    /// an earlier or the same group commit makes durable: a commit then
    /// costs no fsync on the path of the next proposal.
    pub must_sync: bool,
}

/// What one write batch made durable, with the proof: the core
/// acknowledges `up_to` only against the store's [`Durable`]
/// ([`keel_raft::Raft::persisted`]).
#[derive(Clone, Debug)]
pub struct DurableWrite {
    /// The batch's `persisted_up_to`: its last entry, or its snapshot.
    pub up_to: (LogIndex, Term),
    /// What the sync that covered the batch returned.
    pub proof: Durable,
}

impl DurableWrite {
    /// What a batch whose `persisted_up_to` is `up_to` made durable, once
    /// its group commit returned `proof` (`None` when the group needed no
    /// sync); `None` for a batch with no entries and no snapshot.
    ///
    /// # Panics
    /// If the batch holds entries or a snapshot and no sync covered it:
    /// such a batch is always [`WriteBatch::must_sync`].
    pub fn after_sync(
        up_to: Option<(LogIndex, Term)>,
        proof: Option<&Durable>,
    ) -> Option<DurableWrite> {
        let up_to = up_to?;
        let proof = proof.expect("a batch with entries or a snapshot is synced before it is done");
        Some(DurableWrite {
            up_to,
            proof: proof.clone(),
        })
    }
}

impl WriteBatch {
    /// A batch that writes nothing, at position `seq`: it is reported
    /// durable only once everything queued before it is, which is how the
    /// node loop learns that a compaction was synced.
    pub fn barrier(seq: u64) -> WriteBatch {
        WriteBatch {
            seq,
            snapshot: None,
            entries: Vec::new(),
            hard_state: None,
            persisted_up_to: None,
            messages: Vec::new(),
            must_sync: false,
        }
    }

    /// Writes the batch to `log` (not yet durable): compaction to the
    /// leader's snapshot first, then the entries, then the hard state.
    pub fn write_to(&self, log: &mut dyn LogStore) {
        if let Some(meta) = &self.snapshot {
            log.compact(meta.index, meta.term);
        }
        if !self.entries.is_empty() {
            log.append(&self.entries);
        }
        if let Some(hs) = &self.hard_state {
            log.set_hard_state(hs.clone());
        }
    }
}
