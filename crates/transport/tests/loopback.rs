//! Two transports over loopback: delivery, batching, refusal of foreign
//! clusters, and snapshot streaming with resume.

use std::io::{Cursor, Read};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use keel_raft::{LogIndex, Membership, Message, MessageBody, NodeId, SnapshotMeta, Term};
use keel_transport::{Handler, Overloaded, SnapshotRejected, Transport, TransportConfig};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Collects everything it receives; keeps snapshot bytes in memory.
#[derive(Clone)]
struct Collect {
    inbox: mpsc::UnboundedSender<Message>,
    disconnects: mpsc::UnboundedSender<NodeId>,
    snapshot: Arc<Mutex<Vec<u8>>>,
}

impl Handler for Collect {
    fn deliver(&self, messages: Vec<Message>) -> Result<(), Overloaded> {
        for m in messages {
            self.inbox.send(m).map_err(|_| Overloaded)?;
        }
        Ok(())
    }

    fn disconnected(&self, peer: NodeId) {
        self.disconnects.send(peer).unwrap();
    }

    async fn snapshot_offset(&self, _message: &Message) -> Result<u64, SnapshotRejected> {
        Ok(self.snapshot.lock().unwrap().len() as u64)
    }

    async fn snapshot_chunk(
        &self,
        message: &Message,
        offset: u64,
        data: Bytes,
        last_checksum: Option<u32>,
    ) -> Result<(), SnapshotRejected> {
        let mut held = self.snapshot.lock().unwrap();
        if offset != held.len() as u64 {
            return Err(SnapshotRejected::OffsetMismatch {
                held: held.len() as u64,
                got: offset,
            });
        }
        held.extend_from_slice(&data);
        if let Some(checksum) = last_checksum {
            assert_eq!(
                checksum, 77,
                "the sender's checksum arrives with the last chunk"
            );
            self.inbox.send(message.clone()).unwrap();
        }
        Ok(())
    }
}

struct Node {
    transport: Transport,
    addr: String,
    inbox: mpsc::UnboundedReceiver<Message>,
    disconnects: mpsc::UnboundedReceiver<NodeId>,
    snapshot: Arc<Mutex<Vec<u8>>>,
}

async fn node(cluster_id: u64, id: u64) -> Node {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut config = TransportConfig::new(cluster_id, NodeId(id), addr.clone());
    config.tuning.snapshot_chunk_bytes = 1000;
    let transport = Transport::new(config);
    let (tx, inbox) = mpsc::unbounded_channel();
    let (disconnected, disconnects) = mpsc::unbounded_channel();
    let snapshot = Arc::new(Mutex::new(Vec::new()));
    let handler = Collect {
        inbox: tx,
        disconnects: disconnected,
        snapshot: snapshot.clone(),
    };
    let server = transport.clone();
    tokio::spawn(async move {
        server
            .serve(listener, handler, std::future::pending())
            .await
    });
    Node {
        transport,
        addr,
        inbox,
        disconnects,
        snapshot,
    }
}

fn heartbeat(from: u64, to: u64, round: u64) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(1),
        body: MessageBody::Heartbeat {
            commit: LogIndex(0),
            round,
        },
    }
}

async fn recv(inbox: &mut mpsc::UnboundedReceiver<Message>) -> Message {
    tokio::time::timeout(Duration::from_secs(5), inbox.recv())
        .await
        .expect("message within 5 s")
        .unwrap()
}

#[tokio::test]
async fn the_receiver_hears_when_a_senders_stream_ends() {
    let a = node(7, 1).await;
    let mut b = node(7, 2).await;
    a.transport.set_peer(NodeId(2), b.addr.clone());
    a.transport.send(heartbeat(1, 2, 1)).unwrap();
    assert_eq!(recv(&mut b.inbox).await, heartbeat(1, 2, 1));
    assert!(
        b.disconnects.try_recv().is_err(),
        "no disconnect while the stream is open"
    );
    a.transport.remove_peer(NodeId(2));
    let peer = tokio::time::timeout(Duration::from_secs(5), b.disconnects.recv())
        .await
        .expect("the end of the stream is reported within 5 s")
        .unwrap();
    assert_eq!(peer, NodeId(1));
}

