//! The KV state machine: the store plus the watch hub it feeds. This is
//! what a Raft runtime drives.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::KvError;
use crate::mvcc::{Applied, EntryPayload, Store, StorePosition};
use crate::watch::WatchHub;

/// The store file inside a member's data directory.
const DB_FILE: &str = "kv.redb";

/// Applies committed entries to the store and announces their events.
pub struct KvStateMachine {
    store: Store,
    hub: WatchHub,
    db_path: PathBuf,
}

impl KvStateMachine {
    /// Opens the state machine kept in `dir`. `durable_apply` makes every
    /// apply fsync: only for a store with no Raft log underneath.
    pub fn open(dir: &Path, durable_apply: bool) -> Result<Arc<KvStateMachine>, KvError> {
        std::fs::create_dir_all(dir)?;
        let db_path = dir.join(DB_FILE);
        let store = Store::open(&db_path, durable_apply)?;
        let hub = WatchHub::new(store.position().revision);
        Ok(Arc::new(KvStateMachine {
            store,
            hub,
            db_path,
        }))
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn hub(&self) -> &WatchHub {
        &self.hub
    }

    /// The database file's size, for status reports.
    pub fn db_size_bytes(&self) -> i64 {
        self.store.db_size_bytes(&self.db_path)
    }

    /// The database file, for reading its size without holding the store.
    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// Applies committed entries `(index, term, payload)` and then wakes
    /// watchers. Returns each entry's encoded result (for its proposer).
    /// An `Err` is fatal: stop the node.
    pub fn apply(&self, entries: &[(u64, u64, EntryPayload<'_>)]) -> Result<Vec<Applied>, KvError> {
        let mut applied = self.store.apply(entries)?;
        let Some(last) = applied.last() else {
            return Ok(applied);
        };
        let revision = last.revision;
        for a in &mut applied {
            if !a.events.is_empty() {
                self.hub.publish(a.revision, std::mem::take(&mut a.events));
            }
        }
        self.hub.advance(revision);
        Ok(applied)
    }

    /// The last applied Raft index and term. After a restart, the runtime
    /// replays the log from the entry after it.
    pub fn position(&self) -> StorePosition {
        self.store.position()
    }

    /// Writes a snapshot of the current state; see `Store::write_snapshot`.
    pub fn write_snapshot(&self, w: &mut impl Write) -> Result<StorePosition, KvError> {
        self.store.write_snapshot(w)
    }

    /// Replaces the state with a snapshot that stands for the log through
    /// `covers_index`; watchers catch up from the store.
    pub fn restore_snapshot(
        &self,
        r: &mut impl Read,
        covers_index: u64,
    ) -> Result<StorePosition, KvError> {
        let position = self.store.restore_snapshot(r, covers_index)?;
        self.hub.reset(position.revision);
        Ok(position)
    }

    /// Makes all applied state durable (call before truncating the log).
    pub fn flush(&self) -> Result<(), KvError> {
        self.store.flush()
    }
}
