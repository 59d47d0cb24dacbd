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
    #[error("could not {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{} is corrupt at byte offset {offset}: {kind}. Data this node acknowledged may be lost, \
         so it must not rejoin from this directory: move the directory aside and restore the node \
         from a snapshot (a restarted empty member receives one from the leader), or remove the \
         member from the cluster and add it back as a new one",
        file.display()
    )]
    Corrupt {
        file: PathBuf,
        offset: u64,
        kind: Corruption,
    },
    #[error(
        "{} uses on-disk format version {found}, but this build reads only version {supported}; \
         run a build of Keel that supports it",
        file.display()
    )]
    UnsupportedVersion {
        file: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error(
        "{} is locked by another store (in this or another process); stop it before opening the directory",
        dir.display()
    )]
    Locked { dir: PathBuf },
    #[error("invalid storage configuration: {field} {problem}")]
    InvalidConfig {
        field: &'static str,
        problem: &'static str,
    },
    #[error("entry {requested} was compacted into a snapshot; the log now starts at {first_index}")]
    Compacted {
        requested: LogIndex,
        first_index: LogIndex,
    },
    #[error("entry {requested} is not in the log, which ends at {last_index}")]
    Unavailable {
        requested: LogIndex,
        last_index: LogIndex,
    },
    #[error(
        "the store stopped accepting writes after it failed to {op} {} ({kind}); the page cache \
         can no longer be trusted, so drop the store and reopen it to recover from what is on disk",
        path.display()
    )]
    Poisoned {
        op: &'static str,
        path: PathBuf,
        kind: io::ErrorKind,
    },
    #[error(
        "snapshot chunk starts at offset {got}, but the next expected offset is {expected}; resend from {expected}"
    )]
    SnapshotOffset { expected: u64, got: u64 },
    #[error(
        "snapshot data has checksum {actual:#010x}, but the sender announced {expected:#010x}; \
         the partial snapshot was discarded, so send it again"
    )]
    SnapshotChecksum { expected: u32, actual: u32 },
    #[error("there is no snapshot at index {index}")]
    SnapshotNotFound { index: LogIndex },
}

/// What exactly is wrong with a corrupt file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    #[error("the file header is damaged")]
    BadFileHeader,
    #[error("the file is named for segment {named}, but its header says segment {found}")]
    SegmentSeqMismatch { named: u64, found: u64 },
    #[error("segment {missing} is missing from the sequence of segment files")]
    MissingSegment { missing: u64 },
    #[error("a damaged record ({problem})")]
    DamagedRecord { problem: FrameProblem },
    #[error(
        "a damaged record ({problem}) precedes a valid record of a later write at offset {later_offset}, \
         so the damage is not a torn final write"
    )]
    DamagedBeforeLaterWrite {
        problem: FrameProblem,
        later_offset: u64,
    },
    #[error("write batch {found} follows write batch {previous}")]
    BatchOutOfOrder { previous: u64, found: u64 },
    #[error("the segment ends inside write batch {batch}, but batches never span segments")]
    BatchCutAtSegmentEnd { batch: u64 },
    #[error("a record passes its checksum but cannot be decoded: {0}")]
    Undecodable(DecodeError),
    #[error("entry {index} follows entry {last}, leaving a gap")]
    IndexGap { last: LogIndex, index: LogIndex },
    #[error("entry {index} is at or below the compaction point {compacted}")]
    EntryBelowCompaction {
        index: LogIndex,
        compacted: LogIndex,
    },
    #[error(
        "the log resumes at entry {first} but the snapshot covers only up to entry {compacted}; \
         segments holding the entries between are missing"
    )]
    MissingPrefix {
        first: LogIndex,
        compacted: LogIndex,
    },
    #[error("the record indexed as entry {expected} holds entry {found}")]
    MisplacedEntry { expected: LogIndex, found: LogIndex },
    #[error("the file is shorter than its header says ({len} of {expected} bytes)")]
    Truncated { len: u64, expected: u64 },
    #[error("the data has checksum {actual:#010x}, but the header says {expected:#010x}")]
    DataChecksum { expected: u32, actual: u32 },
}

/// Why the bytes at some offset are not a valid record frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameProblem {
    #[error("zeroed bytes where a record header belongs")]
    ZeroHeader,
    #[error("the file ends inside a record header")]
    ShortHeader,
    #[error("the record header fails its checksum")]
    HeaderChecksum,
    #[error("the record header has unknown flags")]
    UnknownFlags,
    #[error("the record claims more bytes than the file holds")]
    PayloadPastEnd,
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
