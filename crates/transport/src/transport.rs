//! [`Transport`]: the node's handle for sending to peers and serving them.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use keel_raft::{Message, MessageBody, NodeId};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tracing::debug;

use crate::config::TransportConfig;
use crate::convert::encode_message;
use crate::identity::{IdentityStamp, PeerChannel, PeerServices};
use crate::metrics::{TransportMetrics, bump};
use crate::pb;
use crate::peer::{self, Peer};
use crate::server::{Handler, Service, SnapshotRejected};
use crate::shared::Shared;

/// Why a message was not handed to a peer. The message is dropped; Raft
/// retries what matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No address is known for the recipient.
    #[error("no address is known for node {0}")]
    UnknownPeer(NodeId),
    /// The recipient is in reconnect backoff, or its stream task has stopped.
    #[error("node {0} is unreachable (reconnecting)")]
    Unreachable(NodeId),
    /// The recipient's queue is full.
    #[error("the queue to node {0} is full")]
    QueueFull(NodeId),
}

/// Why a snapshot transfer failed; the leader's core is told and retries.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotSendError {
    /// No address is known for the recipient.
    #[error("no address is known for node {0}")]
    UnknownPeer(NodeId),
    /// A gRPC call of the transfer failed with this status.
    #[error("the snapshot call failed: {0}")]
    Rpc(#[from] tonic::Status),
    /// The query for the receiver's resume offset passed its deadline.
    #[error("the snapshot offset query timed out")]
    Timeout,
    /// Reading the snapshot from local storage failed.
    #[error("reading the local snapshot failed: {0}")]
    Read(#[from] io::Error),
    /// The recipient cannot be reached (a transport other than gRPC: its
    /// link is cut, or it stopped).
    #[error("node {0} is unreachable")]
    Unreachable(NodeId),
    /// The recipient refused a chunk or the offset query (a transport
    /// other than gRPC, which hands the receiver's refusal over as is).
    #[error("the receiver refused the snapshot: {0}")]
    Rejected(#[from] SnapshotRejected),
}

/// Why no channel to a peer could be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No address is known for the peer.
    #[error("no address is known for node {0}")]
    UnknownPeer(NodeId),
    /// The connection attempt failed.
    #[error("connecting to node {id} at {addr} failed: {source}")]
    Connect {
        /// The peer's node id.
        id: NodeId,
        /// The address that was dialled ("host:port").
        addr: String,
        /// Why the connection failed.
        #[source]
        source: tonic::transport::Error,
    },
    /// The node runs on a transport other than gRPC, which carries no
    /// application services.
    #[error("this node's transport carries no application services; they need the gRPC transport")]
    NotGrpc,
}

/// Why the server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The gRPC server stopped with this error.
    #[error("the gRPC server failed: {0}")]
    Server(#[from] tonic::transport::Error),
}

/// Sends the core's messages to peers and serves their calls.
///
/// Cheap to clone; every clone drives the same peer streams.
#[derive(Clone)]
pub struct Transport {
    shared: Arc<Shared>,
}

/// Elections go over unary calls so they never wait behind replication.
fn is_election(body: &MessageBody) -> bool {
    matches!(
        body,
        MessageBody::VoteRequest { .. }
            | MessageBody::VoteResponse { .. }
            | MessageBody::TimeoutNow
    )
}

impl Transport {
    /// A transport for `config`, with no peers known yet.
    pub fn new(config: TransportConfig) -> Transport {
        Transport {
            shared: Arc::new(Shared::new(config)),
        }
    }

    /// The configuration the transport was made with.
    pub fn config(&self) -> &TransportConfig {
        &self.shared.config
    }

    /// Sets the address of peer `id` ("host:port"), replacing any other.
    /// Must be called inside a tokio runtime: it starts the peer's task.
    pub fn set_peer(&self, id: NodeId, addr: impl Into<String>) {
        self.shared.set_peer(id, addr.into());
    }

    /// Forgets peer `id` and stops its stream.
    pub fn remove_peer(&self, id: NodeId) {
        let removed = self
            .shared
            .peers
            .write()
            .expect("peer map lock poisoned")
            .remove(&id);
        if removed.is_some() {
            self.shared.peers_version.fetch_add(1, Ordering::Release);
        }
    }

    /// Forgets every peer and stops their streams, e.g. when the node stops.
    pub fn clear_peers(&self) {
        let removed =
            std::mem::take(&mut *self.shared.peers.write().expect("peer map lock poisoned"));
        if !removed.is_empty() {
            self.shared.peers_version.fetch_add(1, Ordering::Release);
        }
    }

    /// Every known peer and its address.
    pub fn peers(&self) -> BTreeMap<NodeId, String> {
        let peers = self.shared.peers.read().expect("peer map lock poisoned");
        peers.iter().map(|(&id, p)| (id, p.addr.clone())).collect()
    }

    /// Changes whenever [`Transport::peers`] does.
    pub fn peers_version(&self) -> u64 {
        self.shared.peers_version.load(Ordering::Acquire)
    }

    /// A snapshot of the transport's counters.
    pub fn metrics(&self) -> TransportMetrics {
        self.shared.counters.snapshot()
    }

    /// Queues `m` for its recipient without waiting. Replication messages go
    /// down the peer's stream; election messages each get a unary call.
    pub fn send(&self, m: Message) -> Result<(), SendError> {
        let to = m.to;
        let counters = &self.shared.counters;
        let peers = self.shared.peers.read().expect("peer map lock poisoned");
        let Some(peer) = peers.get(&to) else {
            bump(&counters.dropped_unknown_peer);
            return Err(SendError::UnknownPeer(to));
        };
        if is_election(&m.body) {
            self.send_vote(peer, m);
            return Ok(());
        }
        if !peer.reachable.load(Ordering::Acquire) {
            bump(&counters.dropped_unreachable);
            return Err(SendError::Unreachable(to));
        }
        peer.queue.try_send(m).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                bump(&counters.dropped_queue_full);
                SendError::QueueFull(to)
            }
            mpsc::error::TrySendError::Closed(_) => {
                bump(&counters.dropped_unreachable);
                SendError::Unreachable(to)
            }
        })
    }

    fn send_vote(&self, peer: &Peer, m: Message) {
        let Ok(permit) = peer.votes.clone().try_acquire_owned() else {
            bump(&self.shared.counters.dropped_queue_full);
            return;
        };
        let mut client = peer.client.clone();
        let batch = pb::MessageBatch {
            header: Some(self.shared.header()),
            messages: vec![encode_message(&m)],
        };
        let timeout = self.shared.config.tuning.rpc_timeout;
        let counters = self.shared.counters.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(timeout, client.vote(batch)).await {
                Ok(Ok(_)) => bump(&counters.sent_msgs),
                Ok(Err(status)) => {
                    bump(&counters.dropped_unreachable);
                    debug!(to = %m.to, kind = m.body.kind(), %status, "election message not delivered");
                }
                Err(_) => {
                    bump(&counters.dropped_unreachable);
                    debug!(to = %m.to, kind = m.body.kind(), "election message timed out");
                }
            }
        });
    }

    /// Streams the snapshot that `message` (an InstallSnapshot) describes.
    ///
    /// Asks the receiver how much it already holds, then calls `open` with
    /// that offset (on a blocking thread) for a reader positioned there, and
    /// streams the rest in chunks, the last one carrying `checksum` (of the
    /// whole data). Returns once the receiver stored and verified all of it
    /// and stepped the message into its core.
    pub async fn send_snapshot<F>(
        &self,
        message: Message,
        checksum: u32,
        open: F,
    ) -> Result<(), SnapshotSendError>
    where
        F: FnOnce(u64) -> io::Result<Box<dyn Read + Send>> + Send + 'static,
    {
        let to = message.to;
        let mut client = {
            let peers = self.shared.peers.read().expect("peer map lock poisoned");
            peers
                .get(&to)
                .ok_or(SnapshotSendError::UnknownPeer(to))?
                .client
                .clone()
        };
        let header = self.shared.header();
        let message = encode_message(&message);
        let query = pb::SnapshotQuery {
            header: Some(header.clone()),
            message: Some(message.clone()),
        };
        let offset = tokio::time::timeout(
            self.shared.config.tuning.rpc_timeout,
            client.snapshot_offset(query),
        )
        .await
        .map_err(|_| SnapshotSendError::Timeout)??
        .into_inner()
        .offset;
        debug!(%to, offset, "streaming snapshot");
        let (tx, rx) = mpsc::channel(2);
        let chunk_bytes = self.shared.config.tuning.snapshot_chunk_bytes;
        let reader = tokio::task::spawn_blocking(move || -> io::Result<()> {
            let mut source = open(offset)?;
            let mut offset = offset;
            let mut first = Some((header, message));
            loop {
                let data = read_up_to(&mut source, chunk_bytes)?;
                let n = data.len();
                let last = n < chunk_bytes;
                let (header, message) = first.take().unzip();
                let chunk = pb::SnapshotChunk {
                    header,
                    message,
                    offset,
                    data: data.into(),
                    last,
                    checksum: if last { checksum } else { 0 },
                };
                // A closed channel means the call failed; it reports why.
                if tx.blocking_send(chunk).is_err() || last {
                    return Ok(());
                }
                offset += n as u64;
            }
        });
        let call = client.install_snapshot(ReceiverStream::new(rx)).await;
        let read = reader.await.map_err(io::Error::other)?;
        read?;
        call?;
        bump(&self.shared.counters.snapshots_sent);
        Ok(())
    }

    /// An empty set of application services for [`Transport::serve_with`],
    /// whose calls will be checked against this node's cluster.
    pub fn peer_services(&self) -> PeerServices {
        PeerServices::new(self.shared.clone())
    }

    /// A channel to peer `id`'s listener, connected before it is returned
    /// (so a failure here is known to have sent nothing), whose calls carry
    /// this node's identity: for the application services the peer serves
    /// with [`Transport::serve_with`]. Each call opens its own connection;
    /// callers keep the channel for reuse.
    pub async fn connect(&self, id: NodeId) -> Result<PeerChannel, ConnectError> {
        let addr = self
            .shared
            .peers
            .read()
            .expect("peer map lock poisoned")
            .get(&id)
            .map(|p| p.addr.clone())
            .ok_or(ConnectError::UnknownPeer(id))?;
        let failed = |source| ConnectError::Connect {
            id,
            addr: addr.clone(),
            source,
        };
        let channel = peer::channel(&self.shared.config, &addr)
            .await
            .map_err(failed)?;
        Ok(PeerChannel::new(
            channel,
            IdentityStamp::of(&self.shared.header()),
        ))
    }

    /// Serves peers on `listener` until `shutdown` resolves; inbound
    /// streams are then ended so the server stops promptly.
    pub async fn serve<H: Handler>(
        &self,
        listener: TcpListener,
        handler: H,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        self.serve_with(listener, handler, self.peer_services(), shutdown)
            .await
    }

    /// Like [`Transport::serve`], and serves the application's `services`
    /// next to Raft, each behind the same identity check as Raft calls.
    pub async fn serve_with<H: Handler>(
        &self,
        listener: TcpListener,
        handler: H,
        services: PeerServices,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let config = &self.shared.config;
        let service = pb::raft_server::RaftServer::new(Service {
            shared: self.shared.clone(),
            handler,
            shutdown: stop_rx,
        })
        .max_decoding_message_size(config.tuning.grpc_message_bytes_max)
        .max_encoding_message_size(config.tuning.grpc_message_bytes_max);
        let signal = async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        };
        // Nagle's algorithm is off on every connection (`tls::incoming`):
        // with it on, small replies wait for the peer's delayed ACK (~40 ms).
        let tls = config.tls.as_ref().map(|tls| tls.server.clone());
        let incoming = crate::tls::incoming(listener, tls);
        tonic::transport::Server::builder()
            .add_routes(services.into_routes())
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, signal)
            .await?;
        Ok(())
    }
}

/// Reads until `limit` bytes or the end of the source.
fn read_up_to(source: &mut dyn Read, limit: usize) -> io::Result<Vec<u8>> {
    let mut data = Vec::with_capacity(limit);
    source.take(limit as u64).read_to_end(&mut data)?;
    Ok(data)
}
