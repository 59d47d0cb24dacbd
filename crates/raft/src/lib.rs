//! Keel's Raft core (placeholder docs, replaced below).

mod config;
mod membership;
mod message;
mod quorum;
mod rng;
mod types;

pub use config::{Config, ConfigError};
pub use membership::{Membership, MembershipChange, MembershipError};
pub use message::{AppendResult, Message, MessageBody, ReadId};
pub use quorum::VoteResult;
pub use types::{Entry, HardState, LogIndex, NodeId, Payload, Role, SnapshotMeta, Term};
