//! Snapshots of the state machine: the [`SnapshotStore`] contract, Keel's
//! file store and an in-memory one.
//!
//! A snapshot is written chunk by chunk (locally, or installed from a
//! leader), checked against its checksum and made durable (it is then
//! *staged*), and only then published. A leader's snapshot stays staged
//! until the core accepts it. So a published snapshot is always whole and
//! verified. [`FileSnapshotStore`] keeps snapshots as files in a locked
//! directory; [`MemSnapshotStore`] keeps them in memory, for tests and
//! benchmarks.

mod file;
mod format;
mod mem;
mod reader;
mod store;
mod writer;

pub use file::FileSnapshotStore;
pub use format::SnapshotInfo;
pub use mem::MemSnapshotStore;
pub use store::{SnapshotReader, SnapshotStore, SnapshotWriter, StagedSnapshot};
