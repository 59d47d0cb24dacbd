//! The simulated disk of one node: what it wrote, and what survived.
//!
//! Writes land in `latest` at once but become durable only at the next
//! [`Disk::sync`] (the `fsync`). A crash keeps the durable image plus, at
//! most, a prefix of the unsynced writes — the way a write-ahead log keeps
//! whatever reached the platter in order — possibly ending in a torn record
//! that holds only some of its entries. Keeping unsynced writes is allowed
//! (nobody was told they were durable); losing synced ones never happens.

use keel_raft::{
    DurabilityProof, Entry, HardState, LogIndex, Membership, Payload, RestoredState, SnapshotMeta,
    Term,
};

use crate::kv::KvState;

/// One write the node's Ready loop asks for, in Ready order.
#[derive(Clone, Debug)]
pub enum Write {
    /// A snapshot received from the leader: replaces the whole log.
    Snapshot {
        meta: SnapshotMeta,
        data: KvState,
    },
    /// Entries replacing everything stored from the first one's index on.
    Entries(Vec<Entry>),
    HardState(HardState),
}

/// A write the core asked for that no log store could perform: a bug in
/// the core's Ready contract.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("entries start at {first} but the stored log ends at {last}: a gap")]
    Gap { first: LogIndex, last: LogIndex },
    #[error("entries start at {first}, inside the snapshot that ends at {snapshot}")]
    BelowSnapshot { first: LogIndex, snapshot: LogIndex },
}

/// A node's log as some reader of the disk would see it.
#[derive(Clone, Debug)]
pub struct LogImage {
    pub hard_state: HardState,
    pub snapshot: SnapshotMeta,
    /// The state machine at `snapshot.index`.
    pub snapshot_data: KvState,
    /// Invariant: `entries[k].index == snapshot.index + 1 + k`.
    pub entries: Vec<Entry>,
}

impl LogImage {
    fn new(membership: Membership) -> LogImage {
        let state = RestoredState::bootstrap(membership);
        LogImage {
            hard_state: state.hard_state,
            snapshot: state.snapshot,
            snapshot_data: KvState::default(),
            entries: state.entries,
        }
    }

    pub fn last_index(&self) -> LogIndex {
        self.entries.last().map_or(self.snapshot.index, |e| e.index)
    }

    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        if index <= self.snapshot.index {
            return None;
        }
        self.entries
            .get((index.0 - self.snapshot.index.0 - 1) as usize)
    }

    /// The term at `index`: an entry's, or the snapshot's at its boundary.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot.index {
            return Some(self.snapshot.term);
        }
        self.entry(index).map(|e| e.term)
    }

    /// The configuration in force at `index` (the last one at or before it).
    pub fn membership_at(&self, index: LogIndex) -> Membership {
        let upto = (index.0.saturating_sub(self.snapshot.index.0) as usize).min(self.entries.len());
        self.entries[..upto]
            .iter()
            .rev()
            .find_map(|e| match &e.payload {
                Payload::Membership(m) => Some(m.clone()),
                _ => None,
            })
            .unwrap_or_else(|| self.snapshot.membership.clone())
    }

    /// The configuration at the end of the log (the one a restart adopts)
    /// and the index of the entry that set it.
    pub fn latest_membership(&self) -> (LogIndex, Membership) {
        self.entries
            .iter()
            .rev()
            .find_map(|e| match &e.payload {
                Payload::Membership(m) => Some((e.index, m.clone())),
                _ => None,
            })
            .unwrap_or_else(|| (self.snapshot.index, self.snapshot.membership.clone()))
    }

    /// What a restarted node is given.
    pub fn restored_state(&self) -> RestoredState {
        RestoredState {
            hard_state: self.hard_state.clone(),
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
        }
    }

    fn apply(&mut self, write: &Write) -> Result<(), WriteError> {
        match write {
            Write::Snapshot { meta, data } => {
                self.snapshot = meta.clone();
                self.snapshot_data = data.clone();
                self.entries.clear();
            }
            Write::Entries(entries) => {
                let Some(first) = entries.first() else {
                    return Ok(());
                };
                if first.index <= self.snapshot.index {
                    return Err(WriteError::BelowSnapshot {
                        first: first.index,
                        snapshot: self.snapshot.index,
                    });
                }
                if first.index > self.last_index().next() {
                    return Err(WriteError::Gap {
                        first: first.index,
                        last: self.last_index(),
                    });
                }
                let keep = (first.index.0 - self.snapshot.index.0 - 1) as usize;
                self.entries.truncate(keep);
                self.entries.extend_from_slice(entries);
            }
            Write::HardState(hs) => self.hard_state = hs.clone(),
        }
        Ok(())
    }

    /// Replaces the prefix up to `meta.index` by a snapshot of it.
    fn compact(&mut self, meta: &SnapshotMeta, data: &KvState) {
        if meta.index <= self.snapshot.index {
            return;
        }
        let drop = ((meta.index.0 - self.snapshot.index.0) as usize).min(self.entries.len());
        self.entries.drain(..drop);
        self.snapshot = meta.clone();
        self.snapshot_data = data.clone();
    }
}

/// How much of the unsynced tail a crash keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrashKeep {
    /// Whole unsynced writes that reached the disk, in order.
    pub writes: usize,
    /// Entries of the next write (if it is an entry write) that reached the
    /// disk: a torn record.
    pub torn_entries: usize,
}

