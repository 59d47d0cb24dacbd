//! Keel's product: a replicated key-value store that speaks etcd's v3 gRPC
//! API, so that existing etcd clients work unchanged.
//!
//! - [`mvcc`]: etcd's data model (revisions, history, leases) persisted in
//!   redb, with the applied Raft index in the same transaction as the data.
//! - [`KvStateMachine`]: applies committed commands and feeds watchers.
//! - [`Consensus`]: what the services need from Raft; [`replica`] runs them
//!   on the `keel` Raft runtime, and [`LocalConsensus`] is a single-node
//!   stand-in for tests.
//! - [`auth`]: users, roles, permissions and simple tokens (etcd's Auth).
//! - [`service`]: the etcd gRPC services over a `Consensus`.
//! - [`backup`]: snapshot files (`snapshot save|status|restore`).
//! - [`server`]: starting a member ([`server::MemberConfig`],
//!   [`server::run`]), used by the `keel-kv` binary and `keel serve`.

pub mod auth;
pub mod backup;
pub mod command;
pub mod consensus;
pub mod error;
pub mod latency;
pub mod leader;
pub mod lessor;
pub mod local;
pub mod mvcc;
pub mod observe;
pub mod proto;
pub mod rejection;
pub mod replica;
pub mod server;
pub mod service;
pub mod state_machine;
pub mod watch;

pub use consensus::{Consensus, HeaderIds, RaftInfo};
pub use error::KvError;
pub use local::LocalConsensus;
pub use state_machine::KvStateMachine;
