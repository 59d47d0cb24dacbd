//! The node's configuration. Every bound carries its unit in its name.
//!
//! The node's `Config` composes the configurations of the layers it
//! drives — the core's [`keel_raft::Config`], the transport's
//! [`TransportTuning`], the log store's [`LogConfig`] — and adds only what
//! the runtime itself owns: the tick, its queues, snapshots and timeouts.
//! Each default is written once, in the layer that owns the setting.

use std::net::SocketAddr;
use std::time::Duration;

use keel_raft::NodeId;
use keel_storage::{InvalidLogConfig, LogConfig};
use keel_transport::tls::PeerTls;
use keel_transport::{TransportConfig, TransportTuning, TuningError};

/// The default logical clock tick. With the core's default tick counts
/// ([`keel_raft::HEARTBEAT_TICKS_DEFAULT`],
/// [`keel_raft::ELECTION_TICKS_DEFAULT`]) it gives
/// [`HEARTBEAT_INTERVAL_DEFAULT`] and [`ELECTION_TIMEOUT_DEFAULT`].
pub const TICK_INTERVAL_DEFAULT: Duration = Duration::from_millis(40);

/// A leader's heartbeat period with the default tick and tick counts.
pub const HEARTBEAT_INTERVAL_DEFAULT: Duration =
    TICK_INTERVAL_DEFAULT.saturating_mul(keel_raft::HEARTBEAT_TICKS_DEFAULT);

/// The shortest election timeout with the default tick and tick counts
/// (a follower waits a random time up to twice as long): a lost leader is
/// replaced within about a second.
pub const ELECTION_TIMEOUT_DEFAULT: Duration =
    TICK_INTERVAL_DEFAULT.saturating_mul(keel_raft::ELECTION_TICKS_DEFAULT);

/// Take a snapshot (and compact the log) after this many applied entries
/// by default (etcd's `--snapshot-count` default).
pub const SNAPSHOT_ENTRIES_DEFAULT: u64 = 100_000;

/// The default deadline of reads and leadership transfers.
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);

/// Configuration of one node. Start from [`Config::new`]; the defaults work
/// for a cluster on a LAN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The core's settings: this node's id, election and heartbeat ticks,
    /// pre-vote, check-quorum, replication window, election seed.
    pub raft: keel_raft::Config,
    /// Every node of a cluster has the same id; traffic from another
    /// cluster is refused.
    pub cluster_id: u64,
    /// The address to listen on for peers; port 0 picks a free port
    /// (see [`crate::Node::addr`]).
    pub listen_addr: SocketAddr,
    /// The address peers should use for this node, if not the bound one
    /// (e.g. behind NAT, or when listening on 0.0.0.0).
    pub advertise_addr: Option<String>,
    /// Start uninitialized, instead of bootstrapping a new cluster from
    /// the `peers` given to [`crate::Node::start`]: the node knows no
    /// configuration and waits, either to be added to an existing cluster
    /// (a leader's [`crate::Node::add_learner`]) or to found a new one
    /// ([`crate::Node::initialize`], the explicit bootstrap). Ignored when
    /// the data directory holds state.
    pub join: bool,
    /// On a restart, make this node the only voter of its cluster before
    /// it starts (etcd's `--force-new-cluster`), to recover a cluster that
    /// lost its quorum for good: [`crate::Storage::recover`] with this
    /// member alone, at start. Unsafe: see there.
    pub force_new_cluster: bool,
    /// One logical clock tick; the core counts its timeouts in ticks.
    pub tick_interval: Duration,
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
    /// Published snapshots kept in the snapshot store: the node prunes the
    /// store to this many after each publish (a store never prunes by
    /// itself).
    pub snapshots_kept: usize,
    /// After this node loses leadership, a pending proposal whose entry was
    /// not applied within this time fails with
    /// [`crate::Error::OutcomeUnknown`].
    pub unknown_outcome_timeout: Duration,
    /// Reads and leadership transfers give up after this long.
    pub request_timeout: Duration,
    /// How the built-in write-ahead log sizes and preallocates its segments.
    pub log: LogConfig,
    /// Batching, buffering and timeouts of the connections to peers.
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

