//! [`ReadConsistency`]: what a caller asks of a read, shared by the
//! node's handle (`node.rs`) and its loop (`node_loop.rs`), which must not
//! import each other.

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadConsistency {
    /// Sees every write acknowledged before the read began: the leader
    /// confirms it still leads with a heartbeat round (ReadIndex, §6.4).
    /// Works on followers too, which ask the leader for the index.
    Linearizable,
    /// Like `Linearizable`, but the leader skips the heartbeat round while
    /// its lease holds (§6.4.1). Relies on bounded clock drift.
    Lease,
    /// This node's state as it is, possibly behind the cluster.
    Stale,
}
