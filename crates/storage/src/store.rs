//! The contract every log store keeps: [`LogStore`] and its durability proof.

use keel_raft::{DurabilityProof, Entry, HardState, LogIndex, Term};

use crate::error::StorageError;

/// Proof that a store's state reached stable storage: the only value
/// [`LogStore::sync`] returns. Keel's stores make it in their `sync`; a
/// store written elsewhere makes it with [`Durable::synced`], in its
/// `sync` only.
///
/// # How it makes "persist before you send" impossible to get wrong
///
/// A node may answer a vote request, or acknowledge entries, only after the
/// vote or entries are durable. The runtime releases such messages with the
/// values in a `Durable` — the hard state (term and vote) and the last
/// entry's index and term — and since only `sync()` hands out a `Durable`,
/// and `sync()` returns only after `fdatasync` did, there is no code path
/// in the runtime that releases a response against state still sitting in
/// a buffer. (A store's own `sync` is where the proof is made, so that is
/// the one place its author must get durability right, and what
/// [`crate::conformance`] checks.) A
/// runtime that wants the compiler's help keeps its outbox of held messages
/// drainable only by a method taking `&Durable`, and the core itself
/// takes one in [`keel_raft::Raft::persisted`].
#[must_use = "a Durable is what allows held messages to be sent"]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Durable {
    last_index: LogIndex,
    last_term: Term,
    hard_state: HardState,
}

impl Durable {
    pub(crate) fn new(last_index: LogIndex, last_term: Term, hard_state: HardState) -> Durable {
        Durable {
            last_index,
            last_term,
            hard_state,
        }
    }

    /// The proof a [`LogStore`] implemented outside this crate returns
    /// from its `sync`, once everything written so far is on stable
    /// storage: its last index and that entry's term (or the compaction
    /// point's, if the log is empty) and its hard state, as they stand
    /// after the sync. Calling it anywhere else vouches for writes that may
    /// be lost in a crash, and a node that acknowledges them can lose
    /// committed entries.
    pub fn synced(last_index: LogIndex, last_term: Term, hard_state: HardState) -> Durable {
        Durable::new(last_index, last_term, hard_state)
    }

    /// Every entry up to this index is durable.
    pub fn last_index(&self) -> LogIndex {
        self.last_index
    }

    /// The term of the entry at [`Durable::last_index`].
    pub fn last_term(&self) -> Term {
        self.last_term
    }

    /// The durable term, vote and commit index.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }
}

/// The core acknowledges entries only against this proof
/// ([`keel_raft::Raft::persisted`]).
impl DurabilityProof for Durable {
    fn durable_through(&self) -> (LogIndex, Term) {
        (self.last_index, self.last_term)
    }
}

/// A Raft log with hard state: what the runtime and the simulator write to.
///
/// Writes are buffered and take effect immediately in what the store
/// reports (`last_index`, `entries`, ...); none of them is durable until
/// [`LogStore::sync`] returns. One `append` (or several) followed by one
/// `sync` costs one `fdatasync`: that is the group commit, and the runtime
/// chooses the batch. A crash never loses a write that a successful `sync`
/// covered. Of the writes since, it may keep a prefix, in the order they
/// were made, possibly ending part way through an append: what an
/// interrupted sync got onto the disk. Callers must not count on those
/// survivors, and must be able to restart from any such prefix
/// ([`crate::CrashKeep`] argues why a Raft node can).
///
/// The log is `first_index() ..= last_index()`; entries before
/// `first_index()` were compacted into a snapshot whose last entry is
/// `first_index() - 1` with term `term(first_index() - 1)`.
pub trait LogStore {
    /// Appends `entries`, first discarding every existing entry at or after
    /// `entries[0].index` (a follower overwriting a conflicting suffix).
    /// The discard becomes durable together with the new entries.
    ///
    /// # Panics
    /// If the entries' indexes are not consecutive, or `entries[0].index` is
    /// outside `first_index() ..= last_index() + 1`: the caller has a bug.
    fn append(&mut self, entries: &[Entry]);

    /// Records the hard state to persist with the next sync.
    ///
    /// # Panics
    /// If it votes for node 0, which is reserved.
    fn set_hard_state(&mut self, hs: HardState);

    /// Discards the entries up to `upto`, which a snapshot ending at
    /// `(upto, term)` now covers. If the log has no entry `(upto, term)`,
    /// it disagrees with the snapshot, and the whole log is discarded
    /// (Raft Figure 13, steps 6-7). A no-op if `upto < first_index()`.
    ///
    /// Publish the snapshot durably before calling this.
    fn compact(&mut self, upto: LogIndex, term: Term);

    /// Makes everything written so far durable with one `fdatasync` and
    /// returns the proof. Without unsynced writes it returns at once.
    ///
    /// # Errors
    /// An I/O failure. The store then refuses all further syncs
    /// ([`StorageError::Poisoned`]): after a failed `fdatasync` the kernel
    /// may have dropped the dirty pages, so only reopening, which rereads the
    /// disk, can tell what is durable.
    fn sync(&mut self) -> Result<Durable, StorageError>;

    /// Entries `lo .. hi`, stopping early once their total
    /// [`Entry::size_bytes`] would exceed `max_bytes`; the first entry is
    /// returned regardless of its size, so progress is always possible.
    ///
    /// # Errors
    /// [`StorageError::Compacted`] if `lo < first_index()` (send a snapshot
    /// instead), [`StorageError::Unavailable`] if `hi > last_index() + 1`,
    /// and `Io` or `Corrupt` if reading the disk fails.
    fn entries(
        &self,
        lo: LogIndex,
        hi: LogIndex,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError>;

    /// The term of the entry at `index`, or of the compaction point if
    /// `index == first_index() - 1`; `None` outside that range.
    fn term(&self, index: LogIndex) -> Option<Term>;

    /// The first entry held; one past the compaction point.
    fn first_index(&self) -> LogIndex;

    /// The last entry held, or the compaction point if none is.
    fn last_index(&self) -> LogIndex;

    /// The term of the last entry (or of the compaction point if the log is empty).
    fn last_term(&self) -> Term {
        self.term(self.last_index())
            .expect("the last index always has a term: an entry or the compaction point")
    }

    /// The latest hard state set, whether or not it is durable yet.
    fn hard_state(&self) -> &HardState;
}
