//! The node's configuration. Every bound carries its unit in its name.

use std::net::SocketAddr;
use std::time::Duration;

use keel_raft::NodeId;
use keel_storage::LogConfig;
use keel_transport::TransportConfig;
use keel_transport::tls::PeerTls;

/// Configuration of one node. Start from [`Config::new`]; the defaults work
/// for a cluster on a LAN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub id: NodeId,
    /// Every node of a cluster has the same id; traffic from another
    /// cluster is refused.
    pub cluster_id: u64,
    /// The address to listen on for peers; port 0 picks a free port
    /// (see [`crate::Node::addr`]).
    pub listen_addr: SocketAddr,
    /// The address peers should use for this node, if not the bound one
    /// (e.g. behind NAT, or when listening on 0.0.0.0).
    pub advertise_addr: Option<String>,
    /// Start as a node waiting to be added to an existing cluster, instead
    /// of bootstrapping a new cluster from the `peers` given to
    /// [`crate::Node::start`]. Ignored when the data directory holds state.
    pub join: bool,
    /// On a restart, make this node the only voter of its cluster before
    /// it starts (etcd's `--force-new-cluster`), to recover a cluster that
    /// lost its quorum for good. Unsafe: see `restore.rs`,
    /// `force_single_voter`.
    pub force_new_cluster: bool,
    /// One logical clock tick; timeouts below are counted in ticks.
    pub tick_interval: Duration,
    /// A follower campaigns after a random timeout in
    /// `[election_ticks, 2 * election_ticks)` without hearing from a leader.
    pub election_ticks: u32,
    /// A leader sends heartbeats every `heartbeat_ticks`.
    pub heartbeat_ticks: u32,
    pub pre_vote: bool,
    /// Leaders that lose contact with a quorum step down; needed for
    /// lease reads.
    pub check_quorum: bool,
    /// AppendEntries in flight to one follower (pipelining window).
    pub max_inflight_msgs: usize,
    /// Entry bytes in one AppendEntries.
    pub max_msg_bytes: u64,
    /// Requests (proposals, reads, changes) queued for the node's task; a
    /// full queue answers [`crate::Error::Overloaded`].
    pub request_queue_max: usize,
    /// Proposals appended but not yet applied; more are refused with
    /// [`crate::Error::Overloaded`].
    pub pending_proposals_max: usize,
    /// Requests taken from the queue per turn of the node's loop, which is
    /// also the most proposals batched into one append.
    pub batch_requests_max: usize,
    /// Inbound message batches waiting for the node's task; more are
    /// dropped (Raft resends).
    pub inbox_batches_max: usize,
    /// Write batches waiting for the storage thread (group commit takes all
    /// of them in one fsync).
    pub storage_queue_max: usize,
    /// Apply batches waiting for the state machine.
    pub apply_queue_max: usize,
    /// Take a snapshot once this many entries were applied since the last.
    /// With `snapshots_kept` ≥ 2 the log is compacted to the snapshot
    /// before the newest, so it holds between one and two intervals.
    pub snapshot_entries: u64,
    /// Snapshots kept on disk.
    pub snapshots_kept: usize,
    /// After this node loses leadership, a pending proposal whose entry was
    /// not applied within this time fails with
    /// [`crate::Error::OutcomeUnknown`].
    pub unknown_outcome_timeout: Duration,
    /// Reads and leadership transfers give up after this long.
    pub request_timeout: Duration,
    /// Seeds election timeouts; the node id by default.
    pub seed: u64,
    pub log: LogConfig,
    pub transport: TransportTuning,
    /// TLS between members (the peer listener and every channel to a
    /// peer); `None`: plain TCP. See [`keel_transport::tls`].
    pub peer_tls: Option<PeerTls>,
    /// Deliberate defects, so that tests can show the simulator catches
    /// them. Never on outside tests.
    #[cfg(feature = "fault-injection")]
    pub bugs: RuntimeBugs,
}

/// Defects the node loop can be built with, each one a way a Raft runtime
/// goes wrong around a correct core.
#[cfg(feature = "fault-injection")]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimeBugs {
    /// Send votes and append acknowledgements before their write batch is
    /// durable (§5.2 requires them after).
    pub ack_before_fsync: bool,
    /// Count one tick per timer firing instead of per interval of elapsed
    /// time: a stalled loop's lease outlives real time (§6.4.1).
    pub tick_per_timer: bool,
}

/// The transport's bounds; see [`TransportConfig`] for their meaning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportTuning {
    pub peer_queue_msgs_max: usize,
    pub batch_msgs_max: usize,
    pub batch_bytes_max: usize,
    pub connect_timeout: Duration,
    pub rpc_timeout: Duration,
    pub reconnect_backoff_min: Duration,
    pub reconnect_backoff_max: Duration,
    pub snapshot_chunk_bytes: usize,
}

