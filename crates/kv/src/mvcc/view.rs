//! Read views: reads that do not hold the store's lock for their scan.
//!
//! Apply takes the state lock for writing, so a read that held it for a
//! whole `get --prefix` over many keys would stall every write behind it.
//! A [`ReadView`] instead fixes, under the lock and for a moment only, the
//! revision it reads at (the current one, `R`) and a redb read
//! transaction; it then walks the in-memory index in chunks of at most
//! [`VIEW_CHUNK_KEYS`] keys, taking the lock once per chunk, and reads
//! the rows from its transaction without the lock.
//!
//! **Invariant:** a view's answer is the one a read holding the lock
//! throughout would have given at `R`, because:
//! - the rows: the transaction was begun under the state lock, and apply
//!   commits while it holds that lock for writing, so the transaction holds
//!   exactly the rows the index described at `R`; later commits (writes,
//!   compaction steps deleting garbage) do not reach it (redb's snapshot
//!   isolation);
//! - the index at a revision `at <= R` changes between chunks only by
//!   gaining changes above `R` (writes get the next revision), which a read
//!   at `at` ignores, or by a compaction: one at `C <= at` forgets only
//!   changes no read at or after `C` sees (`KeyIndex::compact`), so the
//!   read at `at` is unchanged; one at `C > at` may forget a change it
//!   needs. Each chunk therefore first checks, under the lock, that the
//!   compacted revision is still `<= at` and that the store was not
//!   replaced (a snapshot restored, memory reloaded after a refused
//!   batch); when either fails, the read is *raced* and starts over with a
//!   new view. A read at the current revision then reads at the new one,
//!   and a read that named a revision now compacted gets etcd's
//!   `ErrCompacted`, the answer etcd gives a read below the compacted
//!   revision (`rangeKeys` in etcd's `mvcc/kvstore_txn.go`, where the
//!   read's lock keeps the compaction waiting instead);
//! - every row a chunk finds is in the transaction: the index held it
//!   when the view was opened (the index never regains a change it
//!   forgot), so no compaction step before the view deleted it.
//!
//! Starting over is bounded: after [`VIEW_ATTEMPTS`] raced attempts the
//! last one holds the lock throughout, as every read did before views, and
//! cannot race.

use std::sync::RwLockReadGuard;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use redb::{ReadOnlyTable, ReadableDatabase};

use super::read::{RangeScan, check_range, kv_at};
use super::tables::KV;
use super::txn::compare_kvs;
use super::{KeyRange, Revision, State, Store};
use crate::error::KvError;
use crate::proto::etcdserverpb::{Compare, RangeRequest, RangeResponse};
use crate::rejection::Rejection;

/// How many index keys a view visits per hold of the state lock: about a
/// tenth of a millisecond of walking, so that apply never waits longer
/// than that for a read.
pub const VIEW_CHUNK_KEYS: usize = 1000;

/// How many attempts a read makes with views that hold the lock per
/// chunk; the next one holds it throughout.
pub const VIEW_ATTEMPTS: usize = 3;

/// How a view holds the store's state lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hold {
    /// Once per chunk of at most `keys` index keys.
    PerChunk { keys: usize },
    /// For the whole read: it cannot race, and apply waits for it.
    Throughout,
}

/// Why a read through a view did not answer.
#[derive(Debug)]
pub(crate) enum ViewError {
    /// The index changed under the view in a way the read cannot ignore
    /// (see the module's invariant): start over with a new view.
    Raced,
    /// The read's answer is this error.
    Failed(KvError),
}

impl From<KvError> for ViewError {
    fn from(e: KvError) -> ViewError {
        ViewError::Failed(e)
    }
}

impl From<Rejection> for ViewError {
    fn from(r: Rejection) -> ViewError {
        ViewError::Failed(r.into())
    }
}

/// A consistent view of the store at one revision (see the module's
/// invariant).
pub(crate) struct ReadView<'s> {
    store: &'s Store,
    /// The state, for the whole read, when the view holds it throughout.
    held: Option<RwLockReadGuard<'s, State>>,
    chunk_keys: usize,
    /// The rows as of `revision`.
    table: ReadOnlyTable<(u64, u64), &'static [u8]>,
    /// `R`: the store's current revision when the view was opened.
    revision: i64,
    /// The compacted revision when the view was opened.
    compacted: i64,
    /// The store's count of replacements when the view was opened.
    replacements: u64,
}

impl<'s> ReadView<'s> {
    /// Opens a view of `store` at its current revision.
    pub(crate) fn open(store: &'s Store, hold: Hold) -> Result<ReadView<'s>, KvError> {
        let state = store.read_state();
        let txn = store.db().begin_read().map_err(KvError::storage)?;
        let table = txn.open_table(KV).map_err(KvError::storage)?;
        let (revision, compacted) = (state.current_revision, state.compacted_revision);
        let replacements = store.replacements.load(Ordering::Relaxed);
        let (held, chunk_keys) = match hold {
            Hold::PerChunk { keys } => (None, keys),
            Hold::Throughout => (Some(state), usize::MAX),
        };
        Ok(ReadView {
            store,
            held,
            chunk_keys,
            table,
            revision,
            compacted,
            replacements,
        })
    }

    /// The revision the view reads at: the newest a read may see.
    pub(crate) fn revision(&self) -> i64 {
        self.revision
    }

    /// The compacted revision when the view was opened.
    pub(crate) fn compacted(&self) -> i64 {
        self.compacted
    }

    /// The rows as of [`ReadView::revision`].
    pub(crate) fn table(&self) -> &ReadOnlyTable<(u64, u64), &'static [u8]> {
        &self.table
    }

