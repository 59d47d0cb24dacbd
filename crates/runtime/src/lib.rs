//! Keel: an embeddable Raft node.
//!
//! Implement [`StateMachine`] for your state, start a [`Node`] on each
//! machine, and call [`Node::propose`] on the leader. Keel replicates each
//! command through the Raft log, makes it durable on a majority, applies it
//! to every node's state machine in the same order, and hands the
//! proposer your state machine's response, typed as you declared it.
//!
//! # Getting started
//!
//! A replicated counter on a single-node cluster (add peers to the map
//! for more):
//!
//! ```
//! use std::collections::BTreeMap;
//! use std::io::Read;
//!
//! use keel::{Command, Config, LogIndex, Node, NodeId, ReadConsistency, StateMachine, StateMachineError};
//!
//! #[derive(Default)]
//! struct Counter {
//!     value: u64,
//!     applied: LogIndex,
//! }
//!
//! impl StateMachine for Counter {
//!     /// The new value.
//!     type Response = u64;
//!
//!     fn apply(&mut self, commands: &[Command], through: LogIndex) -> Result<Vec<u64>, StateMachineError> {
//!         self.applied = through;
//!         Ok(commands
//!             .iter()
//!             .map(|c| {
//!                 self.value += u64::from(c.data[0]);
//!                 self.value
//!             })
//!             .collect())
//!     }
//!     fn applied_index(&self) -> LogIndex {
//!         self.applied
//!     }
//!     fn snapshot(&mut self) -> Result<Box<dyn Read + Send>, StateMachineError> {
//!         Ok(Box::new(std::io::Cursor::new(self.value.to_le_bytes())))
//!     }
//!     fn restore(&mut self, index: LogIndex, data: &mut dyn Read) -> Result<(), StateMachineError> {
//!         let mut bytes = [0; 8];
//!         data.read_exact(&mut bytes)?;
//!         (self.value, self.applied) = (u64::from_le_bytes(bytes), index);
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let config = Config::new(NodeId(1), 42, "127.0.0.1:0".parse()?);
//! let node = Node::start(config, Counter::default(), dir.path(), BTreeMap::new()).await?;
//!
//! // Wait for the election, then propose.
//! node.wait_for(std::time::Duration::from_secs(5), |m| m.leader == Some(NodeId(1))).await?;
//! let value = node.propose(vec![5u8]).await?;
//! assert_eq!(value, 5);
//!
//! let value = node.read(ReadConsistency::Linearizable, |c: &Counter| c.value).await?;
//! assert_eq!(value, 5);
//!
//! // State the application keeps outside the node (a database the state
//! // machine writes to) is read after a barrier instead:
//! let index = node.ensure_linearizable().await?;
//! assert!(node.status().applied_index >= index);
//! node.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Reads and their guarantees
//!
//! - [`Node::read`] with [`ReadConsistency::Linearizable`] runs a closure
//!   on the state machine once it reflects every write acknowledged before
//!   the call, on any member: the leader confirms with one heartbeat
//!   round to a quorum that it still leads (ReadIndex), followers ask it
//!   for that index, and the read waits until the local state machine has
//!   applied it. No assumption about clocks.
//! - [`Node::read_index`] returns that confirmed index without waiting
//!   for the local state machine, and [`Node::ensure_linearizable`] waits
//!   for it too: a barrier after which state the application reads by
//!   other means (a database its state machine writes) is linearizable.
//!   A node cut off from a quorum fails or times out; it never vouches
//!   for stale state.
//! - [`ReadConsistency::Lease`] skips the heartbeat round while the
//!   leader's lease holds, which assumes bounded clock *rate* drift
//!   between members (see its documentation); with fast failover on, a
//!   lease read is confirmed like a linearizable one.
//! - [`ReadConsistency::Stale`] reads this node's state as it is.
//!
//! # A cluster's lifecycle
//!
//! - **Founding**: start each founding member with the same peers and it
//!   bootstraps on its first start; or start them uninitialized
//!   ([`Config::join`]) and call [`Node::initialize`] on one of them.
//! - **Seeding from a snapshot**: [`Storage::install_snapshot`] writes a
//!   founding member's empty data directory so that the new cluster
//!   starts from a state taken elsewhere (a backup).
//! - **Snapshots and the log**: [`Node::trigger_snapshot`] snapshots now;
//!   [`Node::purge_log`] discards the log a stored snapshot covers.
//! - **Growing and shrinking**: [`Node::add_learner`],
//!   [`Node::change_membership`], [`Node::transfer_leader`]. A member is
//!   an id plus an address: the configuration records both and changes
//!   them through the log ([`Membership::addresses`],
//!   [`MembershipChange::SetAddress`] for a member that moved), and the
//!   transport dials the addresses of the configuration in force.
//! - **A lost quorum**: [`Storage::recover`] forces a configuration upon
//!   a stopped survivor, an unsafe last resort whose losses it documents.
//!
//! `docs/guide.md` in the repository walks an embedder through all of it:
//! state machine, storage, transport, lifecycle, reads, and testing the
//! state machine under `keel_sim::service`'s fault schedules.
//!
//! # What runs where
//!
//! Each node runs one tokio task (the *driver*) that owns the Raft core,
//! one thread that writes the log (group commit: one fsync per batch of
//! writes), one thread that applies committed entries to the state
//! machine, and a gRPC server for its peers. `crates/runtime/ARCHITECTURE.md`
//! walks through the write path step by step.
//!
//! # Storage
//!
//! [`Storage::open`] keeps the log and snapshots in files under a data
//! directory. The log may be any [`LogStore`] and the snapshots any
//! [`SnapshotStore`] ([`Storage::with_log_store`], [`Storage::with_stores`]);
//! [`conformance::check`] and [`conformance::snapshots::check`] hold a
//! store of yours to the contract the node relies on, in one line each.
//!
//! # Transports
//!
//! Peers talk gRPC unless a node is started with
//! [`Node::start_with_transport`] on another [`Transport`]: for tests,
//! [`InProcessNetwork`] connects nodes of one process through channels,
//! with links a test cuts and heals.
//!
//! # Errors
//!
//! [`Error`] says what to do next: `NotLeader` (retry on the leader, whose
//! address [`Node::peer_addr`] knows), `Overloaded` (back off),
//! `ProposalDropped` (did not commit; safe to retry), `OutcomeUnknown`
//! (leadership was lost; may or may not have committed), `Stopped` (the
//! node is gone).

