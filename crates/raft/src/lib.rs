//! Keel's Raft core: the consensus protocol as a deterministic state machine.
//!
//! A [`Raft`] node does no IO, reads no clock and owns its randomness (a
//! seed in [`Config`]). Time enters as [`Raft::tick`], messages as
//! [`Raft::step`], client commands as [`Raft::propose`]; everything the
//! node wants done leaves as a [`Ready`], whose fields say what must be
//! durable before which message may be sent.
//!
//! # Driving a node
//!
//! The caller's loop, shown for three nodes that share one process and a
//! "network" that is a vector of messages:
//!
//! ```
//! use keel_raft::{
//!     Config, DurabilityProof, LogIndex, Membership, Message, NodeId, Payload, Raft,
//!     RestoredState, Term,
//! };
//!
//! // What a store's fsync returns: proof of the last entry it made durable.
//! // Here memory is the "disk", so writing an entry is all it takes.
//! struct Synced(LogIndex, Term);
//! impl DurabilityProof for Synced {
//!     fn durable_through(&self) -> (LogIndex, Term) {
//!         (self.0, self.1)
//!     }
//! }
//!
//! let ids = [NodeId(1), NodeId(2), NodeId(3)];
//! let membership = Membership::new(ids, []).unwrap();
//! let mut nodes: Vec<Raft> = ids
//!     .iter()
//!     .map(|&id| Raft::new(Config::new(id), RestoredState::bootstrap(membership.clone())).unwrap())
//!     .collect();
//!
//! // One round of the caller's duties for every node: persist, send, apply.
//! fn drive(nodes: &mut [Raft], applied: &mut Vec<Vec<u8>>) -> bool {
//!     let mut network: Vec<Message> = Vec::new();
//!     for node in nodes.iter_mut() {
//!         while node.has_ready() {
//!             let ready = node.ready();
//!             network.extend(ready.messages.iter().cloned()); // may leave at once
//!             // ... a real caller writes ready.entries and ready.hard_state
//!             // to disk and fsyncs here, which hands it the proof ...
//!             if let Some((index, term)) = ready.persisted_up_to() {
//!                 node.persisted((index, term), &Synced(index, term));
//!             }
//!             network.extend(ready.persisted_messages.iter().cloned()); // only now
//!             for entry in &ready.committed_entries {
//!                 if let Payload::Command(data) = &entry.payload {
//!                     if node.id() == NodeId(1) { applied.push(data.to_vec()); }
//!                 }
//!             }
//!             if let Some(index) = ready.applied_up_to() {
//!                 node.applied(index);
//!             }
//!         }
//!     }
//!     let delivered = !network.is_empty();
//!     for m in network {
//!         let to = m.to.0 as usize - 1;
//!         nodes[to].step(m).unwrap();
//!     }
//!     delivered
//! }
//!
//! let mut applied = Vec::new();
//! nodes[0].campaign();
//! while drive(&mut nodes, &mut applied) {}
//! assert!(nodes[0].status().role == keel_raft::Role::Leader);
//!
//! nodes[0].propose(b"x=1".to_vec().into()).unwrap();
//! while drive(&mut nodes, &mut applied) {}
//! assert_eq!(applied, vec![b"x=1".to_vec()]);
//! for node in &nodes {
//!     node.check_invariants().unwrap();
//! }
//! ```
//!
//! Pre-vote is on by default, so `campaign` first asks for pre-votes; the
//! loop above delivers them and the real election that follows.

#![deny(missing_docs)]

mod config;
mod durable;
mod entry;
mod invariants;
mod log;
mod membership;
mod message;
mod progress;
mod quorum;
mod raft;
mod ready;
mod rng;
mod types;

#[cfg(feature = "fault-injection")]
pub use config::Bugs;
pub use config::{Config, ConfigError, ELECTION_TICKS_DEFAULT, HEARTBEAT_TICKS_DEFAULT};
pub use durable::DurabilityProof;
pub use entry::{Entry, Payload, SnapshotMeta};
pub use invariants::{BrokenInvariant, InvariantViolation};
pub use membership::{ADDRESS_BYTES_MAX, Membership, MembershipChange, MembershipError};
pub use message::{AppendResult, Message, MessageBody, ReadId};
pub use progress::{Inflight, Progress, ProgressState};
pub use quorum::VoteResult;
pub use raft::{
    InitializeError, Proposal, ProposeError, Raft, ReadMode, RestoreError, RestoredState, Status,
    StepError,
};
pub use ready::{ReadError, ReadOutcome, Ready, SoftState};
pub use types::{HardState, LogIndex, NodeId, Role, Term};
