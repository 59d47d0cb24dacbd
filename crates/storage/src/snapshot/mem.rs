//! A snapshot store in memory, for tests and benchmarks: the same contract
//! as the file store, without a disk.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use keel_raft::{LogIndex, SnapshotMeta, Term};

use super::format::SnapshotInfo;
use super::store::{SnapshotReader, SnapshotStore, SnapshotWriter, StagedSnapshot, check_checksum};
use crate::error::StorageError;

/// Published snapshots by `(index, term)`, with their data.
type Published = BTreeMap<(LogIndex, Term), (SnapshotInfo, Bytes)>;

/// Snapshots kept in memory. Clones share them, as two opens of one
/// directory would share its files, so a test can stop a node and start
/// it again on the snapshots it left; a process that exits loses them.
///
/// What is written or staged lives in its writer or staged snapshot until
/// published, so dropping one (or losing it in a simulated crash) leaves
/// nothing behind. A reader holds its snapshot's data, shared and
/// immutable, so pruning never takes it away. Memory is bounded only by
/// the snapshots' sizes: a store for tests and benchmarks.
#[derive(Clone, Debug, Default)]
pub struct MemSnapshotStore {
    published: Arc<Mutex<Published>>,
}

impl MemSnapshotStore {
    /// An empty store.
    pub fn new() -> MemSnapshotStore {
        MemSnapshotStore::default()
    }

    /// The map, even after a panic elsewhere while it was held: every
    /// change to it is a single insert or remove, so it is never half
    /// changed.
    fn published(&self) -> MutexGuard<'_, Published> {
        self.published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl SnapshotStore for MemSnapshotStore {
    fn list(&self) -> Result<Vec<SnapshotInfo>, StorageError> {
        Ok(self
            .published()
            .values()
            .map(|(info, _)| info.clone())
            .collect())
    }

    fn begin(&self, meta: SnapshotMeta) -> Result<Box<dyn SnapshotWriter>, StorageError> {
        Ok(Box::new(MemSnapshotWriter {
            store: self.clone(),
            meta,
            data: Vec::new(),
            crc: 0,
        }))
    }

    fn open_reader(&self, index: LogIndex) -> Result<Box<dyn SnapshotReader>, StorageError> {
        let published = self.published();
        let found = published
            .range((index, Term(0))..=(index, Term(u64::MAX)))
            .next_back();
        match found {
            Some((_, (info, data))) => Ok(Box::new(MemSnapshotReader {
                info: info.clone(),
                data: data.clone(),
            })),
            None => Err(StorageError::SnapshotNotFound { index }),
        }
    }

    fn prune(&self, keep: usize) -> Result<(), StorageError> {
        let mut published = self.published();
        while published.len() > keep.max(1) {
            published.pop_first();
        }
        Ok(())
    }
}

/// A snapshot being written into a buffer of its own.
#[derive(Debug)]
struct MemSnapshotWriter {
    store: MemSnapshotStore,
    meta: SnapshotMeta,
    data: Vec<u8>,
    /// crc32c of `data`, kept as it arrives.
    crc: u32,
}

impl SnapshotWriter for MemSnapshotWriter {
    fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    fn next_offset(&self) -> u64 {
        self.data.len() as u64
    }

    fn write_chunk(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        if offset != self.next_offset() {
            return Err(StorageError::SnapshotOffset {
                expected: self.next_offset(),
                got: offset,
            });
        }
        self.data.extend_from_slice(data);
        self.crc = crc32c::crc32c_append(self.crc, data);
        Ok(())
    }

    fn stage(
        self: Box<Self>,
        expected_checksum: Option<u32>,
    ) -> Result<Box<dyn StagedSnapshot>, StorageError> {
        check_checksum(expected_checksum, self.crc)?;
        let info = SnapshotInfo {
            meta: self.meta,
            data_bytes: self.data.len() as u64,
            checksum: self.crc,
        };
        Ok(Box::new(MemStagedSnapshot {
            store: self.store,
            info,
            data: Bytes::from(self.data),
        }))
    }
}

/// A whole, verified snapshot waiting to be published.
#[derive(Debug)]
struct MemStagedSnapshot {
    store: MemSnapshotStore,
    info: SnapshotInfo,
    data: Bytes,
}

impl StagedSnapshot for MemStagedSnapshot {
    fn info(&self) -> &SnapshotInfo {
        &self.info
    }

    fn publish(self: Box<Self>) -> Result<SnapshotInfo, StorageError> {
        let key = (self.info.meta.index, self.info.meta.term);
        self.store
            .published()
            .insert(key, (self.info.clone(), self.data));
        Ok(self.info)
    }
}

/// A published snapshot's data, shared with the store until pruned.
#[derive(Debug)]
struct MemSnapshotReader {
    info: SnapshotInfo,
    data: Bytes,
}

impl SnapshotReader for MemSnapshotReader {
    fn info(&self) -> &SnapshotInfo {
        &self.info
    }

    fn read_chunk(&self, offset: u64, max_bytes: usize) -> Result<Bytes, StorageError> {
        let start = usize::try_from(offset).map_or(self.data.len(), |o| o.min(self.data.len()));
        let end = start.saturating_add(max_bytes).min(self.data.len());
        Ok(self.data.slice(start..end))
    }
}
