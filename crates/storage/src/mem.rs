//! [`MemLogStore`]: the log store of the simulator, held to the same
//! contract as the file store by the conformance suite.

use std::collections::VecDeque;

use keel_raft::{Entry, HardState, LogIndex, NodeId, Term};

use crate::error::StorageError;
use crate::store::{Durable, LogStore};

/// A log store in memory that can "crash": [`MemLogStore::crash`] drops
/// every write since the last sync, as a power loss does to the file store.
#[derive(Clone, Debug, Default)]
pub struct MemLogStore {
    /// What the store reports: `durable` with `pending` applied.
    view: MemLog,
    durable: MemLog,
    /// Writes since the last sync, in order, replayed onto `durable` by sync.
    pending: Vec<Write>,
}

#[derive(Clone, Debug)]
enum Write {
    Append(Vec<Entry>),
    HardState(HardState),
    Compact(LogIndex, Term),
}

#[derive(Clone, Debug, Default)]
struct MemLog {
    base_index: LogIndex,
    base_term: Term,
    /// Entries `base_index + 1 ..`.
    entries: VecDeque<Entry>,
    hard_state: HardState,
}

impl MemLog {
    fn first_index(&self) -> LogIndex {
        self.base_index.next()
    }

    fn last_index(&self) -> LogIndex {
        self.base_index.plus(self.entries.len() as u64)
    }

    fn get(&self, index: LogIndex) -> Option<&Entry> {
        let offset = index.0.checked_sub(self.first_index().0)?;
        self.entries.get(usize::try_from(offset).ok()?)
    }

    fn term(&self, index: LogIndex) -> Option<Term> {
        if index == self.base_index {
            return Some(self.base_term);
        }
        self.get(index).map(|e| e.term)
    }

    fn apply(&mut self, write: &Write) {
        match write {
            Write::Append(entries) => {
                let first = entries[0].index;
                self.entries
                    .truncate((first.0 - self.first_index().0) as usize);
                self.entries.extend(entries.iter().cloned());
            }
            Write::HardState(hs) => self.hard_state = hs.clone(),
            Write::Compact(upto, term) => {
                if self.term(*upto) == Some(*term) {
                    let drop = (upto.0 - self.base_index.0) as usize;
                    self.entries.drain(..drop);
                } else {
                    self.entries.clear();
                }
                self.base_index = *upto;
                self.base_term = *term;
            }
        }
    }
}

impl MemLogStore {
    pub fn new() -> MemLogStore {
        MemLogStore::default()
    }

    /// A power loss: every write since the last successful sync is lost.
    pub fn crash(&mut self) {
        self.pending.clear();
        self.view = self.durable.clone();
    }

    /// A process crash after the last batch reached the disk but before its
    /// `fdatasync` returned: the unsynced writes survive. With
    /// [`MemLogStore::crash`] this covers both outcomes of the file store,
    /// whose batches are atomic; a torn half-batch cannot happen there, so it
    /// is not modelled here.
    pub fn crash_after_write(&mut self) {
        for write in self.pending.drain(..) {
            self.durable.apply(&write);
        }
        self.view = self.durable.clone();
    }

    /// How many writes a crash would lose now.
    pub fn unsynced_writes(&self) -> usize {
        self.pending.len()
    }

    fn write(&mut self, write: Write) {
        self.view.apply(&write);
        self.pending.push(write);
    }
}

impl LogStore for MemLogStore {
    fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        assert_contiguous(entries);
        assert!(
            first.index >= self.view.first_index() && first.index <= self.view.last_index().next(),
            "append at {} outside {}..={}",
            first.index,
            self.view.first_index(),
            self.view.last_index().next()
        );
        self.write(Write::Append(entries.to_vec()));
    }

    fn set_hard_state(&mut self, hs: HardState) {
        assert_ne!(hs.vote, Some(NodeId(0)), "node id 0 cannot receive a vote");
        if hs != self.view.hard_state {
            self.write(Write::HardState(hs));
        }
    }

    fn compact(&mut self, upto: LogIndex, term: Term) {
        if upto > self.view.base_index {
            self.write(Write::Compact(upto, term));
        }
    }

    fn sync(&mut self) -> Result<Durable, StorageError> {
        for write in self.pending.drain(..) {
            self.durable.apply(&write);
        }
        let last = self.durable.last_index();
        let last_term = self.durable.term(last).expect("last index has a term");
        Ok(Durable::new(
            last,
            last_term,
            self.durable.hard_state.clone(),
        ))
    }

    fn entries(
        &self,
        lo: LogIndex,
        hi: LogIndex,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        check_range(lo, hi, self.view.first_index(), self.view.last_index())?;
        let mut out = Vec::new();
        let mut bytes = 0;
        for i in lo.0..hi.0 {
            let entry = self.view.get(LogIndex(i)).expect("range was checked");
            bytes += entry.size_bytes();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(entry.clone());
        }
        Ok(out)
    }

    fn term(&self, index: LogIndex) -> Option<Term> {
        self.view.term(index)
    }

    fn first_index(&self) -> LogIndex {
        self.view.first_index()
    }

    fn last_index(&self) -> LogIndex {
        self.view.last_index()
    }

    fn hard_state(&self) -> &HardState {
        &self.view.hard_state
    }
}

/// Panics unless `entries` have consecutive indexes.
pub(crate) fn assert_contiguous(entries: &[Entry]) {
    for pair in entries.windows(2) {
        assert_eq!(
            pair[0].index.next(),
            pair[1].index,
            "appended entries must have consecutive indexes"
        );
    }
}

/// The range checks [`LogStore::entries`] documents.
pub(crate) fn check_range(
    lo: LogIndex,
    hi: LogIndex,
    first: LogIndex,
    last: LogIndex,
) -> Result<(), StorageError> {
    if lo < first {
        return Err(StorageError::Compacted {
            requested: lo,
            first_index: first,
        });
    }
    if hi > last.next() {
        return Err(StorageError::Unavailable {
            requested: hi.prev(),
            last_index: last,
        });
    }
    Ok(())
}
