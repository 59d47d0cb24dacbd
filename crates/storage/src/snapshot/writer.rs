//! Writing a snapshot file chunk by chunk, and publishing it atomically.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use keel_raft::SnapshotMeta;

use super::format::{self, SnapshotInfo};
use super::store::{SnapshotWriter, StagedSnapshot, check_checksum};
use crate::error::StorageError;
use crate::fsutil;

/// Written bytes after which the writer syncs what it has written so far.
/// Without it, a snapshot's data (hundreds of MB for a large store) sits in
/// the page cache until the final `fdatasync`, which then floods the disk
/// queue: every WAL `fdatasync` behind it — each acknowledged write, each
/// vote — waits hundreds of milliseconds. Syncing as it goes keeps the
/// queue short (RocksDB's `bytes_per_sync` answers the same problem).
const SYNC_EVERY_BYTES: u64 = 8 << 20;

/// Numbers the partial files of this process, so that two writers of the
/// same snapshot (a node's own and a leader's, at one index) never share
/// a file. The name still ends in the partial suffix, which is all the
/// store's cleanup at open looks for.
static PARTIAL_FILES: AtomicU64 = AtomicU64::new(0);

/// A snapshot file being written. Chunks must arrive in order; a chunk at
/// the wrong offset is refused with [`StorageError::SnapshotOffset`]
/// naming the offset to resume from, and the writer stays usable, so an
/// install interrupted by the network resumes where it stopped. Dropping
/// the writer without staging discards the partial file.
#[derive(Debug)]
pub(super) struct FileSnapshotWriter {
    dir: PathBuf,
    partial: PathBuf,
    file: File,
    meta: SnapshotMeta,
    header_bytes: u64,
    next_offset: u64,
    /// Bytes written since the last sync.
    unsynced_bytes: u64,
    /// crc32c of the data written so far, kept as it arrives so staging
    /// need not read the data back.
    crc: u32,
    staged: bool,
}

impl FileSnapshotWriter {
    pub(super) fn create(
        dir: &Path,
        meta: SnapshotMeta,
    ) -> Result<FileSnapshotWriter, StorageError> {
        let number = PARTIAL_FILES.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{number}-{}",
            format::file_name(&meta, format::PARTIAL_SUFFIX)
        );
        let partial = dir.join(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&partial)
            .map_err(StorageError::io("create", &partial))?;
        // A placeholder header reserves the space; staging rewrites it.
        let header = format::encode_header(&SnapshotInfo {
            meta: meta.clone(),
            data_bytes: 0,
            checksum: 0,
        });
        file.write_all_at(&header, 0)
            .map_err(StorageError::io("write", &partial))?;
        Ok(FileSnapshotWriter {
            dir: dir.to_path_buf(),
            partial,
            file,
            meta,
            header_bytes: header.len() as u64,
            next_offset: 0,
            unsynced_bytes: 0,
            crc: 0,
            staged: false,
        })
    }
}

impl SnapshotWriter for FileSnapshotWriter {
    fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    fn next_offset(&self) -> u64 {
        self.next_offset
    }

    fn write_chunk(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        if offset != self.next_offset {
            return Err(StorageError::SnapshotOffset {
                expected: self.next_offset,
                got: offset,
            });
        }
        self.file
            .write_all_at(data, self.header_bytes + offset)
            .map_err(StorageError::io("write", &self.partial))?;
        self.crc = crc32c::crc32c_append(self.crc, data);
        self.next_offset += data.len() as u64;
        self.unsynced_bytes += data.len() as u64;
        if self.unsynced_bytes >= SYNC_EVERY_BYTES {
            self.file
                .sync_data()
                .map_err(StorageError::io("fdatasync", &self.partial))?;
            self.unsynced_bytes = 0;
        }
        Ok(())
    }

    /// Rewrites the header with the data's length and checksum, then
    /// `fdatasync`s the file. A mismatch drops the writer, and with it the
    /// partial file.
    fn stage(
        mut self: Box<Self>,
        expected_checksum: Option<u32>,
    ) -> Result<Box<dyn StagedSnapshot>, StorageError> {
        check_checksum(expected_checksum, self.crc)?;
        let info = SnapshotInfo {
            meta: self.meta.clone(),
            data_bytes: self.next_offset,
            checksum: self.crc,
        };
        let header = format::encode_header(&info);
        debug_assert_eq!(header.len() as u64, self.header_bytes);
        self.file
            .write_all_at(&header, 0)
            .map_err(StorageError::io("write", &self.partial))?;
        self.file
            .sync_data()
            .map_err(StorageError::io("fdatasync", &self.partial))?;
        // From here the staged snapshot owns the file.
        self.staged = true;
        Ok(Box::new(FileStagedSnapshot {
            dir: self.dir.clone(),
            partial: self.partial.clone(),
            info,
            published: false,
        }))
    }
}

/// A whole, verified, durable snapshot file that is not yet published:
/// still a partial file, which readers and the listing ignore. Dropping it
/// removes the file; a crash leaves it, and the store's next open removes
/// it.
#[derive(Debug)]
pub(super) struct FileStagedSnapshot {
    dir: PathBuf,
    partial: PathBuf,
    info: SnapshotInfo,
    published: bool,
}

impl StagedSnapshot for FileStagedSnapshot {
    fn info(&self) -> &SnapshotInfo {
        &self.info
    }

    /// Renames the file to its final name, then `fsync`s the directory.
    fn publish(mut self: Box<Self>) -> Result<SnapshotInfo, StorageError> {
        let published = self
            .dir
            .join(format::file_name(&self.info.meta, format::SUFFIX));
        fs::rename(&self.partial, &published).map_err(StorageError::io("rename", &self.partial))?;
        self.published = true;
        fsutil::sync_dir(&self.dir)?;
        Ok(self.info.clone())
    }
}

impl Drop for FileStagedSnapshot {
    fn drop(&mut self) {
        if !self.published {
            // Best effort: a leftover partial file is removed by the next open anyway.
            let _ = fs::remove_file(&self.partial);
        }
    }
}

impl Drop for FileSnapshotWriter {
    fn drop(&mut self) {
        if !self.staged {
            // Best effort: a leftover partial file is removed by the next open anyway.
            let _ = fs::remove_file(&self.partial);
        }
    }
}
