//! Keel's snapshot store on disk: one file per snapshot in a locked
//! directory.
//!
//! A snapshot is written into a `.partial` file, checked against its
//! checksum and made durable (header rewritten, `fdatasync`: staged), and
//! published by a rename to its final name and an `fsync` of the
//! directory. So a published snapshot is always whole and verified, and a
//! crash leaves at most `.partial` files, which the next open removes.

use std::path::{Path, PathBuf};

use keel_raft::{LogIndex, SnapshotMeta};

use super::format::{self, SnapshotInfo};
use super::reader::FileSnapshotReader;
use super::store::{SnapshotReader, SnapshotStore, SnapshotWriter};
use super::writer::FileSnapshotWriter;
use crate::error::StorageError;
use crate::fsutil;
use crate::lock::DirLock;

/// A directory of snapshot files, locked while the store is open.
#[derive(Debug)]
pub struct FileSnapshotStore {
    dir: PathBuf,
    _lock: DirLock,
}

impl FileSnapshotStore {
    /// Opens (or creates) the snapshot directory `dir`. Removes partial
    /// files a crash left behind and checks every snapshot's header.
    pub fn open(dir: impl AsRef<Path>) -> Result<FileSnapshotStore, StorageError> {
        let dir = dir.as_ref().to_path_buf();
        fsutil::ensure_dir(&dir)?;
        let lock = DirLock::acquire(&dir)?;
        for (name, path) in fsutil::list_dir(&dir)? {
            if name.ends_with(format::PARTIAL_SUFFIX) {
                fsutil::remove_durably(&path)?;
            }
        }
        let store = FileSnapshotStore { dir, _lock: lock };
        store.list()?;
        Ok(store)
    }
}

impl SnapshotStore for FileSnapshotStore {
    fn list(&self) -> Result<Vec<SnapshotInfo>, StorageError> {
        format::list(&self.dir)?
            .into_iter()
            .map(|(_, path)| Ok(FileSnapshotReader::open(&path)?.info().clone()))
            .collect()
    }

    /// Reads one header, not all of them.
    fn latest(&self) -> Result<Option<SnapshotInfo>, StorageError> {
        match format::list(&self.dir)?.pop() {
            Some((_, path)) => Ok(Some(FileSnapshotReader::open(&path)?.info().clone())),
            None => Ok(None),
        }
    }

    fn begin(&self, meta: SnapshotMeta) -> Result<Box<dyn SnapshotWriter>, StorageError> {
        Ok(Box::new(FileSnapshotWriter::create(&self.dir, meta)?))
    }

    fn open_reader(&self, index: LogIndex) -> Result<Box<dyn SnapshotReader>, StorageError> {
        let found = format::list(&self.dir)?
            .into_iter()
            .rev()
            .find(|((i, _), _)| *i == index);
        match found {
            Some((_, path)) => Ok(Box::new(FileSnapshotReader::open(&path)?)),
            None => Err(StorageError::SnapshotNotFound { index }),
        }
    }

    /// Unlinks the older files; a reader's open file stays readable until
    /// it is closed, so readers keep their data (guarantee 7).
    fn prune(&self, keep: usize) -> Result<(), StorageError> {
        let found = format::list(&self.dir)?;
        let excess = found.len().saturating_sub(keep.max(1));
        for (_, path) in &found[..excess] {
            std::fs::remove_file(path).map_err(StorageError::io("remove", path))?;
        }
        if excess > 0 {
            fsutil::sync_dir(&self.dir)?;
        }
        Ok(())
    }
}
