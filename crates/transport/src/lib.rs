//! Keel's transport between Raft peers, over gRPC (tonic + prost).
//!
//! - Replication traffic (AppendEntries, heartbeats, responses, read-index
//!   messages) travels on one client-streaming `Send` call per peer, several
//!   messages per stream write.
//! - Elections (votes, pre-votes, TimeoutNow) each take a unary `Vote` call,
//!   so they never queue behind replication.
//! - Snapshots stream in chunks on `InstallSnapshot`, resuming at the offset
//!   the receiver reports through `SnapshotOffset`.
//!
//! - An application may serve its own member-to-member services on the
//!   same listener ([`PeerServices`], [`Transport::serve_with`]) and call
//!   them on a peer through [`Transport::connect`].
//!
//! Every call carries a header with the cluster id and protocol version
//! (Raft calls in their body, application calls in gRPC metadata,
//! `identity.rs`); traffic from another cluster or version is refused by
//! one check, with a log line and a metric, and malformed messages are
//! dropped the same way. Nothing a peer sends can panic the receiver.
//!
//! Memory is bounded per peer: a full queue, or a peer in reconnect
//! backoff, drops messages at once ([`SendError`]) and Raft resends.

#![deny(missing_docs)]

mod config;
mod convert;
mod identity;
mod metrics;
mod peer;
mod server;
mod shared;
pub mod tls;
mod transport;

/// The generated protobuf types and gRPC stubs (`keel.raft.v1`).
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("keel.raft.v1");
}

pub use config::{PROTOCOL_VERSION, TransportConfig, TransportTuning, TuningError};
pub use convert::{
    DecodeError, decode_membership, decode_message, decode_snapshot_meta, encode_membership,
    encode_message, encode_snapshot_meta,
};
pub use identity::{IdentityStamp, PeerCaller, PeerChannel, PeerServices};
pub use metrics::TransportMetrics;
pub use server::{Handler, Overloaded, SnapshotRejected};
pub use transport::{ConnectError, SendError, ServeError, SnapshotSendError, Transport};
