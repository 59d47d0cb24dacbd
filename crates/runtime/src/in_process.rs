//! [`InProcessNetwork`]: a [`Transport`] between nodes of one process, over
//! tokio channels, whose links a test cuts and heals and whose nodes it
//! stops: partitions without sockets, for embedders' tests and benchmarks.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use keel_raft::{Message, NodeId};
use keel_transport::{Handler, SendError, SnapshotSendError, TransportMetrics};
use tokio::sync::mpsc;

use crate::inbound::PeerInbox;
use crate::snapshot::SnapshotSource;
use crate::transport::{SnapshotTransfer, Transport};

/// Messages that may wait on one directed link. A full link refuses more,
/// as a full gRPC peer queue does, so a stalled receiver cannot make its
/// senders buffer without bound.
const LINK_QUEUE_MESSAGES: usize = 4096;

/// Messages handed to the receiving node in one batch, at most: what the
/// link's queue holds when its task wakes, as a gRPC stream write would
/// carry it.
const BATCH_MESSAGES_MAX: usize = 256;

/// Snapshot bytes handed to the receiver per chunk.
const SNAPSHOT_CHUNK_BYTES: usize = 64 * 1024;

/// A network between nodes of one process: one per test (or benchmark).
///
/// Start each node with [`crate::Node::start_with_transport`], attaching it
/// by id: `|inbox| network.attach(id, inbox)`. Every directed link keeps
/// its messages in order, like a TCP stream. Then, while the nodes run:
///
/// - [`InProcessNetwork::cut`] drops everything on a link from now on
///   (one direction; [`InProcessNetwork::isolate`] cuts a node off both
///   ways), silently, as a partition does; [`InProcessNetwork::heal`] and
///   [`InProcessNetwork::heal_all`] undo it.
/// - [`InProcessNetwork::stop`] takes a node off the network as if its
///   process died: nothing reaches it or leaves it, sends to it fail at
///   once, and its peers are told its streams ended (fast failover takes
///   that as a hint to elect a new leader). The node itself is not shut
///   down; a node started again with the same id attaches afresh.
///
/// Cheap to clone; every clone is the same network.
#[derive(Clone, Default)]
pub struct InProcessNetwork {
    fabric: Arc<Mutex<Fabric>>,
}

/// Who is attached and which links are cut.
#[derive(Default)]
struct Fabric {
    members: BTreeMap<NodeId, Member>,
    /// Directed links that drop everything, as `(from, to)`.
    cut: BTreeSet<(NodeId, NodeId)>,
    /// The number the next attachment gets, so that the transport of a
    /// stopped node is told apart from its successor's under the same id.
    next_attachment: u64,
}

/// A node on the network.
struct Member {
    attachment: u64,
    inbox: PeerInbox,
    counters: Arc<Counters>,
}

/// Where a message from one member to another goes.
enum Route<'a> {
    Open(&'a Member),
    /// The link is cut: the message is lost on the way.
    Cut,
    /// The sender or the recipient is not on the network.
    Down,
}

impl Fabric {
    fn route(&self, from: NodeId, attachment: u64, to: NodeId) -> Route<'_> {
        let sender_attached = self
            .members
            .get(&from)
            .is_some_and(|m| m.attachment == attachment);
        if !sender_attached {
            return Route::Down;
        }
        match self.members.get(&to) {
            None => Route::Down,
            Some(_) if self.cut.contains(&(from, to)) => Route::Cut,
            Some(member) => Route::Open(member),
        }
    }

    /// Takes node `id` off the network (only the given attachment, when
    /// one is given) and returns the inboxes of the members left, to tell
    /// them.
    fn detach(&mut self, id: NodeId, attachment: Option<u64>) -> Vec<PeerInbox> {
        let current = self
            .members
            .get(&id)
            .is_some_and(|m| attachment.is_none_or(|a| a == m.attachment));
        if !current {
            return Vec::new();
        }
        self.members.remove(&id);
        self.members.values().map(|m| m.inbox.clone()).collect()
    }
}

