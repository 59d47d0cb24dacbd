//! One peer's outbound side: a bounded queue drained by a task that keeps
//! a client-streaming `Send` call open and writes messages in batches.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use keel_raft::{Message, NodeId};
use prost::Message as _;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, warn};

use crate::config::TransportConfig;
use crate::convert::encode_message;
use crate::metrics::{Counters, add, bump};
use crate::pb;
use crate::pb::raft_client::RaftClient;
use crate::tls::ClientTls;

/// Stream writes that may wait inside one call; small so that a slow peer
/// pushes back into the (bounded, dropping) queue rather than buffering.
const STREAM_BUFFER_BATCHES: usize = 2;

/// What the transport holds for one peer.
pub(crate) struct Peer {
    pub(crate) addr: String,
    pub(crate) queue: mpsc::Sender<Message>,
    /// Cleared while the peer's stream is backing off after a failure:
    /// messages are then dropped at once instead of queued.
    pub(crate) reachable: Arc<AtomicBool>,
    pub(crate) client: RaftClient<Channel>,
    pub(crate) votes: Arc<Semaphore>,
    task: JoinHandle<()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        // The task would end by itself once the queue closes, but a stream
        // in backoff would first sleep out its delay.
        self.task.abort();
    }
}

/// Where to reach the peer at `addr` ("host:port"), with the transport's
/// connection settings.
fn endpoint(config: &TransportConfig, addr: &str) -> Result<Endpoint, tonic::transport::Error> {
    let endpoint = match &config.tls {
        Some(_) => ClientTls::endpoint(&format!("https://{addr}"))?,
        None => Endpoint::from_shared(format!("http://{addr}"))?,
    };
    Ok(endpoint
        .connect_timeout(config.tuning.connect_timeout)
        .tcp_nodelay(true))
}

/// A channel to the peer at `addr`, over TLS when the transport has it,
/// connected at its first call and again after failures.
fn channel_lazy(config: &TransportConfig, addr: &str) -> Result<Channel, tonic::transport::Error> {
    let endpoint = endpoint(config, addr)?;
    Ok(match &config.tls {
        Some(tls) => tls.client.connect_lazy(endpoint),
        None => endpoint.connect_lazy(),
    })
}

/// A channel to the peer at `addr`, over TLS when the transport has it,
/// connected now.
pub(crate) async fn channel(
    config: &TransportConfig,
    addr: &str,
) -> Result<Channel, tonic::transport::Error> {
    let endpoint = endpoint(config, addr)?;
    match &config.tls {
        Some(tls) => tls.client.connect(endpoint).await,
        None => endpoint.connect().await,
    }
}

/// Builds a client whose connection is made lazily and remade by tonic
/// after failures.
pub(crate) fn client(
    config: &TransportConfig,
    addr: &str,
) -> Result<RaftClient<Channel>, tonic::transport::Error> {
    let channel = channel_lazy(config, addr)?;
    Ok(RaftClient::new(channel)
        .max_decoding_message_size(config.tuning.grpc_message_bytes_max)
        .max_encoding_message_size(config.tuning.grpc_message_bytes_max))
}

impl Peer {
    pub(crate) fn spawn(
        id: NodeId,
        addr: String,
        config: &TransportConfig,
        header: pb::Header,
        counters: Arc<Counters>,
    ) -> Result<Peer, tonic::transport::Error> {
        let client = client(config, &addr)?;
        let (queue, rx) = mpsc::channel(config.tuning.peer_queue_msgs_max);
        let reachable = Arc::new(AtomicBool::new(true));
        let stream = PeerStream {
            id,
            config: config.clone(),
            header,
            counters,
            client: client.clone(),
            reachable: reachable.clone(),
        };
        let task = tokio::spawn(stream.run(rx));
        Ok(Peer {
            addr,
            queue,
            reachable,
            client,
            votes: Arc::new(Semaphore::new(config.tuning.votes_inflight_max)),
            task,
        })
    }
}