#[tokio::test]
async fn messages_arrive_in_order_and_answers_find_their_way_back() {
    let a = node(7, 1).await;
    let mut b = node(7, 2).await;
    a.transport.set_peer(NodeId(2), b.addr.clone());
    for round in 1..=500 {
        a.transport.send(heartbeat(1, 2, round)).unwrap();
    }
    for round in 1..=500 {
        assert_eq!(recv(&mut b.inbox).await, heartbeat(1, 2, round));
    }
    // Node 2 was never told node 1's address; it learned it from the header.
    assert_eq!(b.transport.peers().get(&NodeId(1)), Some(&a.addr));
    let metrics = a.transport.metrics();
    assert_eq!(metrics.sent_msgs, 500);
    assert!(
        metrics.sent_batches < 500,
        "messages were batched: {metrics:?}"
    );

    let mut a = a;
    let vote = Message {
        from: NodeId(2),
        to: NodeId(1),
        term: Term(2),
        body: MessageBody::VoteResponse {
            pre_vote: false,
            granted: true,
        },
    };
    b.transport.send(vote.clone()).unwrap();
    assert_eq!(recv(&mut a.inbox).await, vote);
}

#[tokio::test]
async fn traffic_from_another_cluster_is_refused() {
    let a = node(7, 1).await;
    let mut b = node(8, 2).await;
    a.transport.set_peer(NodeId(2), b.addr.clone());
    a.transport.send(heartbeat(1, 2, 1)).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b.inbox.try_recv().is_err());
    assert!(b.transport.metrics().rejected_wrong_cluster >= 1);
    assert!(a.transport.metrics().stream_failures >= 1);
}

#[tokio::test]
async fn message_for_another_node_is_refused() {
    let a = node(7, 1).await;
    let mut b = node(7, 2).await;
    // Node 1 believes node 3 lives at node 2's address.
    a.transport.set_peer(NodeId(3), b.addr.clone());
    a.transport.send(heartbeat(1, 3, 1)).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b.inbox.try_recv().is_err());
    assert!(b.transport.metrics().rejected_wrong_node >= 1);
}

#[tokio::test]
async fn dead_peer_costs_bounded_memory() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = listener.local_addr().unwrap().to_string();
    drop(listener);
    let a = node(7, 1).await;
    a.transport.set_peer(NodeId(2), dead);
    let mut refused = 0;
    for round in 0..20_000 {
        if a.transport.send(heartbeat(1, 2, round)).is_err() {
            refused += 1;
        }
        if round % 1000 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert!(
        refused > 0,
        "a dead peer's messages are dropped, not queued"
    );
}

#[tokio::test]
async fn snapshot_streams_in_chunks_and_resumes() {
    let a = node(7, 1).await;
    let mut b = node(7, 2).await;
    a.transport.set_peer(NodeId(2), b.addr.clone());
    let data: Vec<u8> = (0..10_500u32).map(|i| (i % 251) as u8).collect();
    // The receiver already holds the first 2,500 bytes from an earlier try.
    b.snapshot.lock().unwrap().extend_from_slice(&data[..2500]);
    let message = Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(3),
        body: MessageBody::InstallSnapshot {
            meta: SnapshotMeta {
                index: LogIndex(40),
                term: Term(2),
                membership: Membership::new([NodeId(1), NodeId(2)], []).unwrap(),
            },
        },
    };
    let source = data.clone();
    a.transport
        .send_snapshot(message.clone(), 77, move |offset| {
            let mut cursor = Cursor::new(source);
            cursor.set_position(offset);
            Ok(Box::new(cursor) as Box<dyn Read + Send>)
        })
        .await
        .unwrap();
    assert_eq!(recv(&mut b.inbox).await, message);
    assert_eq!(*b.snapshot.lock().unwrap(), data);
}
