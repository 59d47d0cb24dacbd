//! The crate's one error type, plus the typed reasons it carries.
//!
//! Errors come in the three tiers of STYLE.md: conditions the caller acts on
//! (`Compacted`, `Unavailable`, `SnapshotOffset`), fatal conditions that stop
//! the node (`Corrupt`, `Poisoned`), and I/O failures. Misuse of the API is a
//! programmer error and panics instead.

use std::io;
use std::path::PathBuf;

use keel_raft::LogIndex;

use crate::codec::DecodeError;

/// Everything that can go wrong in the log or snapshot store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O call on a file or directory failed.
    #[error("could not {op} {}: {source}", path.display())]
    Io {
        /// The operation that failed, as a verb (`"open"`, `"fdatasync"`, ...).
        op: &'static str,
        /// The file or directory the operation was on.
        path: PathBuf,
        /// The error the operating system returned.
        #[source]
        source: io::Error,
    },
    /// A file on disk is damaged; the node must not rejoin from this directory.
    #[error(
        "{} is corrupt at byte offset {offset}: {kind}. Data this node acknowledged may be lost, \
         so it must not rejoin from this directory: move the directory aside and restore the node \
         from a snapshot (a restarted empty member receives one from the leader), or remove the \
         member from the cluster and add it back as a new one",
        file.display()
    )]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// The byte offset in `file` where the damage was found.
        offset: u64,
        /// What exactly is wrong.
        kind: Corruption,
    },
    /// A file was written in an on-disk format version this build cannot read.
    #[error(
        "{} uses on-disk format version {found}, but this build reads only version {supported}; \
         run a build of Keel that supports it",
        file.display()
    )]
    UnsupportedVersion {
        /// The file whose header names the version.
        file: PathBuf,
        /// The format version in the file's header.
        found: u32,
        /// The one format version this build reads.
        supported: u32,
    },
    /// Another store holds the lock on the directory.
    #[error(
        "{} is locked by another store (in this or another process); stop it before opening the directory",
        dir.display()
    )]
    Locked {
        /// The directory whose lock is held.
        dir: PathBuf,
    },
    /// A configuration value was rejected when the store was opened.
    #[error("invalid storage configuration: {field} {problem}")]
    InvalidConfig {
        /// The name of the rejected setting.
        field: &'static str,
        /// What is wrong with its value (`"must be at least 1"`, ...).
        problem: &'static str,
    },
    /// The requested entry was compacted into a snapshot and is no longer in the log.
    #[error("entry {requested} was compacted into a snapshot; the log now starts at {first_index}")]
    Compacted {
        /// The index that was asked for.
        requested: LogIndex,
        /// The first index the log still holds.
        first_index: LogIndex,
    },
    /// The requested entry lies past the end of the log.
    #[error("entry {requested} is not in the log, which ends at {last_index}")]
    Unavailable {
        /// The index that was asked for.
        requested: LogIndex,
        /// The last index the log holds.
        last_index: LogIndex,
    },
    /// An earlier write or sync failed, so the store refuses further writes until reopened.
    #[error(
        "the store stopped accepting writes after it failed to {op} {} ({kind}); the page cache \
         can no longer be trusted, so drop the store and reopen it to recover from what is on disk",
        path.display()
    )]
    Poisoned {
        /// The operation whose failure poisoned the store, as a verb.
        op: &'static str,
        /// The file that operation was on.
        path: PathBuf,
        /// The kind of the I/O error it failed with.
        kind: io::ErrorKind,
    },
    /// A snapshot chunk did not start where the staged snapshot ends.
    #[error(
        "snapshot chunk starts at offset {got}, but the next expected offset is {expected}; resend from {expected}"
    )]
    SnapshotOffset {
        /// The offset the next chunk must start at (the bytes received so far).
        expected: u64,
        /// The offset the chunk carried.
        got: u64,
    },
    /// A received snapshot's data does not match the checksum the sender announced.
    #[error(
        "snapshot data has checksum {actual:#010x}, but the sender announced {expected:#010x}; \
         the partial snapshot was discarded, so send it again"
    )]
    SnapshotChecksum {
        /// The CRC-32C the sender announced.
        expected: u32,
        /// The CRC-32C of the data received.
        actual: u32,
    },
    /// No stored snapshot has the requested index.
    #[error("there is no snapshot at index {index}")]
    SnapshotNotFound {
        /// The snapshot index that was asked for.
        index: LogIndex,
    },
    /// A published snapshot's data no longer matches the checksum it was
    /// published with (reported by a store that cannot name a file and an
    /// offset; Keel's file store reports [`StorageError::Corrupt`]).
    #[error(
        "the snapshot at index {index} is damaged: its data has checksum {actual:#010x}, but it \
         was published with {expected:#010x}; do not restore from it (a member without a good \
         snapshot receives one from the leader)"
    )]
    SnapshotDamaged {
        /// The index of the damaged snapshot.
        index: LogIndex,
        /// The CRC-32C the snapshot was published with.
        expected: u32,
        /// The CRC-32C of the data read back.
        actual: u32,
    },
}

