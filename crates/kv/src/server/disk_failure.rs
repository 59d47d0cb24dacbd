//! What a member says when its own disk stops it. A write or fsync of the
//! Raft log that fails, or a write of the key-value store, stops the
//! member (fail-stop: past a failed write its files can no longer be
//! trusted, and the others go on without it). The runtime reports that
//! as a [`StopReason`] whose message is the error of the layer that
//! failed; this turns it into one sentence for the operator: which store,
//! which file, what the OS said, and what to do about it.

use std::io;
use std::path::PathBuf;

use keel::StopReason;

/// Which of a member's stores failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailedStore {
    /// The Raft log and snapshots (`<data-dir>/raft`).
    RaftLog,
    /// The key-value store (`<data-dir>/kv/kv.redb`).
    KeyValue,
}

impl std::fmt::Display for FailedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FailedStore::RaftLog => "the Raft log",
            FailedStore::KeyValue => "the key-value store",
        })
    }
}

/// A member stopped by a failed write to its own disk.
#[derive(Clone, Debug, thiserror::Error)]
#[error(
    "{store} could not {op} {}: {}. {}",
    path.display(),
    self.os_error(),
    self.advice()
)]
pub struct DiskFailure {
    pub store: FailedStore,
    /// What it was doing: `write`, `sync`, `preallocate`, …
    pub op: &'static str,
    /// The file (or directory) it failed on.
    pub path: PathBuf,
    /// How the node stopped, holding the OS's error.
    pub reason: StopReason,
}

impl DiskFailure {
    /// The disk failure behind `reason`, if a failed write stopped the
    /// node: a log store error with a path, or a state machine error
    /// caused by an IO error (the store's file is `kv_path`). `None` for
    /// every other stop (corruption, a shutdown, a thread that ended).
    pub fn of(reason: &StopReason, kv_path: PathBuf) -> Option<DiskFailure> {
        let (store, op, path) = match reason {
            StopReason::Storage(error) => match &**error {
                keel::StorageError::Io { op, path, .. }
                | keel::StorageError::Poisoned { op, path, .. } => {
                    (FailedStore::RaftLog, *op, path.clone())
                }
                _ => return None,
            },
            StopReason::StateMachine(error) => {
                io_error_in(&**error)?;
                (FailedStore::KeyValue, "write", kv_path)
            }
            StopReason::Shutdown | StopReason::ThreadEnded(_) => return None,
        };
        Some(DiskFailure {
            store,
            op,
            path,
            reason: reason.clone(),
        })
    }

    /// The OS's error as it said it (`No space left on device (os error
    /// 28)`), or the whole reason when no IO error is kept.
    fn os_error(&self) -> String {
        match self.io_error() {
            Some(error) => error.to_string(),
            None => self.reason.to_string(),
        }
    }

    fn io_error(&self) -> Option<&io::Error> {
        match &self.reason {
            StopReason::Storage(error) => io_error_in(&**error),
            StopReason::StateMachine(error) => io_error_in(&**error),
            StopReason::Shutdown | StopReason::ThreadEnded(_) => None,
        }
    }

    /// Whether the filesystem was full (rather than failing).
    pub fn disk_full(&self) -> bool {
        let kind = match (&self.reason, self.io_error()) {
            (_, Some(error)) => error.kind(),
            (StopReason::Storage(error), None) => match &**error {
                keel::StorageError::Poisoned { kind, .. } => *kind,
                _ => return false,
            },
            _ => return false,
        };
        matches!(
            kind,
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        )
    }

    /// What the operator does next. Either way nothing this member
    /// acknowledged is lost: it acknowledged only entries its log had made
    /// durable, and it applies the log again after a restart.
    fn advice(&self) -> &'static str {
        if self.disk_full() {
            "The filesystem holding this member's data directory is full: free space on it \
             (or grow it), then restart this member; it catches up from the others, and \
             nothing it acknowledged is lost. With a large enough --disk-reserve-bytes, a \
             NOSPACE alarm stops writes before the disk fills"
        } else {
            "The device failed: check it (the kernel log says more). Once it is sound, restart \
             this member and it catches up from the others; if its data directory was damaged, \
             remove the member (`etcdctl member remove`) and add it back with an empty one"
        }
    }
}

/// The first IO error in `error`'s chain of sources, itself included.
/// redb's errors hold theirs without naming it as their source, so they
/// are looked into.
fn io_error_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(io) = error.downcast_ref::<io::Error>() {
            return Some(io);
        }
        if let Some(redb::Error::Io(io)) = error.downcast_ref::<redb::Error>() {
            return Some(io);
        }
        next = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::error::KvError;

    fn enospc() -> io::Error {
        io::Error::from_raw_os_error(28)
    }

    #[test]
    fn a_full_log_names_the_file_the_os_error_and_the_remedy() {
        let reason = StopReason::Storage(Arc::new(keel::StorageError::Io {
            op: "preallocate",
            path: "/d/raft/log/2.wal".into(),
            source: enospc(),
        }));
        let failure = DiskFailure::of(&reason, "/d/kv/kv.redb".into()).unwrap();
        assert!(failure.disk_full());
        let text = failure.to_string();
        assert!(
            text.starts_with(
                "the Raft log could not preallocate /d/raft/log/2.wal: No space left on device (os error 28). \
                 The filesystem holding this member's data directory is full"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_failed_store_write_names_the_store_file() {
        let error = KvError::Storage(redb::Error::Io(io::Error::from_raw_os_error(5)));
        let reason = StopReason::StateMachine(Arc::new(error));
        let failure = DiskFailure::of(&reason, "/d/kv/kv.redb".into()).unwrap();
        assert!(!failure.disk_full());
        let text = failure.to_string();
        assert!(
            text.starts_with(
                "the key-value store could not write /d/kv/kv.redb: Input/output error (os error 5). \
                 The device failed"
            ),
            "{text}"
        );
    }

    #[test]
    fn other_stops_are_not_disk_failures() {
        let corrupt = KvError::Corrupt {
            what: "kv row",
            kind: crate::error::Corruption::NoEndFrame,
        };
        let reason = StopReason::StateMachine(Arc::new(corrupt));
        assert!(DiskFailure::of(&reason, "/d".into()).is_none());
        assert!(DiskFailure::of(&StopReason::Shutdown, "/d".into()).is_none());
    }
}