impl InProcessNetwork {
    /// An empty network.
    pub fn new() -> InProcessNetwork {
        InProcessNetwork::default()
    }

    /// Attaches node `id`, whose peers' traffic goes to `inbox`, and
    /// returns its transport. A node already attached under `id` is
    /// replaced (a restart).
    pub fn attach(&self, id: NodeId, inbox: PeerInbox) -> InProcessTransport {
        let counters = Arc::new(Counters::default());
        let mut fabric = self.fabric();
        let attachment = fabric.next_attachment;
        fabric.next_attachment += 1;
        let member = Member {
            attachment,
            inbox,
            counters: counters.clone(),
        };
        fabric.members.insert(id, member);
        InProcessTransport {
            id,
            attachment,
            network: self.clone(),
            counters,
            links: Mutex::default(),
        }
    }

    /// Drops every message from `from` to `to` from now on (including
    /// those already queued on the link), until healed.
    pub fn cut(&self, from: NodeId, to: NodeId) {
        self.fabric().cut.insert((from, to));
    }

    /// Delivers messages from `from` to `to` again.
    pub fn heal(&self, from: NodeId, to: NodeId) {
        self.fabric().cut.remove(&(from, to));
    }

    /// Cuts every link to and from node `id`, both ways, with every node
    /// attached now: it keeps running, alone.
    pub fn isolate(&self, id: NodeId) {
        let mut fabric = self.fabric();
        let others: Vec<NodeId> = fabric
            .members
            .keys()
            .copied()
            .filter(|&o| o != id)
            .collect();
        for other in others {
            fabric.cut.insert((id, other));
            fabric.cut.insert((other, id));
        }
    }

    /// Heals every cut link.
    pub fn heal_all(&self) {
        self.fabric().cut.clear();
    }

    /// Takes node `id` off the network as if its process died (see the
    /// type's documentation); its peers see its streams end.
    pub fn stop(&self, id: NodeId) {
        let others = self.fabric().detach(id, None);
        tell_disconnected(&others, id);
    }

    fn fabric(&self) -> MutexGuard<'_, Fabric> {
        self.fabric.lock().expect("network lock poisoned")
    }

    /// The inbox and counters of `to`, if a message from `from` reaches it.
    fn reach(
        &self,
        from: NodeId,
        attachment: u64,
        to: NodeId,
    ) -> Option<(PeerInbox, Arc<Counters>)> {
        match self.fabric().route(from, attachment, to) {
            Route::Open(member) => Some((member.inbox.clone(), member.counters.clone())),
            Route::Cut | Route::Down => None,
        }
    }

    /// Hands a batch that crossed the link `from → to` to its recipient,
    /// unless the link was cut or either end left meanwhile.
    fn deliver(
        &self,
        from: NodeId,
        attachment: u64,
        to: NodeId,
        batch: Vec<Message>,
        sender: &Counters,
    ) {
        let n = batch.len() as u64;
        let fabric = self.fabric();
        let Route::Open(member) = fabric.route(from, attachment, to) else {
            add(&sender.dropped_unreachable, n);
            return;
        };
        add(&sender.sent_msgs, n);
        add(&sender.sent_batches, 1);
        match member.inbox.deliver(batch) {
            Ok(()) => add(&member.counters.received_msgs, n),
            Err(_) => add(&member.counters.dropped_inbox_full, n),
        }
    }
}

fn tell_disconnected(inboxes: &[PeerInbox], peer: NodeId) {
    for inbox in inboxes {
        inbox.disconnected(peer);
    }
}

/// One node's side of an [`InProcessNetwork`]: the [`Transport`] its
/// node sends through. Messages go by node id to whichever node is
/// attached under it: members need no addresses, and those the
/// configuration records are ignored.
pub struct InProcessTransport {
    id: NodeId,
    attachment: u64,
    network: InProcessNetwork,
    counters: Arc<Counters>,
    /// Each peer's link: a queue drained, in order, by a task of its own.
    links: Mutex<BTreeMap<NodeId, mpsc::Sender<Message>>>,
}

