//! The receiving side: checks each call's header, decodes and validates
//! messages, and hands them to the node through a [`Handler`].

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use keel_raft::{Message, MessageBody, NodeId};
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};
use tracing::warn;

use crate::convert::decode_message;
use crate::identity::check_header;
use crate::metrics::{add, bump};
use crate::pb;
use crate::shared::Shared;

/// The node's inbox was full; the messages were dropped and Raft will
/// resend what matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the node's inbox is full")]
pub struct Overloaded;

/// Why a snapshot chunk or offset query was refused.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotRejected {
    /// The chunk does not start where the bytes held so far end.
    #[error("chunk starts at byte {got} but {held} bytes are held; query the offset and resume")]
    OffsetMismatch {
        /// The bytes of the snapshot the receiver holds (the offset it expects).
        held: u64,
        /// The offset the chunk carried.
        got: u64,
    },
    /// The receiving node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The message said to describe the snapshot is another kind.
    #[error("a snapshot must come with an InstallSnapshot message")]
    NotInstallSnapshot,
    /// The receiver failed to store the snapshot.
    #[error("storing the snapshot failed: {0}")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// What the node does with what the transport receives.
///
/// Messages arrive already validated: from a node of this cluster,
/// addressed to this node, and decodable into the core's types.
pub trait Handler: Send + Sync + 'static {
    /// Hands over messages without blocking; a full inbox refuses them.
    fn deliver(&self, messages: Vec<Message>) -> Result<(), Overloaded>;

    /// The stream of messages from `peer` ended: the peer closed it, or the
    /// connection broke (a peer killed outright closes its sockets, so this
    /// comes long before any timeout). Only a hint: the peer may reconnect.
    fn disconnected(&self, peer: NodeId);

    /// How many bytes of the snapshot that `message` (an InstallSnapshot)
    /// describes are already stored here, so the sender resumes after them.
    fn snapshot_offset(
        &self,
        message: &Message,
    ) -> impl Future<Output = Result<u64, SnapshotRejected>> + Send;

    /// Stores `data` at `offset` of the snapshot `message` describes. The
    /// last chunk carries `Some(checksum)` of the whole data: the handler
    /// verifies it, publishes the snapshot and steps `message` into the node.
    fn snapshot_chunk(
        &self,
        message: &Message,
        offset: u64,
        data: Bytes,
        last_checksum: Option<u32>,
    ) -> impl Future<Output = Result<(), SnapshotRejected>> + Send;
}

/// The gRPC service; one per node.
pub(crate) struct Service<H> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) handler: H,
    /// Flips to `true` at shutdown, ending the long-lived inbound streams so
    /// that a graceful shutdown does not wait for peers to hang up.
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl<H: Handler> Service<H> {
    /// Decodes one message and checks it is from `from` and for this node.
    fn check_message(&self, from: NodeId, m: pb::RaftMessage) -> Result<Message, Status> {
        let counters = &self.shared.counters;
        let m = decode_message(m).map_err(|e| {
            bump(&counters.rejected_malformed);
            warn!(%from, error = %e, "refused a malformed message");
            Status::invalid_argument(e.to_string())
        })?;
        if m.from != from {
            bump(&counters.rejected_malformed);
            warn!(%from, claimed = %m.from, "refused a message whose sender differs from its call's");
            return Err(Status::invalid_argument(
                "message.from differs from header.from",
            ));
        }
        let me = self.shared.config.node_id;
        if m.to != me {
            bump(&counters.rejected_wrong_node);
            warn!(%from, to = %m.to, %me, "refused a message addressed to another node");
            return Err(Status::invalid_argument(format!(
                "message for node {} delivered to node {me}",
                m.to
            )));
        }
        Ok(m)
    }

    /// Validates a batch and delivers the good messages; a bad one is
    /// dropped (and counted) without spoiling the rest. Returns the sender.
    fn deliver_batch(&self, batch: pb::MessageBatch) -> Result<NodeId, Status> {
        let from = check_header(&self.shared, batch.header.as_ref())?;
        let messages: Vec<Message> = batch
            .messages
            .into_iter()
            .filter_map(|m| self.check_message(from, m).ok())
            .collect();
        if messages.is_empty() {
            return Ok(from);
        }
        let n = messages.len() as u64;
        let counters = &self.shared.counters;
        match self.handler.deliver(messages) {
            Ok(()) => add(&counters.received_msgs, n),
            Err(Overloaded) => add(&counters.dropped_inbox_full, n),
        }
        Ok(from)
    }

    fn snapshot_message(
        &self,
        from: NodeId,
        m: Option<pb::RaftMessage>,
    ) -> Result<Message, Status> {
        let m = m.ok_or_else(|| {
            bump(&self.shared.counters.rejected_malformed);
            Status::invalid_argument("snapshot call without its InstallSnapshot message")
        })?;
        let m = self.check_message(from, m)?;
        if !matches!(m.body, MessageBody::InstallSnapshot { .. }) {
            bump(&self.shared.counters.rejected_malformed);
            warn!(%from, kind = m.body.kind(), "refused a snapshot call carrying another message kind");
            return Err(Status::invalid_argument(
                "snapshot call must carry InstallSnapshot",
            ));
        }
        Ok(m)
    }
}

