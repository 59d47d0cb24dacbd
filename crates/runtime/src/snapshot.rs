//! Moving snapshot bytes: from the state machine into the snapshot store,
//! from the store into a reader, and from the store to a transport that
//! sends it to a follower ([`SnapshotSource`]).

use std::io::{self, Read};

use bytes::Bytes;
use keel_raft::SnapshotMeta;
use keel_storage::{SnapshotInfo, SnapshotReader, SnapshotStore};

use crate::error::SnapshotWriteError;

/// Bytes copied per write when storing a snapshot the state machine made.
const WRITE_CHUNK_BYTES: usize = 1024 * 1024;

/// A published snapshot's data as a [`Read`], from `offset` on.
pub(crate) struct SnapshotBytes {
    reader: SnapshotReader,
    offset: u64,
}

impl SnapshotBytes {
    pub(crate) fn new(reader: SnapshotReader, offset: u64) -> SnapshotBytes {
        SnapshotBytes { reader, offset }
    }
}

impl Read for SnapshotBytes {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let chunk = self
            .reader
            .read_chunk(self.offset, buf.len())
            .map_err(io::Error::other)?;
        buf[..chunk.len()].copy_from_slice(&chunk);
        self.offset += chunk.len() as u64;
        Ok(chunk.len())
    }
}

/// Copies the state machine's snapshot stream into the store and publishes it.
pub(crate) fn write_local(
    store: &SnapshotStore,
    meta: SnapshotMeta,
    data: &mut dyn Read,
) -> Result<SnapshotInfo, SnapshotWriteError> {
    let mut writer = store.begin(meta)?;
    let mut buf = vec![0u8; WRITE_CHUNK_BYTES];
    loop {
        let n = data.read(&mut buf)?;
        if n == 0 {
            return Ok(writer.finish(None)?);
        }
        writer.write_chunk(writer.next_offset(), &buf[..n])?;
    }
}

/// A stored snapshot that a [`crate::Transport`] sends to a follower.
///
/// It holds the published snapshot file open, so the data stays readable
/// even if a newer snapshot prunes the file meanwhile, and a transport may
/// read it at any offset, e.g. to resume where the receiver says it holds
/// bytes already. Reading blocks on the disk: call it from a
/// blocking thread (`tokio::task::spawn_blocking`).
pub struct SnapshotSource {
    reader: SnapshotReader,
}

impl SnapshotSource {
    pub(crate) fn new(reader: SnapshotReader) -> SnapshotSource {
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
