//! Defragmentation and the database's honest size.
//!
//! redb reuses freed pages but does not give them back to the file system
//! by itself; `Database::compact` moves pages down and truncates the file.
//! It needs the database alone — no transaction open — so a
//! defragmentation takes the state lock for writing (apply and reads pause
//! behind it, as etcd's defragmentation pauses its backend) and then the
//! database lock, and waits a bounded time for transactions begun before
//! (a snapshot being streamed holds one) to end.

use std::time::{Duration, Instant};

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

/// The last count of the pages in use. Counting walks every tree of the
/// database inside a write transaction — about a second for a 1 GB store,
/// during which no entry can be applied — so `endpoint status` reports
/// the last count and asks for a new one in the background when it is
/// older than [`IN_USE_MAX_AGE`].
#[derive(Debug, Default)]
pub(crate) struct InUseCount {
    bytes: Option<i64>,
    counted_at: Option<Instant>,
    counting: bool,
}

/// How old a count of the pages in use may be before a status report asks
/// for another.
pub const IN_USE_MAX_AGE: Duration = Duration::from_secs(60);

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
        let after = self.count_usage()?;
        tracing::info!(
            before_bytes = before,
            after_bytes = after.size_bytes,
            "defragmented the kv store"
        );
        Ok(after)
    }

    /// The database's file size and the part of it in use. Counting pages
    /// takes a write transaction (redb has no cheaper way), which waits
    /// for the apply in progress; it is aborted at once. The state lock is
    /// held meanwhile, as by every writer of the database but apply, so
    /// that an apply which must not wait (`Store::try_apply_with`) can tell.
    pub fn usage(&self) -> Result<DbUsage, KvError> {
        let _held = self.read_state();
        self.count_usage()
    }

    /// [`Store::usage`], for a caller that holds the state lock.
    fn count_usage(&self) -> Result<DbUsage, KvError> {
        let counted = self.count_pages_in_use();
        let mut count = self.in_use_count();
        count.counting = false;
        let in_use = counted?;
        count.bytes = Some(in_use);
        count.counted_at = Some(Instant::now());
        let size_bytes = self.db_size_bytes();
        Ok(DbUsage {
            size_bytes,
            in_use_bytes: in_use.min(size_bytes),
        })
    }

    fn count_pages_in_use(&self) -> Result<i64, KvError> {
        let txn = self.db().begin_write().map_err(KvError::storage)?;
        let stats = txn.stats().map_err(KvError::storage)?;
        txn.abort().map_err(KvError::storage)?;
        let bytes = stats.allocated_pages() * stats.page_size() as u64;
        Ok(i64::try_from(bytes).unwrap_or(i64::MAX))
    }

    /// The file's size now and the pages in use at the last count (the
    /// whole file before the first), without waiting for anything.
    pub fn usage_last_counted(&self) -> DbUsage {
        let size_bytes = self.db_size_bytes();
        let in_use = self.in_use_count().bytes.unwrap_or(size_bytes);
        DbUsage {
            size_bytes,
            in_use_bytes: in_use.min(size_bytes),
        }
    }

    /// Whether the caller should count the pages in use now (then by
    /// [`Store::usage`], off the async runtime): the last count is older
    /// than `max_age` and no count is running. At most one caller is told
    /// yes until that count ends.
    pub fn claim_usage_count(&self, max_age: Duration) -> bool {
        let mut count = self.in_use_count();
        let fresh = count.counted_at.is_some_and(|at| at.elapsed() < max_age);
        if fresh || count.counting {
            return false;
        }
        count.counting = true;
        true
    }

    fn in_use_count(&self) -> std::sync::MutexGuard<'_, InUseCount> {
        self.in_use
            .lock()
            .expect("in-use count lock poisoned by a panic")
    }
}
