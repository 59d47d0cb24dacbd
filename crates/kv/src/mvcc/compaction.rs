//! Compaction in bounded steps.
//!
//! A `Compact` entry at revision C takes effect at once, for every reader:
//! it sets the compacted revision (reads below it fail with etcd's
//! "required revision has been compacted") and makes the in-memory index
//! forget every change no read at or after C can see. The rows of those
//! changes — *garbage* — are not deleted in that entry's transaction,
//! which would hold every later write behind the deletion of the whole
//! history. They are deleted by `CompactionStep` entries, which the leader
//! proposes while any remain, each examining at most
//! [`COMPACTION_STEP_ROWS`] rows from a cursor kept in the store.
//!
//! **Invariant:** a row is garbage exactly when its revision is at or
//! below the compacted revision and the index no longer holds it
//! ([`State::is_garbage`]); while the cursor is set, every garbage row lies
//! at or after it. Readers of raw rows (HashKV, watch history) skip
//! garbage, so what a client sees never depends on how far the steps got.
//!
//! **Determinism:** steps are log entries, and the cursor, the compacted
//! revision and the rows are in the store and in snapshots, so every member
//! deletes the same rows at the same log positions and ends with the same
//! rows. The index forgets the same changes on a restart, because opening
//! the store compacts the rebuilt index at the compacted revision again
//! (compacting at C twice is compacting at C once).

use redb::ReadableTable;

use super::write::Writer;
use super::{Revision, State, Store};
use crate::error::{KvError, decode};
use crate::proto::command::Revisioned;

/// How many rows one compaction step examines, so that a step's
/// transaction stays short (etcd deletes 1000 keys per batch too).
pub const COMPACTION_STEP_ROWS: usize = 1000;

impl State {
    /// Whether the row of `key` at `rev` is garbage left by a compaction
    /// (see the module's invariant).
    pub(crate) fn is_garbage(&self, key: &[u8], rev: Revision) -> bool {
        rev.main <= self.compacted_revision && !self.index.holds(key, rev)
    }
}

impl Store {
    /// Whether a compaction has rows left for `CompactionStep`s to delete.
    pub fn compaction_pending(&self) -> bool {
        self.read_state().compaction_cursor.is_some()
    }
}

impl Writer<'_, '_> {
    /// Compacts history at `revision`, which `op::check` bounded by the
    /// compacted and current revisions: from this entry on no read below it
    /// succeeds, and the rows no read can see are left to compaction steps.
    /// The cursor starts over, since this compaction may make garbage of
    /// rows an earlier one's steps already passed.
    pub fn compact(&mut self, revision: i64) {
        self.state.index.compact(revision);
        self.state.compacted_revision = revision;
        self.state.compaction_cursor = Some(Revision { main: 0, sub: 0 });
    }

    /// Examines the next [`COMPACTION_STEP_ROWS`] rows at or below the
    /// compacted revision and deletes the garbage among them; clears the
    /// cursor once no such row is left. Nothing to do without a cursor.
    pub fn compaction_step(&mut self) -> Result<(), KvError> {
        let Some(cursor) = self.state.compaction_cursor else {
            return Ok(());
        };
        let end = Revision {
            main: self.state.compacted_revision,
            sub: i64::MAX,
        };
        let mut next = None;
        let mut doomed = Vec::new();
        let rows = self
            .tables
            .kv
            .range(cursor.to_db()..=end.to_db())
            .map_err(KvError::storage)?;
        for (examined, row) in rows.enumerate() {
            let (rev, value) = row.map_err(KvError::storage)?;
            let rev = Revision::from_db(rev.value());
            if examined == COMPACTION_STEP_ROWS {
                next = Some(rev);
                break;
            }
            let row: Revisioned = decode("kv row", value.value())?;
            let key = row.kv.map(|kv| kv.key).unwrap_or_default();
            if self.state.is_garbage(&key, rev) {
                doomed.push(rev);
            }
        }
        for rev in doomed {
            self.tables
                .kv
                .remove(rev.to_db())
                .map_err(KvError::storage)?;
        }
        self.state.compaction_cursor = next;
        Ok(())
    }
}
