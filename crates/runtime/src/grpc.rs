//! The default [`Transport`]: Keel's gRPC transport (`keel-transport`).
//! Every call but the snapshot's forwards to the inherent method of the
//! same name, so a message costs the same as before the trait existed.

use keel_raft::{Message, NodeId};
use keel_transport::{SendError, TransportMetrics};

use crate::snapshot::SnapshotSource;
use crate::transport::{SnapshotTransfer, Transport};

/// The gRPC transport, as the node drives it.
pub(crate) type GrpcTransport = keel_transport::Transport;

impl Transport for GrpcTransport {
    fn send(&self, message: Message) -> Result<(), SendError> {
        GrpcTransport::send(self, message)
    }

    fn send_snapshot(&self, message: Message, snapshot: SnapshotSource) -> SnapshotTransfer {
        let transport = self.clone();
        Box::pin(async move {
            let checksum = snapshot.checksum();
            let open = move |offset| Ok(snapshot.into_reader(offset));
            GrpcTransport::send_snapshot(&transport, message, checksum, open).await
        })
    }

    fn set_peer(&self, id: NodeId, addr: String) {
        GrpcTransport::set_peer(self, id, addr);
    }

    fn metrics(&self) -> TransportMetrics {
        GrpcTransport::metrics(self)
    }

    /// The server is stopped apart, by the node (it owns the listener).
    fn close(&self) {
        self.clear_peers();
    }
}
