//! Keel's durable storage: the Raft log, the hard state and the snapshots.
//!
//! Raft is only as safe as its disk, so the log format is our own: segment
//! files of checksummed records on std files, `crc32c` and `fdatasync` (see
//! `ARCHITECTURE.md` for the format and the crash-safety argument).
//!
//! * [`LogStore`] is the contract the runtime and the simulator write to;
//!   [`FileLogStore`] keeps it on disk and [`MemLogStore`] in memory, and
//!   [`conformance`] checks any implementation against it.
//! * [`SnapshotStore`] is the contract for snapshots, written and installed
//!   in chunks, staged, and published atomically; [`FileSnapshotStore`]
//!   keeps them in files and [`MemSnapshotStore`] in memory, and
//!   [`conformance::snapshots`] checks any implementation against it.
//!
//! Driving a store: write, then sync once per batch, and release whatever
//! waited for persistence only with the [`Durable`] proof that `sync` returns.
//!
//! ```
//! use bytes::Bytes;
//! use keel_raft::{Entry, HardState, LogIndex, NodeId, Payload, Term};
//! use keel_storage::{FileLogStore, LogConfig, LogStore};
//!
//! let dir = tempfile::tempdir()?;
//! let mut log = FileLogStore::open(dir.path(), LogConfig::default())?;
//! log.set_hard_state(HardState { term: Term(2), vote: Some(NodeId(1)), commit: LogIndex(0) });
//! log.append(&[Entry { term: Term(2), index: LogIndex(1), payload: Payload::Command(Bytes::from("x")) }]);
//! let durable = log.sync()?; // one fdatasync for the vote and the entry
//! assert_eq!(durable.hard_state().vote, Some(NodeId(1))); // now the vote may be answered
//! assert_eq!(durable.last_index(), LogIndex(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

mod batch;
mod cache;
mod codec;
mod config;
pub mod conformance;
mod error;
mod file_store;
mod frame;
mod fsutil;
mod index;
mod lock;
mod mem;
mod recovery;
mod segment;
mod snapshot;
mod store;

pub use codec::DecodeError;
pub use config::{InvalidLogConfig, LogConfig};
pub use error::{Corruption, FrameProblem, StorageError};
pub use file_store::{FileLogStore, ZERO_AHEAD_BYTES};
pub use mem::{CrashKeep, MemLogStore};
pub use recovery::{RecoveryReport, TornWrite};
pub use snapshot::{
    FileSnapshotStore, MemSnapshotStore, SnapshotInfo, SnapshotReader, SnapshotStore,
    SnapshotWriter, StagedSnapshot,
};
pub use store::{Durable, LogStore};

// The runtime moves stores onto a storage thread and hands out readers.
const _: () = {
    const fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<FileLogStore>();
    send_and_sync::<MemLogStore>();
    send_and_sync::<FileSnapshotStore>();
    send_and_sync::<MemSnapshotStore>();
};
