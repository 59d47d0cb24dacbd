//! Tuning knobs of the file log store. Every bound carries its unit in its name.

use crate::error::StorageError;

/// Why a [`LogConfig`] cannot be used: the field at fault and what it must
/// be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("log store {field} {problem}")]
pub struct InvalidLogConfig {
    /// The name of the rejected field of [`LogConfig`].
    pub field: &'static str,
    /// What its value must be (`"must be at least ..."`).
    pub problem: &'static str,
}

impl From<InvalidLogConfig> for StorageError {
    fn from(e: InvalidLogConfig) -> StorageError {
        StorageError::InvalidConfig {
            field: e.field,
            problem: e.problem,
        }
    }
}

/// Smallest segment that holds a header and a few records.
const SEGMENT_BYTES_MIN: u64 = 4096;

/// Configuration of a [`crate::FileLogStore`]. Start from `LogConfig::default()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Segment files are preallocated to this size, and a new segment starts
    /// when the next batch would not fit. A batch never spans two segments,
    /// so a batch larger than this grows its segment beyond it.
    pub segment_bytes: u64,
    /// Synced entries kept in memory (by [`keel_raft::Entry::size_bytes`]) so
    /// that replication to followers just behind does not read the disk.
    /// Unsynced entries are always kept, on top of this bound.
    pub cache_bytes_max: u64,
}

impl Default for LogConfig {
    /// 64 MiB segments (as etcd uses) and an 8 MiB entry cache.
    fn default() -> Self {
        LogConfig {
            segment_bytes: 64 << 20,
            cache_bytes_max: 8 << 20,
        }
    }
}

impl LogConfig {
    /// Checks that segments can hold a header and a few records.
    pub fn validate(&self) -> Result<(), InvalidLogConfig> {
        if self.segment_bytes < SEGMENT_BYTES_MIN {
            return Err(InvalidLogConfig {
                field: "segment_bytes",
                problem: "must be at least 4096",
            });
        }
        Ok(())
    }
}
