//! Defragmentation and the database's honest size.
//!
//! redb reuses freed pages but does not give them back to the file system
//! by itself; `Database::compact` moves pages down and truncates the file.
//! It needs the database alone — no transaction open — so a
//! defragmentation takes the state lock for writing (apply and reads pause
//! behind it, as etcd's defragmentation pauses its backend) and then the
//! database lock, and waits a bounded time for transactions begun before
//! (a snapshot being streamed holds one) to end.

use std::time::Duration;

use redb::CompactionError;

use super::Store;
use crate::error::KvError;

/// How many times a defragmentation finds a transaction still open before
/// it gives up, and how long it waits between looks: five seconds in all.
const DEFRAG_ATTEMPTS: u32 = 50;
const DEFRAG_RETRY_EVERY: Duration = Duration::from_millis(100);

/// How much of the database file holds data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DbUsage {
    /// The file's size (etcd's `dbSize`): what the quota is measured by.
    pub size_bytes: i64,
    /// The bytes of the pages in use (etcd's `dbSizeInUse`); the rest is
    /// free pages that a defragmentation returns to the file system.
    pub in_use_bytes: i64,
}

impl Store {
    /// Rewrites the database so that its file holds only the pages in use,
    /// and returns the sizes after. Blocks apply and reads while it runs.
    pub fn defragment(&self) -> Result<DbUsage, KvError> {
        let _paused = self.write_state();
        let before = self.db_size_bytes();
        {
            let mut db = self.db.write().expect("database lock poisoned by a panic");
            let mut attempts = 0;
            loop {
                match db.compact() {
                    Ok(_) => break,
                    Err(CompactionError::TransactionInProgress) if attempts < DEFRAG_ATTEMPTS => {
                        attempts += 1;
                        std::thread::sleep(DEFRAG_RETRY_EVERY);
                    }
                    Err(CompactionError::TransactionInProgress) => {
                        return Err(KvError::Busy(
                            "a transaction (a snapshot being sent?) kept the database busy; \
                             defragment again later",
                        ));
                    }
                    Err(e) => return Err(KvError::storage(e)),
                }
            }
        }
        let after = self.usage()?;
        tracing::info!(
            before_bytes = before,
            after_bytes = after.size_bytes,
            "defragmented the kv store"
        );
        Ok(after)
    }

    /// The database's file size and the part of it in use. Counting pages
    /// takes a write transaction (redb has no cheaper way), which waits
    /// for the apply in progress; it is aborted at once.
    pub fn usage(&self) -> Result<DbUsage, KvError> {
        let txn = self.db().begin_write().map_err(KvError::storage)?;
        let stats = txn.stats().map_err(KvError::storage)?;
        txn.abort().map_err(KvError::storage)?;
        let in_use = stats.allocated_pages() * stats.page_size() as u64;
        let size_bytes = self.db_size_bytes();
        Ok(DbUsage {
            size_bytes,
            in_use_bytes: (in_use as i64).min(size_bytes),
        })
    }
}
