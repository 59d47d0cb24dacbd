//! The transport's knobs. Every bound carries its unit in its name, and
//! each default is written once, here.

use std::time::Duration;

use keel_raft::NodeId;

use crate::tls::PeerTls;

/// The wire protocol version this build speaks; a peer sending another is
/// refused before anything it sent is decoded.
pub const PROTOCOL_VERSION: u32 = 1;

/// Configuration of one node's transport: who it is, and its
/// [`TransportTuning`]. Start from [`TransportConfig::new`] and adjust.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportConfig {
    /// Traffic stamped with another cluster id is refused.
    pub cluster_id: u64,
    /// This node's id, stamped on everything it sends.
    pub node_id: NodeId,
    /// Where peers reach this node ("host:port"); sent in every header so a
    /// receiver can answer a node it was never told about.
    pub advertise_addr: String,
    /// TLS on the peer listener and on every channel to a peer; `None`:
    /// plain TCP. With TLS, a peer whose certificate the server side
    /// refuses never reaches a service; the identity check still runs for
    /// those it admits.
    pub tls: Option<PeerTls>,
    /// Queue bounds, batch sizes and timeouts.
    pub tuning: TransportTuning,
}

/// The transport's bounds and timeouts, which an embedding application
/// (the runtime's `Config`) carries as they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportTuning {
    /// Messages waiting for one peer's stream. A full queue drops new
    /// messages (Raft retries), so a slow or dead peer costs bounded memory.
    pub peer_queue_msgs_max: usize,
    /// Messages gathered into one stream write.
    pub batch_msgs_max: usize,
    /// Encoded bytes gathered into one stream write; a single larger
    /// message still goes, alone.
    pub batch_bytes_max: usize,
    /// The largest gRPC message accepted or sent.
    pub grpc_message_bytes_max: usize,
    /// Deadline for establishing a connection to a peer.
    pub connect_timeout: Duration,
    /// Deadline of a unary call (votes, snapshot offset queries).
    pub rpc_timeout: Duration,
    /// Wait before reconnecting after a failure; doubles up to
    /// `reconnect_backoff_max`.
    pub reconnect_backoff_min: Duration,
    /// The longest wait between reconnect attempts.
    pub reconnect_backoff_max: Duration,
    /// Bytes of snapshot data per chunk.
    pub snapshot_chunk_bytes: usize,
    /// Vote calls in flight to one peer; more are dropped (elections retry).
    pub votes_inflight_max: usize,
}

/// Why a [`TransportTuning`] cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TuningError {
    /// A count or size bound is zero.
    #[error("transport {field} must be at least 1")]
    Zero {
        /// The name of the zero field of [`TransportTuning`].
        field: &'static str,
    },
    /// The reconnect backoff bounds are zero or out of order.
    #[error(
        "transport reconnect_backoff_min ({min:?}) must be positive and at most reconnect_backoff_max ({max:?})"
    )]
    Backoff {
        /// The configured `reconnect_backoff_min`.
        min: Duration,
        /// The configured `reconnect_backoff_max`.
        max: Duration,
    },
}

impl Default for TransportTuning {
    /// Bounds for a LAN: 4096 queued messages per peer, 4 MiB stream
    /// writes, 1 MiB snapshot chunks, 64 MiB gRPC messages.
    fn default() -> Self {
        TransportTuning {
            peer_queue_msgs_max: 4096,
            batch_msgs_max: 256,
            batch_bytes_max: 4 * 1024 * 1024,
            grpc_message_bytes_max: 64 * 1024 * 1024,
            connect_timeout: Duration::from_secs(1),
            rpc_timeout: Duration::from_secs(2),
            reconnect_backoff_min: Duration::from_millis(20),
            reconnect_backoff_max: Duration::from_secs(1),
            snapshot_chunk_bytes: 1024 * 1024,
            votes_inflight_max: 16,
        }
    }
}

impl TransportTuning {
    /// Checks that every bound admits some traffic.
    pub fn validate(&self) -> Result<(), TuningError> {
        let bounds = [
            ("peer_queue_msgs_max", self.peer_queue_msgs_max),
            ("batch_msgs_max", self.batch_msgs_max),
            ("batch_bytes_max", self.batch_bytes_max),
            ("grpc_message_bytes_max", self.grpc_message_bytes_max),
            ("snapshot_chunk_bytes", self.snapshot_chunk_bytes),
            ("votes_inflight_max", self.votes_inflight_max),
        ];
        if let Some(&(field, _)) = bounds.iter().find(|(_, v)| *v == 0) {
            return Err(TuningError::Zero { field });
        }
        if self.reconnect_backoff_min.is_zero()
            || self.reconnect_backoff_min > self.reconnect_backoff_max
        {
            return Err(TuningError::Backoff {
                min: self.reconnect_backoff_min,
                max: self.reconnect_backoff_max,
            });
        }
        Ok(())
    }
}

impl TransportConfig {
    /// Node `node_id` of cluster `cluster_id`, reachable at
    /// `advertise_addr`, with the default [`TransportTuning`] and no TLS.
    pub fn new(cluster_id: u64, node_id: NodeId, advertise_addr: impl Into<String>) -> Self {
        TransportConfig {
            cluster_id,
            node_id,
            advertise_addr: advertise_addr.into(),
            tls: None,
            tuning: TransportTuning::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_tuning_is_valid_and_a_zero_bound_is_named() {
        assert_eq!(TransportTuning::default().validate(), Ok(()));
        let tuning = TransportTuning {
            batch_msgs_max: 0,
            ..TransportTuning::default()
        };
        assert_eq!(
            tuning.validate(),
            Err(TuningError::Zero {
                field: "batch_msgs_max"
            })
        );
    }
}