/// What exactly is wrong with a corrupt file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    /// The file's header fails its checks (magic, length or checksum).
    #[error("the file header is damaged")]
    BadFileHeader,
    /// A segment file's name and header disagree about its sequence number.
    #[error("the file is named for segment {named}, but its header says segment {found}")]
    SegmentSeqMismatch {
        /// The sequence number in the file name.
        named: u64,
        /// The sequence number in the file header.
        found: u64,
    },
    /// The segment files' sequence numbers skip one.
    #[error("segment {missing} is missing from the sequence of segment files")]
    MissingSegment {
        /// The sequence number of the first missing segment.
        missing: u64,
    },
    /// A record frame is damaged.
    #[error("a damaged record ({problem})")]
    DamagedRecord {
        /// Why the frame is not valid.
        problem: FrameProblem,
    },
    /// A damaged record is followed by a valid record of a later write, so it
    /// is not a torn final write that recovery may cut off.
    #[error(
        "a damaged record ({problem}) precedes a valid record of a later write at offset {later_offset}, \
         so the damage is not a torn final write"
    )]
    DamagedBeforeLaterWrite {
        /// Why the damaged frame is not valid.
        problem: FrameProblem,
        /// The byte offset of the valid later record.
        later_offset: u64,
    },
    /// Write batch ids do not increase along the log.
    #[error("write batch {found} follows write batch {previous}")]
    BatchOutOfOrder {
        /// The id of the batch before.
        previous: u64,
        /// The id of the batch that follows it.
        found: u64,
    },
    /// A segment ends before the write batch in progress is complete.
    #[error("the segment ends inside write batch {batch}, but batches never span segments")]
    BatchCutAtSegmentEnd {
        /// The id of the unfinished batch.
        batch: u64,
    },
    /// A record passes its checksum but its payload cannot be decoded.
    #[error("a record passes its checksum but cannot be decoded: {0}")]
    Undecodable(DecodeError),
    /// An entry's index skips past the one after the previous entry.
    #[error("entry {index} follows entry {last}, leaving a gap")]
    IndexGap {
        /// The index of the previous entry.
        last: LogIndex,
        /// The index of the entry that follows it.
        index: LogIndex,
    },
    /// An entry's index is at or below the log's compaction point.
    #[error("entry {index} is at or below the compaction point {compacted}")]
    EntryBelowCompaction {
        /// The index of the entry.
        index: LogIndex,
        /// The last index covered by the snapshot (the compaction point).
        compacted: LogIndex,
    },
    /// The log's first entry is not the one right after the compaction point.
    #[error(
        "the log resumes at entry {first} but the snapshot covers only up to entry {compacted}; \
         segments holding the entries between are missing"
    )]
    MissingPrefix {
        /// The first index the log holds.
        first: LogIndex,
        /// The last index covered by the snapshot (the compaction point).
        compacted: LogIndex,
    },
    /// The record at an entry's indexed location does not hold that entry.
    #[error("the record indexed as entry {expected} holds entry {found}")]
    MisplacedEntry {
        /// The index the location was recorded for.
        expected: LogIndex,
        /// The index of the entry found there (0 if the record is not an entry).
        found: LogIndex,
    },
    /// A file is shorter than its header says.
    #[error("the file is shorter than its header says ({len} of {expected} bytes)")]
    Truncated {
        /// The file's actual length in bytes.
        len: u64,
        /// The length its header implies, in bytes.
        expected: u64,
    },
    /// A snapshot's data does not match the checksum in its header.
    #[error("the data has checksum {actual:#010x}, but the header says {expected:#010x}")]
    DataChecksum {
        /// The CRC-32C recorded in the header.
        expected: u32,
        /// The CRC-32C of the data read.
        actual: u32,
    },
}

/// Why the bytes at some offset are not a valid record frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameProblem {
    /// Zeroed bytes where a record header belongs.
    #[error("zeroed bytes where a record header belongs")]
    ZeroHeader,
    /// The file ends inside a record header.
    #[error("the file ends inside a record header")]
    ShortHeader,
    /// The record header fails its checksum.
    #[error("the record header fails its checksum")]
    HeaderChecksum,
    /// The record header has flag bits this build does not know.
    #[error("the record header has unknown flags")]
    UnknownFlags,
    /// The record header claims more payload bytes than the file holds.
    #[error("the record claims more bytes than the file holds")]
    PayloadPastEnd,
    /// The record payload fails its checksum.
    #[error("the record payload fails its checksum")]
    PayloadChecksum,
}

impl StorageError {
    /// Builds the `map_err` closure for an I/O call on `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| StorageError::Io { op, path, source }
    }

    pub(crate) fn corrupt(file: impl Into<PathBuf>, offset: u64, kind: Corruption) -> Self {
        StorageError::Corrupt {
            file: file.into(),
            offset,
            kind,
        }
    }
}