/// Why a [`Config`] cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The Raft core's settings are inconsistent.
    #[error(transparent)]
    Raft(#[from] keel_raft::ConfigError),
    /// The transport's tuning is out of range.
    #[error(transparent)]
    Transport(#[from] TuningError),
    /// The log's settings are out of range.
    #[error(transparent)]
    Log(#[from] InvalidLogConfig),
    /// A count or size that must be positive is 0.
    #[error("{field} must be at least 1")]
    Zero {
        /// The setting's name in [`Config`].
        field: &'static str,
    },
    /// Ticks shorter than a millisecond would spin the node's loop.
    #[error("tick_interval must be at least 1 ms")]
    TickTooShort,
}

impl Config {
    /// Defaults for node `id` of cluster `cluster_id`, listening on
    /// `listen_addr`: the core's defaults counted in
    /// [`TICK_INTERVAL_DEFAULT`] ticks (heartbeats every
    /// [`HEARTBEAT_INTERVAL_DEFAULT`], elections after
    /// [`ELECTION_TIMEOUT_DEFAULT`]), snapshots every
    /// [`SNAPSHOT_ENTRIES_DEFAULT`] entries.
    pub fn new(id: NodeId, cluster_id: u64, listen_addr: SocketAddr) -> Config {
        Config {
            raft: keel_raft::Config::new(id),
            cluster_id,
            listen_addr,
            advertise_addr: None,
            join: false,
            force_new_cluster: false,
            tick_interval: TICK_INTERVAL_DEFAULT,
            request_queue_max: 16 * 1024,
            pending_proposals_max: 64 * 1024,
            batch_requests_max: 1024,
            inbox_batches_max: 1024,
            storage_queue_max: 256,
            apply_queue_max: 1024,
            snapshot_entries: SNAPSHOT_ENTRIES_DEFAULT,
            snapshots_kept: 2,
            unknown_outcome_timeout: Duration::from_secs(2),
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            log: LogConfig::default(),
            transport: TransportTuning::default(),
            peer_tls: None,
            #[cfg(feature = "fault-injection")]
            bugs: RuntimeBugs::default(),
        }
    }

    /// This node's id (the core's).
    pub fn id(&self) -> NodeId {
        self.raft.id
    }

    /// How often a leader sends heartbeats, in time.
    pub fn heartbeat_interval(&self) -> Duration {
        self.tick_interval.saturating_mul(self.raft.heartbeat_ticks)
    }

    /// The shortest election timeout, in time (followers wait a random
    /// time up to twice as long).
    pub fn election_timeout(&self) -> Duration {
        self.tick_interval.saturating_mul(self.raft.election_ticks)
    }

    /// The transport's configuration, advertising `advertise_addr`.
    pub(crate) fn transport_config(&self, advertise_addr: String) -> TransportConfig {
        TransportConfig {
            tls: self.peer_tls.clone(),
            tuning: self.transport.clone(),
            ..TransportConfig::new(self.cluster_id, self.raft.id, advertise_addr)
        }
    }

    /// Checks the relations between fields, each layer's by its own rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.raft.validate()?;
        self.transport.validate()?;
        self.log.validate()?;
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

    /// The runtime restates none of its layers' defaults: the core's tick
    /// counts, the transport's tuning and the log's are theirs, and the
    /// times in the constants are those counts of the default tick.
    #[test]
    fn defaults_are_the_owning_layers_defaults() {
        let config = Config::new(NodeId(1), 1, "127.0.0.1:0".parse().unwrap());
        assert_eq!(config.raft, keel_raft::Config::new(NodeId(1)));
        assert_eq!(config.transport, TransportTuning::default());
        assert_eq!(config.log, LogConfig::default());
        assert_eq!(config.tick_interval, TICK_INTERVAL_DEFAULT);
        assert_eq!(
            config.election_timeout(),
            TICK_INTERVAL_DEFAULT * keel_raft::ELECTION_TICKS_DEFAULT
        );
        assert_eq!(config.election_timeout(), ELECTION_TIMEOUT_DEFAULT);
        assert_eq!(config.heartbeat_interval(), HEARTBEAT_INTERVAL_DEFAULT);
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
