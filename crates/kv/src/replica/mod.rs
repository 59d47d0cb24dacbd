//! Keel KV on the `keel` Raft runtime: the state machine adapter, the
//! [`crate::Consensus`] implementation over a [`keel::Node`], and the
//! member-to-member call that carries a follower's writes to the leader.
//!
//! - [`RaftMachine`] (`machine.rs`) is what the runtime's apply thread
//!   drives: one redb transaction per batch of committed entries, the
//!   durable applied index as `applied_index()`, snapshots streamed from a
//!   redb read transaction through a bounded pipe (`pipe.rs`).
//! - [`RaftConsensus`] (`consensus.rs`) serves the etcd services: proposals
//!   (forwarded from followers to the leader's peer listener in batches,
//!   `batcher.rs`, over the channels of `peers.rs`, and checked there one
//!   by one like a client's request by [`ForwardService`], `forward.rs`),
//!   ReadIndex read barriers (which work on followers), the member's view
//!   for response headers, and membership changes.
//! - `errors.rs` maps the runtime's errors to etcd's and decides which are
//!   retried ([`to_kv`], [`is_retryable`]).

mod batcher;
mod consensus;
mod errors;
mod forward;
mod machine;
mod peers;
mod pipe;

pub use batcher::{ForwardCounters, ForwardStats};
pub use consensus::RaftConsensus;
/// The retry decisions of [`RaftConsensus`] and [`ForwardService`], public
/// so that the simulator, which drives `keel` nodes without the gRPC
/// services, makes the same decisions a member makes.
pub use errors::{is_retryable, to_kv};
pub use forward::{
    FORWARD_BATCH_BYTES_MAX, FORWARD_BATCH_COMMANDS_MAX, ForwardRejected, ForwardService,
    check_forwarded,
};
pub use machine::RaftMachine;
pub(crate) use peers::PeerChannels;
