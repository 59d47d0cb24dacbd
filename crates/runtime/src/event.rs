//! What the node's threads and tasks report to the driver: the storage
//! thread's durable batches, the apply thread's progress and failures,
//! snapshot creation and transfers. Its own module, so that the threads
//! depend on it and not on the driver that consumes it.

use keel_raft::{LogIndex, NodeId, SnapshotMeta};

use crate::error::StopReason;
use crate::write_batch::DurableWrite;

/// What the storage thread, the apply thread and snapshot transfers report.
pub(crate) enum Event {
    /// Write batch `seq` (and every one before it) is durable; the storage
    /// thread sent its messages.
    Persisted {
        seq: u64,
        durable: Option<DurableWrite>,
    },
    /// The state machine applied every entry through this index.
    Applied(LogIndex),
    /// A snapshot of the state machine is published.
    SnapshotCreated(SnapshotMeta),
    /// A snapshot transfer to `to` ended.
    SnapshotSent { to: NodeId, ok: bool },
    /// A thread hit an error the node cannot continue from.
    Fatal(StopReason),
}