    /// Runs `f` on the state under the lock: the view's own guard when it
    /// holds one (taking the lock again could deadlock behind a waiting
    /// writer), else a hold of its own.
    fn with_state<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        match &self.held {
            Some(state) => f(state),
            None => f(&self.store.read_state()),
        }
    }

    /// Whether the store was replaced since the view was opened.
    fn replaced(&self) -> bool {
        self.store.replacements.load(Ordering::Relaxed) != self.replacements
    }

    /// Walks one chunk of `scan`, after checking under the lock that the
    /// index still answers reads at the scan's revision as it did when the
    /// view was opened.
    pub(crate) fn walk_chunk(&self, scan: &mut RangeScan) -> Result<(), ViewError> {
        self.with_state(|state| {
            if self.replaced() || state.compacted_revision > scan.at() {
                return Err(ViewError::Raced);
            }
            scan.step(&state.index, self.chunk_keys);
            Ok(())
        })
    }

    /// Walks all of `scan`, a chunk per hold of the lock.
    pub(crate) fn walk(&self, scan: &mut RangeScan) -> Result<(), ViewError> {
        while !scan.is_done() {
            self.walk_chunk(scan)?;
        }
        Ok(())
    }

    /// A Range at the view's revision (or the one it names).
    pub(crate) fn range(&self, req: &RangeRequest) -> Result<RangeResponse, ViewError> {
        let at = check_range(req, self.revision, self.compacted)?;
        let mut scan = RangeScan::of_request(req, at);
        self.walk(&mut scan)?;
        Ok(scan.respond(&self.table, req, self.revision)?)
    }

    /// A txn's compare at the view's revision, over every key in its
    /// range (see `txn::compare_kvs`).
    pub(crate) fn compare(&self, c: &Compare) -> Result<bool, ViewError> {
        let range = KeyRange::new(c.key.clone(), c.range_end.clone());
        let mut scan = RangeScan::new(range, self.revision, usize::MAX);
        self.walk(&mut scan)?;
        let kvs = scan
            .into_revisions()
            .into_iter()
            .map(|rev| kv_at(&self.table, rev));
        Ok(compare_kvs(c, kvs)?)
    }

    /// Runs `f` on the state under the lock, for readers of raw rows
    /// (HashKV, watch history): which rows are garbage (see
    /// `compaction.rs`) and which change of a key is visible at or below
    /// the view's revision are as when the view was opened unless a
    /// compaction happened since, or the store was replaced; then the read
    /// is raced.
    pub(crate) fn with_index_as_opened<T>(
        &self,
        f: impl FnOnce(&State) -> T,
    ) -> Result<T, ViewError> {
        self.with_state(|state| {
            if self.replaced() || state.compacted_revision != self.compacted {
                return Err(ViewError::Raced);
            }
            Ok(f(state))
        })
    }

    /// For rows `(revision, key)` at or below the view's compacted
    /// revision: whether each is garbage a compaction left, as of that
    /// compacted revision (raced as [`ReadView::with_index_as_opened`]).
    pub(crate) fn garbage(&self, rows: &[(Revision, Bytes)]) -> Result<Vec<bool>, ViewError> {
        self.with_index_as_opened(|state| {
            rows.iter()
                .map(|(rev, key)| state.is_garbage(key, *rev))
                .collect()
        })
    }
}

impl Store {
    /// Runs the read `f` on a view of the store, starting over with a new
    /// view when it is raced (see the module's invariant), at most
    /// [`VIEW_ATTEMPTS`] times before one last attempt that holds the lock
    /// throughout.
    pub(crate) fn read<T>(
        &self,
        mut f: impl FnMut(&ReadView<'_>) -> Result<T, ViewError>,
    ) -> Result<T, KvError> {
        for attempt in 1..=VIEW_ATTEMPTS {
            let view = ReadView::open(
                self,
                Hold::PerChunk {
                    keys: VIEW_CHUNK_KEYS,
                },
            )?;
            match f(&view) {
                Ok(answer) => return Ok(answer),
                Err(ViewError::Failed(e)) => return Err(e),
                Err(ViewError::Raced) => {
                    tracing::debug!(attempt, "a read raced a compaction; starting over");
                }
            }
        }
        match f(&ReadView::open(self, Hold::Throughout)?) {
            Ok(answer) => Ok(answer),
            Err(ViewError::Failed(e)) => Err(e),
            Err(ViewError::Raced) => {
                unreachable!("a view that holds the lock throughout sees no change")
            }
        }
    }
}
