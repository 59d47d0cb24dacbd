//! What a run is asked to do, and the parameters drawn from its seed.

use keel_raft::{Config, NodeId};

use crate::faults::FaultSet;
use crate::rng::Rng;

/// Broken-caller switches: the simulator misusing a correct core, to show
/// that the invariants notice.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallerBugs {
    /// Send `persisted_messages` and report `persisted` before the fsync
    /// completes, so a crash can lose acknowledged entries.
    pub ack_before_fsync: bool,
    /// Answer reads from the local state machine at once, without asking
    /// the core to confirm them (stale reads).
    pub stale_reads: bool,
    /// Store the hard state without its vote, so a restarted node may
    /// vote twice in one term.
    pub forget_votes: bool,
}

/// Options for one run.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Cluster size; drawn from {3, 5, 7} when `None`.
    pub nodes: Option<usize>,
    pub faults: FaultSet,
    /// Length of the safety phase (faults on), in ticks.
    pub safety_ticks: u64,
    /// Length of the heal phase (faults off, liveness checked), in ticks.
    pub heal_ticks: u64,
    /// Print every event as it happens.
    pub echo_trace: bool,
    /// Events kept for the failure report.
    pub trace_tail: usize,
    pub caller_bugs: CallerBugs,
    /// Crashes keep a Ready's writes all or nothing, as a store that
    /// writes each Ready as one record would; by default any prefix of
    /// them (and a torn entry batch) survives.
    pub atomic_ready_writes: bool,
    /// Broken-core switches, passed to every node's `Config`.
    #[cfg(feature = "core-bugs")]
    pub core_bugs: keel_raft::Bugs,
}

impl Default for SimOptions {
    fn default() -> SimOptions {
        SimOptions {
            nodes: None,
            faults: FaultSet::all(),
            safety_ticks: 600,
            heal_ticks: 250,
            echo_trace: false,
            trace_tail: 80,
            caller_bugs: CallerBugs::default(),
            atomic_ready_writes: false,
            #[cfg(feature = "core-bugs")]
            core_bugs: keel_raft::Bugs::default(),
        }
    }
}

/// The parameters of a run, drawn from its seed.
#[derive(Clone, Debug)]
pub struct RunParams {
    pub nodes: usize,
    pub clients: usize,
    pub keys: usize,
    pub heartbeat_ticks: u32,
    pub pre_vote: bool,
    pub check_quorum: bool,
    pub max_inflight_msgs: usize,
    pub max_msg_bytes: u64,
    /// A node compacts once it holds this many entries past its snapshot.
    pub compact_after_entries: u64,
    /// Ticks a client waits for a reply.
    pub client_timeout_ticks: u64,
    #[cfg(feature = "core-bugs")]
    pub core_bugs: keel_raft::Bugs,
}

impl RunParams {
    pub fn draw(rng: &mut Rng, options: &SimOptions) -> RunParams {
        RunParams {
            nodes: options.nodes.unwrap_or_else(|| *rng.pick(&[3, 5, 5, 7])),
            clients: rng.between(2, 5) as usize,
            keys: rng.between(1, 4) as usize,
            heartbeat_ticks: *rng.pick(&[1, 1, 2, 3]),
            pre_vote: !rng.chance(150),
            check_quorum: !rng.chance(150),
            max_inflight_msgs: *rng.pick(&[1, 4, 64]),
            max_msg_bytes: *rng.pick(&[64, 512, 1 << 20]),
            compact_after_entries: rng.between(10, 150),
            client_timeout_ticks: rng.between(20, 60),
            #[cfg(feature = "core-bugs")]
            core_bugs: options.core_bugs.clone(),
        }
    }

    /// The core's configuration for node `id` in its `incarnation`.
    pub fn config(&self, id: NodeId, seed: u64, incarnation: u64) -> Config {
        Config {
            heartbeat_ticks: self.heartbeat_ticks,
            pre_vote: self.pre_vote,
            check_quorum: self.check_quorum,
            max_inflight_msgs: self.max_inflight_msgs,
            max_msg_bytes: self.max_msg_bytes,
            seed: seed ^ id.0.wrapping_mul(0x9e37_79b9) ^ incarnation.wrapping_mul(0x85eb_ca6b),
            #[cfg(feature = "core-bugs")]
            bugs: self.core_bugs.clone(),
            ..Config::new(id)
        }
    }
}