impl InProcessTransport {
    /// Opens the link to `to`: a bounded queue and the task that carries
    /// its messages over, in batches, until the transport closes.
    fn open_link(&self, to: NodeId) -> mpsc::Sender<Message> {
        let (tx, mut queue) = mpsc::channel(LINK_QUEUE_MESSAGES);
        let network = self.network.clone();
        let (from, attachment) = (self.id, self.attachment);
        let counters = self.counters.clone();
        tokio::spawn(async move {
            while let Some(first) = queue.recv().await {
                let mut batch = vec![first];
                while batch.len() < BATCH_MESSAGES_MAX {
                    let Ok(m) = queue.try_recv() else { break };
                    batch.push(m);
                }
                network.deliver(from, attachment, to, batch, &counters);
            }
        });
        tx
    }
}

impl Transport for InProcessTransport {
    fn send(&self, message: Message) -> Result<(), SendError> {
        let to = message.to;
        match self.network.fabric().route(self.id, self.attachment, to) {
            Route::Open(_) => {}
            // Lost on the way: the sender cannot tell, as with a partition.
            Route::Cut => {
                bump(&self.counters.dropped_unreachable);
                return Ok(());
            }
            Route::Down => {
                bump(&self.counters.dropped_unreachable);
                return Err(SendError::Unreachable(to));
            }
        }
        let mut links = self.links.lock().expect("link map lock poisoned");
        let link = links.entry(to).or_insert_with(|| self.open_link(to));
        link.try_send(message).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                bump(&self.counters.dropped_queue_full);
                SendError::QueueFull(to)
            }
            mpsc::error::TrySendError::Closed(_) => {
                bump(&self.counters.dropped_unreachable);
                SendError::Unreachable(to)
            }
        })
    }

    fn send_snapshot(&self, message: Message, snapshot: SnapshotSource) -> SnapshotTransfer {
        let network = self.network.clone();
        let (from, attachment) = (self.id, self.attachment);
        let counters = self.counters.clone();
        Box::pin(async move {
            let to = message.to;
            // Looked up again for every call, so that a link cut or a node
            // stopped in the middle of a transfer fails it.
            let reach = || {
                network
                    .reach(from, attachment, to)
                    .ok_or(SnapshotSendError::Unreachable(to))
            };
            let (inbox, _) = reach()?;
            let mut offset = inbox.snapshot_offset(&message).await?;
            let checksum = snapshot.checksum();
            let source = Arc::new(snapshot);
            loop {
                let data = read_chunk(source.clone(), offset).await?;
                let len = data.len();
                let last = len < SNAPSHOT_CHUNK_BYTES;
                let (inbox, receiver) = reach()?;
                inbox
                    .snapshot_chunk(&message, offset, data, last.then_some(checksum))
                    .await?;
                if last {
                    bump(&counters.snapshots_sent);
                    bump(&receiver.snapshots_received);
                    return Ok(());
                }
                offset += len as u64;
            }
        })
    }

    /// Routing is by id: an address changes nothing.
    fn set_peer(&self, _id: NodeId, _addr: String) {}

    fn metrics(&self) -> TransportMetrics {
        self.counters.snapshot()
    }

    fn close(&self) {
        // Dropping the links' queues ends their tasks.
        self.links.lock().expect("link map lock poisoned").clear();
        let others = self.network.fabric().detach(self.id, Some(self.attachment));
        tell_disconnected(&others, self.id);
    }
}

/// Reads one chunk of `source` on a blocking thread: it reads the disk.
async fn read_chunk(source: Arc<SnapshotSource>, offset: u64) -> io::Result<Bytes> {
    tokio::task::spawn_blocking(move || source.read_chunk(offset, SNAPSHOT_CHUNK_BYTES))
        .await
        .map_err(io::Error::other)?
}

