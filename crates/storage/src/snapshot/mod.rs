//! The snapshot store: the newest few snapshots of the state machine.
//!
//! A snapshot is written (locally, or installed from a leader) chunk by
//! chunk into a `.partial` file, checked against its checksum and made
//! durable (header rewritten, `fdatasync`: it is then *staged*), and only
//! then published: rename to its final name, `fsync` of the directory. A
//! leader's snapshot stays staged until the core accepts it. So a published snapshot is always whole and
//! verified, and a crash leaves at most a `.partial` file, which the next
//! open removes.

mod format;
mod reader;
mod writer;

use std::path::{Path, PathBuf};

use keel_raft::{LogIndex, SnapshotMeta};

use crate::error::StorageError;
use crate::fsutil;
use crate::lock::DirLock;

pub use format::SnapshotInfo;
pub use reader::SnapshotReader;
pub use writer::{SnapshotWriter, StagedSnapshot};

/// A directory of snapshots, of which the newest `keep` are retained.
#[derive(Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
    keep: usize,
    _lock: DirLock,
}

impl SnapshotStore {
    /// Snapshots to keep unless configured otherwise: the current one, and
    /// the previous one, which may still be streaming to a follower.
    pub const DEFAULT_KEEP: usize = 2;

    /// Opens (or creates) the snapshot directory `dir`, keeping the newest
    /// `keep` snapshots. Removes partial files a crash left behind and
    /// checks every snapshot's header.
    pub fn open(dir: impl AsRef<Path>, keep: usize) -> Result<SnapshotStore, StorageError> {
        if keep == 0 {
            return Err(StorageError::InvalidConfig {
                field: "keep",
                problem: "must be at least 1",
            });
        }
        let dir = dir.as_ref().to_path_buf();
        fsutil::ensure_dir(&dir)?;
        let lock = DirLock::acquire(&dir)?;
        for (name, path) in fsutil::list_dir(&dir)? {
            if name.ends_with(format::PARTIAL_SUFFIX) {
                fsutil::remove_durably(&path)?;
            }
        }
        let store = SnapshotStore {
            dir,
            keep,
            _lock: lock,
        };
        store.list()?;
        Ok(store)
    }

    /// Every published snapshot, oldest first.
    pub fn list(&self) -> Result<Vec<SnapshotInfo>, StorageError> {
        format::list(&self.dir)?
            .into_iter()
            .map(|(_, path)| Ok(SnapshotReader::open(&path)?.info().clone()))
            .collect()
    }

    /// The newest published snapshot.
    pub fn latest(&self) -> Result<Option<SnapshotInfo>, StorageError> {
        match format::list(&self.dir)?.pop() {
            Some((_, path)) => Ok(Some(SnapshotReader::open(&path)?.info().clone())),
            None => Ok(None),
        }
    }

    /// Starts writing a snapshot described by `meta`, replacing any partial
    /// one for the same index and term.
    pub fn begin(&self, meta: SnapshotMeta) -> Result<SnapshotWriter, StorageError> {
        SnapshotWriter::create(&self.dir, self.keep, meta)
    }

    /// Opens the published snapshot at `index` for streaming.
    pub fn open_reader(&self, index: LogIndex) -> Result<SnapshotReader, StorageError> {
        let found = format::list(&self.dir)?
            .into_iter()
            .rev()
            .find(|((i, _), _)| *i == index);
        match found {
            Some((_, path)) => SnapshotReader::open(&path),
            None => Err(StorageError::SnapshotNotFound { index }),
        }
    }
}

/// Removes all but the newest `keep` snapshots in `dir`.
fn prune(dir: &Path, keep: usize) -> Result<(), StorageError> {
    let found = format::list(dir)?;
    let excess = found.len().saturating_sub(keep);
    for (_, path) in &found[..excess] {
        std::fs::remove_file(path).map_err(StorageError::io("remove", path))?;
    }
    if excess > 0 {
        fsutil::sync_dir(dir)?;
    }
    Ok(())
}
