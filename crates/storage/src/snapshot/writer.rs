//! Writing a snapshot chunk by chunk, and publishing it atomically.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use keel_raft::SnapshotMeta;

use super::format::{self, SnapshotInfo};
use crate::error::StorageError;
use crate::fsutil;

/// Written bytes after which the writer syncs what it has written so far.
/// Without it, a snapshot's data (hundreds of MB for a large store) sits in
/// the page cache until the final `fdatasync`, which then floods the disk
/// queue: every WAL `fdatasync` behind it — each acknowledged write, each
/// vote — waits hundreds of milliseconds. Syncing as it goes keeps the
/// queue short (RocksDB's `bytes_per_sync` answers the same problem).
const SYNC_EVERY_BYTES: u64 = 8 << 20;

/// A snapshot being written. Chunks must arrive in order; a chunk at the
/// wrong offset is refused with [`StorageError::SnapshotOffset`] naming the
/// offset to resume from, and the writer stays usable, so an install
/// interrupted by the network resumes where it stopped. Dropping the writer
/// without finishing discards the partial file.
#[derive(Debug)]
pub struct SnapshotWriter {
    dir: PathBuf,
    keep: usize,
    partial: PathBuf,
    file: File,
    meta: SnapshotMeta,
    header_bytes: u64,
    next_offset: u64,
    /// Bytes written since the last sync.
    unsynced_bytes: u64,
    /// crc32c of the data written so far, kept as it arrives so finishing
    /// need not read the data back.
    crc: u32,
    finished: bool,
}

impl SnapshotWriter {
    pub(super) fn create(
        dir: &Path,
        keep: usize,
        meta: SnapshotMeta,
    ) -> Result<SnapshotWriter, StorageError> {
        let partial = dir.join(format::file_name(&meta, format::PARTIAL_SUFFIX));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&partial)
            .map_err(StorageError::io("create", &partial))?;
        // A placeholder header reserves the space; finish() rewrites it.
        let header = format::encode_header(&SnapshotInfo {
            meta: meta.clone(),
            data_bytes: 0,
            checksum: 0,
        });
        file.write_all_at(&header, 0)
            .map_err(StorageError::io("write", &partial))?;
        Ok(SnapshotWriter {
            dir: dir.to_path_buf(),
            keep,
            partial,
            file,
            meta,
            header_bytes: header.len() as u64,
            next_offset: 0,
            unsynced_bytes: 0,
            crc: 0,
            finished: false,
        })
    }

    /// What the snapshot being written covers.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// The data offset the next chunk must start at.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Writes `data` at data offset `offset`, which must be
    /// [`SnapshotWriter::next_offset`].
    pub fn write_chunk(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
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

    /// Verifies the data against `expected_checksum` (the sender's, when
    /// installing from a leader) and publishes the snapshot; see
    /// [`SnapshotWriter::stage`] and [`StagedSnapshot::publish`].
    ///
    /// # Errors
    /// [`StorageError::SnapshotChecksum`] if the data does not match; the
    /// partial file is discarded and the transfer must start over.
    pub fn finish(self, expected_checksum: Option<u32>) -> Result<SnapshotInfo, StorageError> {
        self.stage(expected_checksum)?.publish()
    }

    /// Verifies the data against `expected_checksum` and makes it durable
    /// (header, then `fdatasync`) without publishing it. A snapshot received
    /// from a leader is staged until the core decides to install it: one it
    /// refuses (stale, or already covered by the log) must not become the
    /// store's newest, nor push out the snapshot the log is compacted to.
    ///
    /// # Errors
    /// [`StorageError::SnapshotChecksum`] if the data does not match; the
    /// partial file is discarded and the transfer must start over.
    pub fn stage(mut self, expected_checksum: Option<u32>) -> Result<StagedSnapshot, StorageError> {
        if let Some(expected) = expected_checksum.filter(|&e| e != self.crc) {
            return Err(StorageError::SnapshotChecksum {
                expected,
                actual: self.crc,
            });
        }
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
        self.finished = true;
        Ok(StagedSnapshot {
            dir: self.dir.clone(),
            keep: self.keep,
            partial: self.partial.clone(),
            info,
            published: false,
        })
    }
}

/// A whole, verified, durable snapshot that is not yet published: readers
/// and [`SnapshotStore::latest`](super::SnapshotStore::latest) do not see
/// it. Dropping it discards it; a crash leaves a partial file, which the
/// store's next open removes.
#[derive(Debug)]
pub struct StagedSnapshot {
    dir: PathBuf,
    keep: usize,
    partial: PathBuf,
    info: SnapshotInfo,
    published: bool,
}

impl StagedSnapshot {
    /// What the staged snapshot covers.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.info.meta
    }

    /// Publishes the snapshot: rename to its final name, `fsync` of the
    /// directory. Older snapshots beyond the store's `keep` are then
    /// removed (the newest by index stay, and the log is compacted to the
    /// newest published one, so that one is never removed).
    pub fn publish(mut self) -> Result<SnapshotInfo, StorageError> {
        let published = self
            .dir
            .join(format::file_name(&self.info.meta, format::SUFFIX));
        fs::rename(&self.partial, &published).map_err(StorageError::io("rename", &self.partial))?;
        self.published = true;
        fsutil::sync_dir(&self.dir)?;
        super::prune(&self.dir, self.keep)?;
        Ok(self.info.clone())
    }
}

impl Drop for StagedSnapshot {
    fn drop(&mut self) {
        if !self.published {
            // Best effort: a leftover partial file is removed by the next open anyway.
            let _ = fs::remove_file(&self.partial);
        }
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if !self.finished {
            // Best effort: a leftover partial file is removed by the next open anyway.
            let _ = fs::remove_file(&self.partial);
        }
    }
}
