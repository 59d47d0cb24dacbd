//! The contract every snapshot store keeps: [`SnapshotStore`] and the
//! writer, staged snapshot and reader it hands out.
//!
//! The runtime writes a snapshot in two situations — its own state
//! machine's, copied from a stream, and a leader's, arriving in chunks from
//! the network — and reads one to restore its state machine or to send it
//! to a follower. Each guarantee below is one the runtime relies on; a
//! store that breaks one can lose committed state, so
//! [`crate::conformance::snapshots`] checks them all.

use std::fmt;

use bytes::Bytes;
use keel_raft::{LogIndex, SnapshotMeta};

use crate::error::StorageError;
use crate::snapshot::SnapshotInfo;

/// Where a node keeps snapshots of its state machine: a few published
/// ones, the newest of which the log is compacted to or behind.
///
/// A snapshot goes through three states: *written* (a [`SnapshotWriter`]
/// takes its data chunk by chunk), *staged* (a [`StagedSnapshot`]: whole,
/// verified and durable, but not visible) and *published* (listed, and
/// readable through [`SnapshotStore::open_reader`]). A leader's snapshot
/// stays staged until the Raft core accepts it, so one the core refuses
/// never becomes the newest snapshot nor crowds out the one the log is
/// compacted to.
///
/// # Guarantees a store must keep
///
/// 1. **Only published snapshots are visible.** [`SnapshotStore::list`],
///    [`SnapshotStore::latest`] and [`SnapshotStore::open_reader`] never
///    show a snapshot being written or staged.
/// 2. **Publishing is atomic and durable.** Once
///    [`StagedSnapshot::publish`] returns, the snapshot survives a crash
///    whole; a crash before that leaves the store as it was, as if the
///    snapshot had never been begun. Nothing half-written is ever
///    published, and nothing unpublished survives a restart: a writer or a
///    staged snapshot dropped (or lost in a crash) leaves nothing behind
///    that [`SnapshotStore::list`] shows, and a store reopened after a
///    crash discards what such leftovers hold.
/// 3. **Data is checked before it is published.** A writer takes chunks
///    only at [`SnapshotWriter::next_offset`], and
///    [`SnapshotWriter::stage`] refuses data whose CRC-32C differs from
///    the one the sender announced.
/// 4. **Writers are independent.** Several writers may be open at once,
///    even for the same [`SnapshotMeta`] (a node snapshotting its own
///    state while it receives a leader's); none sees another's data.
/// 5. **Order.** Published snapshots are ordered by index, then term;
///    [`SnapshotStore::latest`] is the last of [`SnapshotStore::list`].
/// 6. **Only [`SnapshotStore::prune`] removes published snapshots, and
///    never the newest one.** The runtime decides how many to keep (the
///    log may be compacted to the one before the newest, which a lagging
///    follower is sent); a store that drops snapshots on its own breaks
///    that. (Publishing a snapshot again at the same index and term
///    replaces the earlier copy.)
/// 7. **An open reader keeps its snapshot.** A [`SnapshotReader`] reads
///    the whole snapshot it was opened on until it is dropped, whatever is
///    published or pruned meanwhile: a transfer to a follower is never cut
///    short. A pruned snapshot leaves the list at once, but its data must
///    outlive its readers (Keel's file store relies on an unlinked file
///    staying readable while open; a store whose deletes take effect at
///    once defers them until the last reader is dropped).
///
/// Stores are shared between threads (the apply thread writes local
/// snapshots while the transport writes a leader's), hence `Send + Sync`
/// and `&self` methods; each call may block on IO.
pub trait SnapshotStore: Send + Sync {
    /// Every published snapshot, oldest first (by index, then term).
    fn list(&self) -> Result<Vec<SnapshotInfo>, StorageError>;

    /// The newest published snapshot, if any: the last of
    /// [`SnapshotStore::list`].
    fn latest(&self) -> Result<Option<SnapshotInfo>, StorageError> {
        Ok(self.list()?.pop())
    }

    /// Starts writing the snapshot `meta` describes. It becomes visible
    /// only once staged and then published.
    fn begin(&self, meta: SnapshotMeta) -> Result<Box<dyn SnapshotWriter>, StorageError>;

    /// Opens the published snapshot at `index` (the one of the highest
    /// term, should two share it) for reading.
    ///
    /// # Errors
    /// [`StorageError::SnapshotNotFound`] if none is published at `index`.
    fn open_reader(&self, index: LogIndex) -> Result<Box<dyn SnapshotReader>, StorageError>;