/// How one streaming call ended.
enum Ended {
    /// The transport dropped the peer.
    QueueClosed,
    /// The call failed or the peer hung up; reconnect after a backoff.
    Failed(String),
}

struct PeerStream {
    id: NodeId,
    config: TransportConfig,
    header: pb::Header,
    counters: Arc<Counters>,
    client: RaftClient<Channel>,
    reachable: Arc<AtomicBool>,
}

impl PeerStream {
    async fn run(self, mut rx: mpsc::Receiver<Message>) {
        let mut backoff = self.config.tuning.reconnect_backoff_min;
        let mut failing = false;
        // Wait for traffic before (re)connecting: an idle peer holds no call.
        while let Some(first) = rx.recv().await {
            let started = Instant::now();
            let reason = match self.stream(first, &mut rx).await {
                Ended::QueueClosed => return,
                Ended::Failed(reason) => reason,
            };
            bump(&self.counters.stream_failures);
            if started.elapsed() > self.config.tuning.reconnect_backoff_max {
                backoff = self.config.tuning.reconnect_backoff_min;
                failing = false;
            }
            if failing {
                debug!(peer = %self.id, %reason, ?backoff, "peer stream failed again");
            } else {
                warn!(peer = %self.id, %reason, "peer stream failed; reconnecting with backoff");
            }
            failing = true;
            self.reachable.store(false, Ordering::Release);
            let mut dropped = 0;
            while rx.try_recv().is_ok() {
                dropped += 1;
            }
            add(&self.counters.dropped_unreachable, dropped);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.config.tuning.reconnect_backoff_max);
            self.reachable.store(true, Ordering::Release);
        }
    }

    /// Opens a `Send` call and writes batches into it until it fails.
    async fn stream(&self, first: Message, rx: &mut mpsc::Receiver<Message>) -> Ended {
        let (tx, stream_rx) = mpsc::channel(STREAM_BUFFER_BATCHES);
        let mut client = self.client.clone();
        let mut call =
            tokio::spawn(async move { client.send(ReceiverStream::new(stream_rx)).await });
        let mut next = Some(first);
        loop {
            let first = match next.take() {
                Some(m) => m,
                None => tokio::select! {
                    m = rx.recv() => match m {
                        Some(m) => m,
                        None => return Ended::QueueClosed,
                    },
                    outcome = &mut call => return Ended::Failed(describe(outcome)),
                },
            };
            let batch = self.collect_batch(first, rx);
            let n = batch.messages.len() as u64;
            tokio::select! {
                sent = tx.send(batch) => {
                    if sent.is_err() {
                        return Ended::Failed(describe(call.await));
                    }
                    add(&self.counters.sent_msgs, n);
                    bump(&self.counters.sent_batches);
                }
                outcome = &mut call => return Ended::Failed(describe(outcome)),
            }
        }
    }

    /// Gathers `first` and whatever else is queued, within the batch bounds.
    fn collect_batch(&self, first: Message, rx: &mut mpsc::Receiver<Message>) -> pb::MessageBatch {
        let first = encode_message(&first);
        let mut bytes = first.encoded_len();
        let mut messages = vec![first];
        while messages.len() < self.config.tuning.batch_msgs_max
            && bytes < self.config.tuning.batch_bytes_max
        {
            let Ok(m) = rx.try_recv() else { break };
            let m = encode_message(&m);
            bytes += m.encoded_len();
            messages.push(m);
        }
        pb::MessageBatch {
            header: Some(self.header.clone()),
            messages,
        }
    }
}

type CallOutcome = Result<Result<tonic::Response<pb::Ack>, tonic::Status>, tokio::task::JoinError>;

fn describe(outcome: CallOutcome) -> String {
    match outcome {
        Ok(Ok(_)) => "the peer closed the stream".to_owned(),
        Ok(Err(status)) => format!("{}: {}", status.code(), status.message()),
        Err(join) => format!("stream task ended: {join}"),
    }
}
