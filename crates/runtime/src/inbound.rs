//! What a transport hands to this node ([`PeerInbox`]): messages go to the
//! driver's inbox; snapshot chunks are written to the snapshot store, and a
//! complete snapshot is staged (whole, verified, durable, not yet
//! published) and handed to the driver with its InstallSnapshot message;
//! the driver publishes it only if the core accepts it.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use keel_raft::{Message, MessageBody, NodeId, SnapshotMeta};
use keel_storage::{SnapshotStore, SnapshotWriter, StagedSnapshot, StorageError};
use keel_transport::{Handler, Overloaded, SnapshotRejected};
use tokio::sync::mpsc;

/// Input from peers, in the order it arrived.
pub(crate) enum Inbound {
    Messages(Vec<Message>),
    /// The stream of messages from this peer ended.
    Disconnected(NodeId),
    /// The snapshot the message describes is staged: step the message in,
    /// and publish the snapshot if the core accepts it.
    SnapshotReady(Box<(Message, Box<dyn StagedSnapshot>)>),
}

/// Where a transport delivers what peers send to this node, through its
/// [`Handler`] methods. Every transport shares it: the gRPC server calls
/// it, and so does [`crate::InProcessNetwork`]; an embedder's own
/// transport gets it from [`crate::Node::start_with_transport`].
///
/// It trusts its caller to have checked what [`Handler`] says arrives
/// checked (a member of this cluster sent it, to this node). Cheap to
/// clone; every clone feeds the same node.
#[derive(Clone)]
pub struct PeerInbox {
    inbox: mpsc::Sender<Inbound>,
    snapshots: Arc<dyn SnapshotStore>,
    /// The snapshot being received, at most one: a leader sends one at a time.
    partial: Arc<Mutex<Option<Box<dyn SnapshotWriter>>>>,
}

impl PeerInbox {
    pub(crate) fn new(
        inbox: mpsc::Sender<Inbound>,
        snapshots: Arc<dyn SnapshotStore>,
    ) -> PeerInbox {
        PeerInbox {
            inbox,
            snapshots,
            partial: Arc::default(),
        }
    }
}

/// The gRPC server checks the kind before it calls; another transport may
/// not, and a wrong kind must not panic the node.
fn meta_of(message: &Message) -> Result<&SnapshotMeta, SnapshotRejected> {
    match &message.body {
        MessageBody::InstallSnapshot { meta } => Ok(meta),
        _ => Err(SnapshotRejected::NotInstallSnapshot),
    }
}

fn rejected(e: StorageError) -> SnapshotRejected {
    match e {
        StorageError::SnapshotOffset { expected, got } => SnapshotRejected::OffsetMismatch {
            held: expected,
            got,
        },
        e => SnapshotRejected::Storage(Box::new(e)),
    }
}

impl Handler for PeerInbox {
    fn deliver(&self, messages: Vec<Message>) -> Result<(), Overloaded> {
        self.inbox
            .try_send(Inbound::Messages(messages))
            .map_err(|_| Overloaded)
    }

    fn disconnected(&self, peer: NodeId) {
        // A hint: if the inbox is full, the election timeout still works.
        let _ = self.inbox.try_send(Inbound::Disconnected(peer));
    }

    async fn snapshot_offset(&self, message: &Message) -> Result<u64, SnapshotRejected> {
        let meta = meta_of(message)?;
        let partial = self.partial.lock().expect("snapshot writer lock poisoned");
        Ok(partial
            .as_ref()
            .filter(|w| w.meta() == meta)
            .map_or(0, |w| w.next_offset()))
    }

    async fn snapshot_chunk(
        &self,
        message: &Message,
        offset: u64,
        data: Bytes,
        last_checksum: Option<u32>,
    ) -> Result<(), SnapshotRejected> {
        let meta = meta_of(message)?.clone();
        let partial = self.partial.clone();
        let store = self.snapshots.clone();
        let write = move || -> Result<Option<Box<dyn StagedSnapshot>>, SnapshotRejected> {
            let mut slot = partial.lock().expect("snapshot writer lock poisoned");
            if slot.as_ref().is_none_or(|w| *w.meta() != meta) {
                if offset != 0 {
                    return Err(SnapshotRejected::OffsetMismatch {
                        held: 0,
                        got: offset,
                    });
                }
                *slot = Some(store.begin(meta).map_err(rejected)?);
            }
            let writer = slot.as_mut().expect("set above");
            writer.write_chunk(offset, &data).map_err(rejected)?;
            let Some(checksum) = last_checksum else {
                return Ok(None);
            };
            let writer = slot.take().expect("set above");
            Ok(Some(writer.stage(Some(checksum)).map_err(rejected)?))
        };
        let staged = tokio::task::spawn_blocking(write)
            .await
            .map_err(|e| SnapshotRejected::Storage(Box::new(e)))??;
        if let Some(staged) = staged {
            self.inbox
                .send(Inbound::SnapshotReady(Box::new((message.clone(), staged))))
                .await
                .map_err(|_| SnapshotRejected::ShuttingDown)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use keel_raft::Term;
    use keel_storage::MemSnapshotStore;

    use super::*;

    #[tokio::test]
    async fn snapshot_calls_with_another_message_kind_are_refused() {
        let store = Arc::new(MemSnapshotStore::new());
        let (tx, _rx) = mpsc::channel(1);
        let inbox = PeerInbox::new(tx, store);
        let timeout_now = Message {
            from: NodeId(2),
            to: NodeId(1),
            term: Term(1),
            body: MessageBody::TimeoutNow,
        };
        let offset = inbox.snapshot_offset(&timeout_now).await;
        assert!(matches!(offset, Err(SnapshotRejected::NotInstallSnapshot)));
        let chunk = inbox
            .snapshot_chunk(&timeout_now, 0, Bytes::from_static(b"x"), Some(0))
            .await;
        assert!(matches!(chunk, Err(SnapshotRejected::NotInstallSnapshot)));
    }
}
