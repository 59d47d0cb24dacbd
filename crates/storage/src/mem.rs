//! [`MemLogStore`]: the log store of the simulator, held to the same
//! contract as the file store by the conformance suite, and crashed the ways
//! a disk loses data ([`CrashKeep`]) or fails a sync
//! ([`MemLogStore::fail_next_sync`]).

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;

use keel_raft::{Entry, HardState, LogIndex, NodeId, Term};

use crate::error::StorageError;
use crate::store::{Durable, LogStore};

/// The path an in-memory store's I/O errors name: it has no file, and the
/// error type, shared with the file store, wants one.
const MEMORY_PATH: &str = "<in-memory log>";

/// What a crash keeps of the writes made since the last successful sync.
///
/// A write-ahead log reaches the disk in order, so whatever survives of
/// the unsynced writes is a prefix of them: `writes` whole writes, then,
/// if the next one is an append, possibly its first `torn_entries` entries
/// (a torn append: the platter got part of the record). Keeping unsynced
/// writes is allowed, since nobody was told they were durable; losing
/// synced ones never happens.
///
/// A prefix is always a state the node can restart from:
/// - every write is kept only with all the writes made before it, so a kept
///   hard state comes with the entries its commit index counts (the core's
///   Ready puts entries before the hard state, and the runtime writes them
///   in that order), and a kept compaction with the log it cuts;
/// - a torn append keeps the entries before its cut, so it leaves no gap
///   (an append starts at most one past the end of the log), and the
///   suffix it discards starts past every kept commit index (Raft
///   overwrites only uncommitted entries).
///
/// [`crate::FileLogStore`] writes each sync's writes as one batch that
/// recovery keeps whole or not at all, so its crashes are the two extreme
/// prefixes ([`CrashKeep::NOTHING`], or every unsynced write). The other
/// prefixes are what a log that keeps every intact record (etcd's WAL)
/// does: a simulator that crashes with them checks the protocol against
/// any log that keeps its records in order, not only ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrashKeep {
    /// Whole unsynced writes that reached the disk, oldest first; at most
    /// [`MemLogStore::unsynced_writes`].
    pub writes: usize,
    /// Entries of the next unsynced write that reached the disk: 0, or fewer
    /// than that write appends ([`MemLogStore::unsynced_append_len`]).
    pub torn_entries: usize,
}

impl CrashKeep {
    /// A power loss before any unsynced write reached the disk.
    pub const NOTHING: CrashKeep = CrashKeep {
        writes: 0,
        torn_entries: 0,
    };
}

/// A log store in memory that can crash ([`MemLogStore::crash_keeping`])
/// and fail a sync ([`MemLogStore::fail_next_sync`]), for the simulator.
#[derive(Clone, Debug, Default)]
pub struct MemLogStore {
    /// What the store reports: `durable` with `pending` applied.
    view: MemLog,
    durable: MemLog,
    /// Writes since the last sync, in order, replayed onto `durable` by sync.
    pending: Vec<Write>,
    /// The error the next sync fails with, injected by the simulator.
    failing_sync: Option<io::ErrorKind>,
    /// Set when a sync failed: every later sync fails, as the file store's
    /// do, until a crash rebuilds the store from its durable image.
    poisoned: Option<io::ErrorKind>,
}

/// One write, as the log records it.
#[derive(Clone, Debug)]
enum Write {
    Append(Vec<Entry>),
    HardState(HardState),
    /// Whether the entries after `upto` go too is decided when the write is
    /// made and recorded, as the file store's `Compact` record does, so
    /// replaying the write never decides it again.
    Compact {
        upto: LogIndex,
        term: Term,
        discard_suffix: bool,
    },
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
            Write::Append(entries) => self.append(entries),
            Write::HardState(hs) => self.hard_state = hs.clone(),
            Write::Compact {
                upto,
                term,
                discard_suffix,
            } => {
                if *discard_suffix {
                    self.entries.clear();
                } else {
                    let drop = (upto.0 - self.base_index.0) as usize;
                    self.entries.drain(..drop);
                }
                self.base_index = *upto;
                self.base_term = *term;
            }
        }
    }

    /// Replaces the entries from `entries[0].index` on with `entries`,
    /// which must not be empty.
    fn append(&mut self, entries: &[Entry]) {
        let first = entries[0].index;
        self.entries
            .truncate((first.0 - self.first_index().0) as usize);
        self.entries.extend(entries.iter().cloned());
    }
}

