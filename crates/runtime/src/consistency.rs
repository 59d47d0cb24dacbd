//! [`ReadConsistency`]: what a caller asks of a read, shared by the
//! node's handle (`node.rs`) and its loop (`node_loop.rs`), which must not
//! import each other.

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadConsistency {
    /// Sees every write acknowledged before the read began: the leader
    /// confirms it still leads with a heartbeat round (ReadIndex, §6.4),
    /// then the read waits until this node has applied the leader's commit
    /// index. Works on followers too, which ask the leader for the index.
    /// Costs one round trip to a quorum, shared by every read asked since
    /// the previous round; assumes nothing about clocks.
    Linearizable,
    /// Like `Linearizable`, but the leader skips the heartbeat round while
    /// its lease holds (§6.4.1): for an election timeout less
    /// `lease_drift_ticks` (`keel_raft::Config`) from the moment it *sent*
    /// the last heartbeat round a quorum answered. Voters that heard from
    /// a leader refuse to elect another for an election timeout, so the
    /// lease is safe as long as no node's clock runs slower than the
    /// leader's by more than that allowance over one election timeout.
    /// Each node measures ticks on its own monotonic clock, so this is an
    /// assumption about clock *rates*, not about clocks agreeing; a leader
    /// whose driver stalled catches its ticks up before it judges the lease,
    /// but a pause between that judgement and the read being served is
    /// not covered.
    ///
    /// Where the promise does not hold the lease is not trusted and the
    /// read is confirmed like a `Linearizable` one: without check-quorum,
    /// during a leadership transfer, and with
    /// `keel_raft::Config::fast_failover`, under which followers campaign
    /// as soon as the leader's connection closes instead of waiting out an
    /// election timeout.
    Lease,
    /// This node's state as it is, possibly behind the cluster.
    Stale,
}