/// What one node's side of the network counted.
#[derive(Default)]
struct Counters {
    sent_msgs: AtomicU64,
    sent_batches: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_unreachable: AtomicU64,
    received_msgs: AtomicU64,
    dropped_inbox_full: AtomicU64,
    snapshots_sent: AtomicU64,
    snapshots_received: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> TransportMetrics {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TransportMetrics {
            sent_msgs: read(&self.sent_msgs),
            sent_batches: read(&self.sent_batches),
            dropped_queue_full: read(&self.dropped_queue_full),
            dropped_unreachable: read(&self.dropped_unreachable),
            received_msgs: read(&self.received_msgs),
            dropped_inbox_full: read(&self.dropped_inbox_full),
            snapshots_sent: read(&self.snapshots_sent),
            snapshots_received: read(&self.snapshots_received),
            ..TransportMetrics::default()
        }
    }
}

fn bump(counter: &AtomicU64) {
    add(counter, 1);
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use keel_raft::{MessageBody, Term};
    use keel_storage::MemSnapshotStore;

    use super::*;
    use crate::inbound::Inbound;

    /// A node's side of the network with the driver's inbox exposed.
    fn attach(
        network: &InProcessNetwork,
        id: u64,
    ) -> (InProcessTransport, mpsc::Receiver<Inbound>) {
        let store = Arc::new(MemSnapshotStore::new());
        let (tx, rx) = mpsc::channel(64);
        (network.attach(NodeId(id), PeerInbox::new(tx, store)), rx)
    }

    fn timeout_now(from: u64, to: u64, term: u64) -> Message {
        Message {
            from: NodeId(from),
            to: NodeId(to),
            term: Term(term),
            body: MessageBody::TimeoutNow,
        }
    }

    /// The terms of the messages that arrive within a short wait, in order.
    async fn arrived(inbox: &mut mpsc::Receiver<Inbound>) -> Vec<u64> {
        let mut terms = Vec::new();
        while let Ok(Some(inbound)) =
            tokio::time::timeout(Duration::from_millis(50), inbox.recv()).await
        {
            if let Inbound::Messages(messages) = inbound {
                terms.extend(messages.iter().map(|m| m.term.0));
            }
        }
        terms
    }

    #[tokio::test]
    async fn a_link_keeps_order_drops_while_cut_and_carries_again_once_healed() {
        let network = InProcessNetwork::new();
        let (one, _inbox_one) = attach(&network, 1);
        let (_two, mut inbox_two) = attach(&network, 2);
        for term in 1..=300 {
            one.send(timeout_now(1, 2, term)).unwrap();
        }
        assert_eq!(arrived(&mut inbox_two).await, (1..=300).collect::<Vec<_>>());

        network.cut(NodeId(1), NodeId(2));
        one.send(timeout_now(1, 2, 301)).unwrap();
        assert_eq!(arrived(&mut inbox_two).await, Vec::<u64>::new());

        network.heal(NodeId(1), NodeId(2));
        one.send(timeout_now(1, 2, 302)).unwrap();
        assert_eq!(arrived(&mut inbox_two).await, vec![302]);
        let counted = one.metrics();
        assert_eq!((counted.sent_msgs, counted.dropped_unreachable), (301, 1));
    }

    #[tokio::test]
    async fn a_stopped_node_is_unreachable_and_its_peers_hear_it_disconnected() {
        let network = InProcessNetwork::new();
        let (one, mut inbox_one) = attach(&network, 1);
        let (two, _inbox_two) = attach(&network, 2);
        network.stop(NodeId(2));
        assert!(matches!(
            inbox_one.try_recv(),
            Ok(Inbound::Disconnected(NodeId(2)))
        ));
        assert_eq!(
            one.send(timeout_now(1, 2, 1)),
            Err(SendError::Unreachable(NodeId(2)))
        );
        // The stopped node's leftover transport speaks for nobody, even
        // once a successor attaches under its id.
        let (_successor, mut inbox_successor) = attach(&network, 2);
        assert_eq!(
            two.send(timeout_now(2, 1, 1)),
            Err(SendError::Unreachable(NodeId(1)))
        );
        one.send(timeout_now(1, 2, 2)).unwrap();
        assert_eq!(arrived(&mut inbox_successor).await, vec![2]);
        assert_eq!(
            one.send(timeout_now(1, 3, 1)),
            Err(SendError::Unreachable(NodeId(3)))
        );
    }
}
