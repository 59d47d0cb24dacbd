//! [`Transport`]: the few things a node needs from the network between
//! members, so that it runs over gRPC (the default), in one process
//! ([`crate::InProcessNetwork`]) or over an embedder's own network.
//!
//! The trait covers the outbound side and peers' addresses only. The
//! inbound side needs no trait: every transport hands what it receives to
//! the node's [`crate::PeerInbox`], which [`crate::Node::start_with_transport`]
//! gives to the function that builds the transport.

use std::future::Future;
use std::pin::Pin;

use keel_raft::{Message, NodeId};
use keel_transport::{SendError, SnapshotSendError, TransportMetrics};

use crate::snapshot::SnapshotSource;

/// A snapshot transfer under way. Boxed once per snapshot, never per
/// message, so that [`Transport`] stays object-safe.
pub type SnapshotTransfer = Pin<Box<dyn Future<Output = Result<(), SnapshotSendError>> + Send>>;

/// How a node reaches its peers.
///
/// The node's driver calls [`Transport::send`] for every message the Raft
/// core emits, on the driver's own task, so it must not wait: queue the
/// message or refuse it. Raft tolerates lost messages (it resends what
/// matters), but a transport should keep each peer's messages in the order
/// they were sent: a follower rejects AppendEntries that arrive out of
/// order, and its leader falls back to probing, which costs throughput.
pub trait Transport: Send + Sync + 'static {
    /// Hands `message` to its recipient (`message.to`) without waiting.
    ///
    /// # Errors
    /// A message that was not handed over. For a refused AppendEntries
    /// the leader stops streaming entries to that follower and probes it
    /// one message at a time until it answers, rather than fill a dead
    /// peer's queue. A message lost later, silently, costs only a resend.
    fn send(&self, message: Message) -> Result<(), SendError>;

    /// Sends the snapshot that `message` (an InstallSnapshot) describes,
    /// with its data read from `snapshot`. The transfer completes once the
    /// receiver has stored and verified all of it and handed `message` to
    /// its node; the node sends one snapshot to a peer at a time and
    /// retries a failed one.
    fn send_snapshot(&self, message: Message, snapshot: SnapshotSource) -> SnapshotTransfer;

    /// Records the address of peer `id`, replacing any other, in whatever
    /// form this transport understands. The node calls it with every
    /// address the configuration in force records, whenever one is added
    /// or changed (the configuration carries its members' addresses
    /// through the log: [`keel_raft::Membership::addresses`]), and at
    /// start with the addresses given for members the configuration
    /// records none for. A transport that routes by id may ignore it.
    fn set_peer(&self, id: NodeId, addr: String);

    /// The transport's counters, published in [`crate::Metrics::transport`].
    fn metrics(&self) -> TransportMetrics;

    /// The node is stopping: forget every peer, stop sending, and stop
    /// delivering to the node's inbox. Peers should see the node's
    /// streams end, as they would when its process exits.
    fn close(&self);
}