fn snapshot_status(e: SnapshotRejected) -> Status {
    match e {
        SnapshotRejected::OffsetMismatch { .. } => Status::out_of_range(e.to_string()),
        SnapshotRejected::ShuttingDown => Status::unavailable(e.to_string()),
        SnapshotRejected::NotInstallSnapshot => Status::invalid_argument(e.to_string()),
        SnapshotRejected::Storage(_) => Status::internal(e.to_string()),
    }
}

#[tonic::async_trait]
impl<H: Handler> pb::raft_server::Raft for Service<H> {
    async fn send(
        &self,
        request: Request<Streaming<pb::MessageBatch>>,
    ) -> Result<Response<pb::Ack>, Status> {
        let mut stream = request.into_inner();
        let mut shutdown = self.shutdown.clone();
        // The sender, once a batch proved who it is.
        let mut from = None;
        loop {
            tokio::select! {
                batch = stream.message() => match batch {
                    Ok(Some(batch)) => from = Some(self.deliver_batch(batch)?),
                    ended => {
                        if let Some(peer) = from {
                            self.handler.disconnected(peer);
                        }
                        return ended.map(|_| Response::new(pb::Ack {}));
                    }
                },
                _ = shutdown.wait_for(|&stop| stop) => {
                    return Err(Status::unavailable("node is shutting down"));
                }
            }
        }
    }

    async fn vote(&self, request: Request<pb::MessageBatch>) -> Result<Response<pb::Ack>, Status> {
        self.deliver_batch(request.into_inner())?;
        Ok(Response::new(pb::Ack {}))
    }

    async fn snapshot_offset(
        &self,
        request: Request<pb::SnapshotQuery>,
    ) -> Result<Response<pb::SnapshotResume>, Status> {
        let query = request.into_inner();
        let from = check_header(&self.shared, query.header.as_ref())?;
        let message = self.snapshot_message(from, query.message)?;
        let offset = self
            .handler
            .snapshot_offset(&message)
            .await
            .map_err(snapshot_status)?;
        Ok(Response::new(pb::SnapshotResume { offset }))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::SnapshotAck>, Status> {
        let mut stream = request.into_inner();
        let mut chunk = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        let from = check_header(&self.shared, chunk.header.as_ref())?;
        let message = self.snapshot_message(from, chunk.message.take())?;
        loop {
            let last = chunk.last;
            let checksum = last.then_some(chunk.checksum);
            self.handler
                .snapshot_chunk(&message, chunk.offset, chunk.data, checksum)
                .await
                .map_err(snapshot_status)?;
            if last {
                bump(&self.shared.counters.snapshots_received);
                return Ok(Response::new(pb::SnapshotAck {}));
            }
            chunk = stream
                .message()
                .await?
                .ok_or_else(|| Status::aborted("snapshot stream ended before its last chunk"))?;
        }
    }
}