impl MemLogStore {
    /// An empty store, the same as [`MemLogStore::default`].
    pub fn new() -> MemLogStore {
        MemLogStore::default()
    }

    /// A power loss before any unsynced write reached the disk: every write
    /// since the last successful sync is lost.
    pub fn crash(&mut self) {
        self.crash_keeping(CrashKeep::NOTHING);
    }

    /// A crash that keeps the durable image plus the prefix of the unsynced
    /// writes `keep` names (see [`CrashKeep`] for why a prefix), after which
    /// the store reports what a restart would read back. It clears a
    /// poisoned sync, as reopening a file store does.
    ///
    /// # Panics
    /// If `keep` names more writes than are unsynced, or tears a write that
    /// is not an append or keeps all its entries (that is no tear: name the
    /// write in `keep.writes`): the caller has a bug.
    pub fn crash_keeping(&mut self, keep: CrashKeep) {
        assert!(
            keep.writes <= self.pending.len(),
            "a crash cannot keep {} writes of the {} unsynced",
            keep.writes,
            self.pending.len()
        );
        if keep.torn_entries > 0 {
            let len = self
                .unsynced_append_len(keep.writes)
                .expect("only an unsynced append can be torn");
            assert!(
                keep.torn_entries < len,
                "a torn append keeps fewer than its {len} entries, not {}",
                keep.torn_entries
            );
        }
        let pending = std::mem::take(&mut self.pending);
        for write in &pending[..keep.writes] {
            self.durable.apply(write);
        }
        if let Some(Write::Append(entries)) = pending.get(keep.writes)
            && keep.torn_entries > 0
        {
            self.durable.append(&entries[..keep.torn_entries]);
        }
        self.view = self.durable.clone();
        self.failing_sync = None;
        self.poisoned = None;
    }

    /// The term of the entry at `index` as a crash that keeps nothing
    /// unsynced would leave it (`None`: absent, or compacted away): what
    /// a simulator's durability check asks of a member's disk.
    pub fn durable_term(&self, index: LogIndex) -> Option<Term> {
        self.durable.term(index)
    }

    /// How many writes a crash would lose now: the range of
    /// [`CrashKeep::writes`].
    pub fn unsynced_writes(&self) -> usize {
        self.pending.len()
    }

    /// How many entries the unsynced write at `position` (0 = the oldest)
    /// appends, or `None` if it is not an append or there is no such write:
    /// what a crash may tear ([`CrashKeep::torn_entries`]).
    pub fn unsynced_append_len(&self, position: usize) -> Option<usize> {
        match self.pending.get(position) {
            Some(Write::Append(entries)) => Some(entries.len()),
            _ => None,
        }
    }

    /// Simulation support: the next [`LogStore::sync`] that has unsynced
    /// writes (one without returns at once, never touching the disk) fails
    /// with an I/O error of `kind` and makes nothing durable; every sync
    /// after it fails with [`StorageError::Poisoned`], as the trait says a
    /// store does after a failed `fdatasync`. Writes are still accepted and
    /// reported. What reached the disk is decided by the next
    /// [`MemLogStore::crash_keeping`] (any prefix: a failed `fdatasync` may
    /// have written none of the batch, some or all of it), which also ends
    /// the poisoning, as reopening a file store does.
    ///
    /// A slow sync is not modelled: `sync` cannot block in a
    /// single-threaded simulator, so the simulator, which owns the clock,
    /// delays the moment it acts on the result instead.
    pub fn fail_next_sync(&mut self, kind: io::ErrorKind) {
        self.failing_sync = Some(kind);
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
            let discard_suffix = self.view.term(upto) != Some(term);
            self.write(Write::Compact {
                upto,
                term,
                discard_suffix,
            });
        }
    }

    fn sync(&mut self) -> Result<Durable, StorageError> {
        if let Some(kind) = self.poisoned {
            return Err(StorageError::Poisoned {
                op: "fdatasync",
                path: PathBuf::from(MEMORY_PATH),
                kind,
            });
        }
        if !self.pending.is_empty()
            && let Some(kind) = self.failing_sync.take()
        {
            self.poisoned = Some(kind);
            return Err(StorageError::Io {
                op: "fdatasync",
                path: PathBuf::from(MEMORY_PATH),
                source: io::Error::new(kind, "injected by the simulator"),
            });
        }
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
