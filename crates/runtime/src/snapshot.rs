//! Moving snapshot bytes: from the state machine into the snapshot store,
//! from the store into a reader, and from the store to a transport that
//! sends it to a follower ([`SnapshotSource`]).

use std::io::{self, Read};

use bytes::Bytes;
use keel_raft::SnapshotMeta;
use keel_storage::{SnapshotInfo, SnapshotReader, SnapshotStore, StagedSnapshot, StorageError};

use crate::error::SnapshotWriteError;

/// Bytes copied per write when storing a snapshot the state machine made.
const WRITE_CHUNK_BYTES: usize = 1024 * 1024;

/// A published snapshot's data as a [`Read`], from `offset` on.
pub(crate) struct SnapshotBytes {
    reader: Box<dyn SnapshotReader>,
    offset: u64,
}

impl SnapshotBytes {
    pub(crate) fn new(reader: Box<dyn SnapshotReader>, offset: u64) -> SnapshotBytes {
        SnapshotBytes { reader, offset }
    }
}

impl Read for SnapshotBytes {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let chunk = self
            .reader
            .read_chunk(self.offset, buf.len())
            .map_err(io::Error::other)?;
        // A store's chunk is at most `buf.len()` (its contract); should one
        // return more, the rest is read again at the next call.
        let n = chunk.len().min(buf.len());
        buf[..n].copy_from_slice(&chunk[..n]);
        self.offset += n as u64;
        Ok(n)
    }
}

/// Copies the state machine's snapshot stream into the store, publishes
/// it and prunes the store to the newest `keep`.
pub(crate) fn write_local(
    store: &dyn SnapshotStore,
    meta: SnapshotMeta,
    data: &mut dyn Read,
    keep: usize,
) -> Result<SnapshotInfo, SnapshotWriteError> {
    let mut writer = store.begin(meta)?;
    let mut buf = vec![0u8; WRITE_CHUNK_BYTES];
    loop {
        let n = data.read(&mut buf)?;
        if n == 0 {
            return Ok(publish(store, writer.stage(None)?, keep)?);
        }
        let offset = writer.next_offset();
        writer.write_chunk(offset, &buf[..n])?;
    }
}

/// Publishes `staged`, then prunes the store to the newest `keep`. The
/// store never prunes by itself: the node loop compacts the log one
/// snapshot behind the newest only while `keep` ≥ 2 keeps that one, so
/// the count is the node's ([`crate::Config::snapshots_kept`]).
pub(crate) fn publish(
    store: &dyn SnapshotStore,
    staged: Box<dyn StagedSnapshot>,
    keep: usize,
) -> Result<SnapshotInfo, StorageError> {
    let info = staged.publish()?;
    store.prune(keep)?;
    Ok(info)
}

/// A stored snapshot that a [`crate::Transport`] sends to a follower.
///
/// It holds the published snapshot open, so the data stays readable even
/// if a newer snapshot prunes it meanwhile, and a transport may
/// read it at any offset, e.g. to resume where the receiver says it holds
/// bytes already. Reading blocks on the disk: call it from a
/// blocking thread (`tokio::task::spawn_blocking`).
pub struct SnapshotSource {
    reader: Box<dyn SnapshotReader>,
}

impl SnapshotSource {
    pub(crate) fn new(reader: Box<dyn SnapshotReader>) -> SnapshotSource {
        SnapshotSource { reader }
    }

    /// The CRC32C of the whole data, for the receiver to verify the copy.
    pub fn checksum(&self) -> u32 {
        self.reader.info().checksum
    }

    /// Up to `max_bytes` of the data from `offset` on; fewer only at the
    /// end, so a short (or empty) chunk is the last one.
    pub fn read_chunk(&self, offset: u64, max_bytes: usize) -> io::Result<Bytes> {
        self.reader
            .read_chunk(offset, max_bytes)
            .map_err(io::Error::other)
    }

    /// The data from `offset` on, as a [`Read`].
    pub fn into_reader(self, offset: u64) -> Box<dyn Read + Send> {
        Box::new(SnapshotBytes::new(self.reader, offset))
    }
}