impl Default for TransportTuning {
    fn default() -> Self {
        let t = TransportConfig::new(0, NodeId(1), "");
        TransportTuning {
            peer_queue_msgs_max: t.peer_queue_msgs_max,
            batch_msgs_max: t.batch_msgs_max,
            batch_bytes_max: t.batch_bytes_max,
            connect_timeout: t.connect_timeout,
            rpc_timeout: t.rpc_timeout,
            reconnect_backoff_min: t.reconnect_backoff_min,
            reconnect_backoff_max: t.reconnect_backoff_max,
            snapshot_chunk_bytes: t.snapshot_chunk_bytes,
        }
    }
}

/// Why a [`Config`] cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Raft(#[from] keel_raft::ConfigError),
    #[error("{field} must be at least 1")]
    Zero { field: &'static str },
    #[error("tick_interval must be at least 1 ms")]
    TickTooShort,
}

impl Config {
    /// Defaults for node `id` of cluster `cluster_id`, listening on
    /// `listen_addr`: 10 ms ticks, elections after 150–300 ms, heartbeats
    /// every 30 ms, snapshots every 10,000 entries.
    pub fn new(id: NodeId, cluster_id: u64, listen_addr: SocketAddr) -> Config {
        Config {
            id,
            cluster_id,
            listen_addr,
            advertise_addr: None,
            join: false,
            tick_interval: Duration::from_millis(10),
            election_ticks: 15,
            heartbeat_ticks: 3,
            force_new_cluster: false,
            pre_vote: true,
            check_quorum: true,
            max_inflight_msgs: 256,
            max_msg_bytes: 1024 * 1024,
            request_queue_max: 16 * 1024,
            pending_proposals_max: 64 * 1024,
            batch_requests_max: 1024,
            inbox_batches_max: 1024,
            storage_queue_max: 256,
            apply_queue_max: 1024,
            snapshot_entries: 10_000,
            snapshots_kept: 2,
            unknown_outcome_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            seed: id.0,
            log: LogConfig::default(),
            transport: TransportTuning::default(),
            peer_tls: None,
            #[cfg(feature = "fault-injection")]
            bugs: RuntimeBugs::default(),
        }
    }

    /// The core's configuration.
    pub fn raft(&self) -> keel_raft::Config {
        keel_raft::Config {
            election_ticks: self.election_ticks,
            heartbeat_ticks: self.heartbeat_ticks,
            pre_vote: self.pre_vote,
            check_quorum: self.check_quorum,
            max_inflight_msgs: self.max_inflight_msgs,
            max_msg_bytes: self.max_msg_bytes,
            seed: self.seed,
            ..keel_raft::Config::new(self.id)
        }
    }

    /// The transport's configuration, advertising `advertise_addr`.
    pub(crate) fn transport(&self, advertise_addr: String) -> TransportConfig {
        let t = &self.transport;
        TransportConfig {
            peer_queue_msgs_max: t.peer_queue_msgs_max,
            batch_msgs_max: t.batch_msgs_max,
            batch_bytes_max: t.batch_bytes_max,
            connect_timeout: t.connect_timeout,
            rpc_timeout: t.rpc_timeout,
            reconnect_backoff_min: t.reconnect_backoff_min,
            reconnect_backoff_max: t.reconnect_backoff_max,
            snapshot_chunk_bytes: t.snapshot_chunk_bytes,
            tls: self.peer_tls.clone(),
            ..TransportConfig::new(self.cluster_id, self.id, advertise_addr)
        }
    }

    /// Checks the relations between fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.raft().validate()?;
        if self.tick_interval < Duration::from_millis(1) {
            return Err(ConfigError::TickTooShort);
        }
        let bounds = [
            ("request_queue_max", self.request_queue_max),
            ("pending_proposals_max", self.pending_proposals_max),
            ("batch_requests_max", self.batch_requests_max),
            ("inbox_batches_max", self.inbox_batches_max),
            ("storage_queue_max", self.storage_queue_max),
            ("apply_queue_max", self.apply_queue_max),
            ("snapshots_kept", self.snapshots_kept),
            ("snapshot_entries", self.snapshot_entries as usize),
            ("peer_queue_msgs_max", self.transport.peer_queue_msgs_max),
            ("batch_msgs_max", self.transport.batch_msgs_max),
            ("snapshot_chunk_bytes", self.transport.snapshot_chunk_bytes),
        ];
        match bounds.iter().find(|(_, v)| *v == 0) {
            Some(&(field, _)) => Err(ConfigError::Zero { field }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let config = Config::new(NodeId(1), 1, "127.0.0.1:0".parse().unwrap());
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn zero_bound_is_refused() {
        let config = Config {
            pending_proposals_max: 0,
            ..Config::new(NodeId(1), 1, "127.0.0.1:0".parse().unwrap())
        };
        assert_eq!(
            config.validate(),
            Err(ConfigError::Zero {
                field: "pending_proposals_max"
            })
        );
    }
}