/// What an `fsync` of the simulated disk returns: the last entry it made
/// durable, the proof the core's `persisted` requires. Only [`Disk::sync`]
/// builds one, and [`Disk::pretend_synced`] for the caller bug that
/// acknowledges before the fsync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Synced {
    last: (LogIndex, Term),
}

impl DurabilityProof for Synced {
    fn durable_through(&self) -> (LogIndex, Term) {
        self.last
    }
}

/// A node's disk.
///
/// Invariant: `latest` is `durable` with every `pending` write applied.
#[derive(Clone, Debug)]
pub struct Disk {
    durable: LogImage,
    latest: LogImage,
    pending: Vec<Write>,
}

impl Disk {
    /// The disk of a node bootstrapped into `membership` (empty when it
    /// joins an existing cluster).
    pub fn new(membership: Membership) -> Disk {
        let image = LogImage::new(membership);
        Disk {
            durable: image.clone(),
            latest: image,
            pending: Vec::new(),
        }
    }

    /// What survives a crash right now.
    pub fn durable(&self) -> &LogImage {
        &self.durable
    }

    /// Everything written, synced or not.
    pub fn latest(&self) -> &LogImage {
        &self.latest
    }

    pub fn pending(&self) -> &[Write] {
        &self.pending
    }

    pub fn write(&mut self, write: Write) -> Result<(), WriteError> {
        self.latest.apply(&write)?;
        self.pending.push(write);
        Ok(())
    }

    /// `fsync`: everything written so far becomes durable.
    pub fn sync(&mut self) -> Synced {
        for write in self.pending.drain(..) {
            self.durable
                .apply(&write)
                .expect("the write already applied to the latest image");
        }
        Disk::proof_of(&self.durable)
    }

    /// A proof for everything written, synced or not: a lie, told only by
    /// the deliberately broken caller that acknowledges before the fsync
    /// (`CallerBugs::ack_before_fsync`).
    pub fn pretend_synced(&self) -> Synced {
        Disk::proof_of(&self.latest)
    }

    fn proof_of(image: &LogImage) -> Synced {
        let last = image.last_index();
        let term = image
            .term_at(last)
            .expect("the last index of an image has a term");
        Synced { last: (last, term) }
    }

    /// A crash: unsynced writes are lost except the prefix `keep` says
    /// reached the disk.
    pub fn crash(&mut self, keep: CrashKeep) {
        let pending = std::mem::take(&mut self.pending);
        for write in pending.iter().take(keep.writes) {
            self.durable
                .apply(write)
                .expect("the write already applied to the latest image");
        }
        if let Some(Write::Entries(entries)) = pending.get(keep.writes) {
            let torn: Vec<Entry> = entries.iter().take(keep.torn_entries).cloned().collect();
            self.durable
                .apply(&Write::Entries(torn))
                .expect("a prefix of a valid write is valid");
        }
        self.latest = self.durable.clone();
    }

    /// Stores a snapshot the node took of its own applied state; durable at
    /// once, as `Raft::snapshot_created` requires. Precondition: nothing is
    /// unsynced (the node is between Readies).
    pub fn compact(&mut self, meta: &SnapshotMeta, data: &KvState) {
        assert!(self.pending.is_empty(), "compacting with unsynced writes");
        self.durable.compact(meta, data);
        self.latest.compact(meta, data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_raft::NodeId;

    fn entries(first: u64, terms: &[u64]) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(k, &t)| Entry {
                term: Term(t),
                index: LogIndex(first + k as u64),
                payload: Payload::Blank,
            })
            .collect()
    }

    fn disk() -> Disk {
        Disk::new(Membership::new([NodeId(1)], []).unwrap())
    }

    #[test]
    fn crash_loses_unsynced_entries_only() {
        let mut d = disk();
        d.write(Write::Entries(entries(1, &[1, 1]))).unwrap();
        assert_eq!(
            d.sync().durable_through(),
            (LogIndex(2), Term(1)),
            "the proof covers what was synced"
        );
        d.write(Write::Entries(entries(3, &[1, 1]))).unwrap();
        assert_eq!(d.latest().last_index(), LogIndex(4));
        assert_eq!(
            d.pretend_synced().durable_through(),
            (LogIndex(4), Term(1)),
            "a pretended proof covers unsynced writes too"
        );
        d.crash(CrashKeep {
            writes: 0,
            torn_entries: 0,
        });
        assert_eq!(d.durable().last_index(), LogIndex(2));
        assert_eq!(d.latest().last_index(), LogIndex(2));
    }

    #[test]
    fn torn_tail_keeps_a_prefix_of_the_record() {
        let mut d = disk();
        d.write(Write::Entries(entries(1, &[1, 1, 1]))).unwrap();
        d.crash(CrashKeep {
            writes: 0,
            torn_entries: 2,
        });
        assert_eq!(d.durable().last_index(), LogIndex(2));
    }

    #[test]
    fn a_gap_in_the_log_is_refused() {
        let mut d = disk();
        assert_eq!(
            d.write(Write::Entries(entries(3, &[1]))).unwrap_err(),
            WriteError::Gap {
                first: LogIndex(3),
                last: LogIndex(0)
            }
        );
    }

    #[test]
    fn overwriting_entries_truncates_the_suffix() {
        let mut d = disk();
        d.write(Write::Entries(entries(1, &[1, 1, 1]))).unwrap();
        d.write(Write::Entries(entries(2, &[2]))).unwrap();
        d.sync();
        assert_eq!(d.durable().last_index(), LogIndex(2));
        assert_eq!(d.durable().term_at(LogIndex(2)), Some(Term(2)));
    }
}