    /// Removes all but the newest `keep` published snapshots; a `keep` of
    /// 0 keeps one, since the newest is never removed. Readers already
    /// open keep reading theirs (guarantee 7).
    fn prune(&self, keep: usize) -> Result<(), StorageError>;
}

/// A snapshot being written, chunk by chunk, from offset 0 on.
///
/// Dropping it without staging discards what it holds.
pub trait SnapshotWriter: Send + fmt::Debug {
    /// What the snapshot being written covers.
    fn meta(&self) -> &SnapshotMeta;

    /// The data offset the next chunk must start at: the bytes taken so far.
    fn next_offset(&self) -> u64;

    /// Writes `data` at data offset `offset`, which must be
    /// [`SnapshotWriter::next_offset`].
    ///
    /// # Errors
    /// [`StorageError::SnapshotOffset`] naming the offset to resume from if
    /// `offset` is another (a duplicate or a gap), and the writer stays
    /// usable: an install interrupted by the network resumes where it
    /// stopped.
    fn write_chunk(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError>;

    /// Verifies the data against `expected_checksum` (the sender's CRC-32C,
    /// when installing a leader's snapshot) and makes it durable without
    /// publishing it.
    ///
    /// # Errors
    /// [`StorageError::SnapshotChecksum`] if the data does not match; what
    /// was written is discarded and the transfer must start over.
    fn stage(
        self: Box<Self>,
        expected_checksum: Option<u32>,
    ) -> Result<Box<dyn StagedSnapshot>, StorageError>;

    /// Stages the snapshot and publishes it at once: a node's own
    /// snapshot, which needs no one's approval.
    fn finish(
        self: Box<Self>,
        expected_checksum: Option<u32>,
    ) -> Result<SnapshotInfo, StorageError> {
        self.stage(expected_checksum)?.publish()
    }
}

/// A whole, verified, durable snapshot that is not yet published: the
/// store's readers and [`SnapshotStore::latest`] do not see it. Dropping
/// it discards it.
pub trait StagedSnapshot: Send + fmt::Debug {
    /// What the staged snapshot covers, its size and its checksum.
    fn info(&self) -> &SnapshotInfo;

    /// Publishes the snapshot, atomically and durably (guarantee 2). It
    /// prunes nothing: that is [`SnapshotStore::prune`]'s job.
    fn publish(self: Box<Self>) -> Result<SnapshotInfo, StorageError>;
}

/// An open published snapshot, read at any offset (to stream it to a
/// follower, resuming where the follower says it stopped, or to restore
/// a state machine).
pub trait SnapshotReader: Send + Sync + fmt::Debug {
    /// The snapshot being read: what it covers, its size and checksum.
    fn info(&self) -> &SnapshotInfo;

    /// Up to `max_bytes` of data from data offset `offset`: fewer only at
    /// the end, and none at or past it.
    fn read_chunk(&self, offset: u64, max_bytes: usize) -> Result<Bytes, StorageError>;

    /// Reads all the data and checks it against the checksum it was
    /// published with.
    ///
    /// # Errors
    /// [`StorageError::SnapshotDamaged`] (or, from a store that can say
    /// where, [`StorageError::Corrupt`]) if the data changed since.
    fn verify(&self) -> Result<(), StorageError> {
        /// Bytes read per call while checking.
        const CHUNK_BYTES: usize = 1 << 20;
        let info = self.info();
        let (mut crc, mut offset) = (0, 0);
        while offset < info.data_bytes {
            let chunk = self.read_chunk(offset, CHUNK_BYTES)?;
            if chunk.is_empty() {
                break;
            }
            crc = crc32c::crc32c_append(crc, &chunk);
            offset += chunk.len() as u64;
        }
        if crc != info.checksum || offset != info.data_bytes {
            return Err(StorageError::SnapshotDamaged {
                index: info.meta.index,
                expected: info.checksum,
                actual: crc,
            });
        }
        Ok(())
    }
}

/// Guarantee 3's check, for every store's [`SnapshotWriter::stage`]: the
/// data's CRC-32C `actual` against the sender's announced one, if any.
pub(crate) fn check_checksum(expected: Option<u32>, actual: u32) -> Result<(), StorageError> {
    match expected {
        Some(expected) if expected != actual => {
            Err(StorageError::SnapshotChecksum { expected, actual })
        }
        _ => Ok(()),
    }
}