#![deny(missing_docs)]

mod applied;
mod apply;
mod apply_queue;
mod clock;
mod config;
mod consistency;
mod driver;
mod error;
mod event;
mod grpc;
mod histogram;
mod in_process;
mod inbound;
mod leader_changes;
mod metrics;
mod node;
pub mod node_loop;
mod peers;
mod proposals;
mod restore;
mod snapshot;
mod state_machine;
mod storage;
mod transport;
mod write_batch;

#[cfg(feature = "fault-injection")]
pub use config::RuntimeBugs;
pub use config::{
    Config, ConfigError, ELECTION_TIMEOUT_DEFAULT, HEARTBEAT_INTERVAL_DEFAULT,
    REQUEST_TIMEOUT_DEFAULT, SNAPSHOT_ENTRIES_DEFAULT, TICK_INTERVAL_DEFAULT,
};
pub use consistency::ReadConsistency;
pub use error::{
    Error, InitializeError, PurgeError, RecoverError, SnapshotError, SnapshotWriteError,
    StartError, StateMachineError, StopReason,
};
pub use histogram::{LATENCY_BUCKET_BOUNDS_MICROS, LatencyHistogram};
pub use in_process::{InProcessNetwork, InProcessTransport};
pub use inbound::PeerInbox;
/// Why a node refused to found a cluster ([`InitializeError::Refused`]).
pub use keel_raft::InitializeError as InitializeRefused;
pub use keel_raft::{
    ADDRESS_BYTES_MAX, Entry, HardState, LogIndex, Membership, MembershipChange, MembershipError,
    Message, MessageBody, NodeId, Payload, Role, SnapshotMeta, Term,
};
pub use keel_storage::{
    Durable, FileLogStore, FileSnapshotStore, LogConfig, LogStore, MemLogStore, MemSnapshotStore,
    SnapshotInfo, SnapshotReader, SnapshotStore, SnapshotWriter, StagedSnapshot, StorageError,
    conformance,
};
pub use keel_transport::{
    ConnectError, Handler, IdentityStamp, Overloaded, PeerCaller, PeerChannel, PeerServices,
    SendError, SnapshotRejected, SnapshotSendError, TransportMetrics, TransportTuning, tls,
};
pub use leader_changes::{LeaderChange, LeaderChanges};
pub use metrics::{ElectionCounters, Metrics, PeerMetrics};
pub use node::Node;
pub use restore::{InitialState, Storage};
pub use snapshot::SnapshotSource;
pub use state_machine::{Command, StateMachine};
pub use transport::{SnapshotTransfer, Transport};
