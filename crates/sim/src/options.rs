//! What a run is asked to do, and the parameters drawn from its seed.

use std::fmt;
use std::str::FromStr;

use keel_raft::{Config, NodeId};

use crate::faults::FaultSet;
use crate::rng::Rng;

/// Which schedule of faults a run follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Profile {
    /// Every enabled fault class, at random moments, in a mix drawn from
    /// the seed.
    #[default]
    Random,
    /// Rounds of Figure 8 of the Raft paper (`figure8.rs`): partitions
    /// chosen around the current leaders at the moments that matter, on a
    /// cluster of 3 or 5 that ships one entry per message. Only network,
    /// disk and snapshot faults join in at random.
    Figure8,
    /// Rounds of a split vote whose voter crashes right after granting
    /// (`vote_crash.rs`): three nodes, no pre-vote, no check-quorum. Only
    /// network, disk and snapshot faults join in at random.
    VoteCrash,
    /// Rounds of a joint configuration change proposed while a majority of
    /// the outgoing voters is cut off from the leader (`joint_lag.rs`):
    /// five nodes. Only network, disk and snapshot faults join in at
    /// random.
    JointLag,
    /// Rounds of a leader cut off from every other node while some
    /// clients keep reading from it (`isolated_leader.rs`): 3 or 5 nodes,
    /// check-quorum on. Only network, disk and snapshot faults join in at
    /// random.
    IsolatedLeader,
}

impl Profile {
    /// Every profile, in the order the command line lists them.
    pub const ALL: [Profile; 5] = [
        Profile::Random,
        Profile::Figure8,
        Profile::VoteCrash,
        Profile::JointLag,
        Profile::IsolatedLeader,
    ];

    fn name(self) -> &'static str {
        match self {
            Profile::Random => "random",
            Profile::Figure8 => "figure8",
            Profile::VoteCrash => "vote-crash",
            Profile::JointLag => "joint-lag",
            Profile::IsolatedLeader => "isolated-leader",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `--profile` value that names no profile.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown profile {0:?}; use one of: {names}", names = Profile::ALL.map(Profile::name).join(", "))]
pub struct UnknownProfile(String);

impl FromStr for Profile {
    type Err = UnknownProfile;

    fn from_str(s: &str) -> Result<Profile, UnknownProfile> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == s.trim())
            .ok_or_else(|| UnknownProfile(s.to_owned()))
    }
}

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
    /// The fault classes on.
    pub faults: FaultSet,
    /// The run's scenario.
    pub profile: Profile,
    /// Length of the safety phase (faults on), in ticks.
    pub safety_ticks: u64,
    /// Length of the heal phase (faults off, liveness checked), in ticks.
    pub heal_ticks: u64,
    /// Print every event as it happens.
    pub echo_trace: bool,
    /// Events kept for the failure report.
    pub trace_tail: usize,
    /// Deliberate mistakes in how the simulator drives the core, for the
    /// teeth tests.
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
            profile: Profile::Random,
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

    /// The Figure 8 profile's overrides, drawn from their own stream so
    /// that the other parameters of a seed stay as the random profile
    /// draws them: 3 or 5 voters (a round needs a minority of at least
    /// one and a majority the second leader can complete), and mostly one
    /// entry per AppendEntries, so that a follower catching up acknowledges
    /// an old term's entry before the new leader's own.
    pub fn figure8(&mut self, rng: &mut Rng, options: &SimOptions) {
        self.nodes = options.nodes.unwrap_or_else(|| *rng.pick(&[3, 5]));
        self.max_msg_bytes = *rng.pick(&[1, 1, 1, 64]);
    }

    /// The vote-crash profile's overrides: three nodes, so that one voter
    /// decides a split vote, and neither pre-vote nor check-quorum, whose
    /// leader lease would make a restarted node wait an election timeout
    /// before voting again.
    pub fn vote_crash(&mut self, options: &SimOptions) {
        self.nodes = options.nodes.unwrap_or(3);
        self.pre_vote = false;
        self.check_quorum = false;
    }

    /// The joint-lag profile's overrides: five nodes, so that a majority
    /// of the old voters can lag behind a partition while the rest is a
    /// majority of a new configuration of at least three voters.
    pub fn joint_lag(&mut self, options: &SimOptions) {
        self.nodes = options.nodes.unwrap_or(5);
    }

    /// The isolated-leader profile's overrides: check-quorum on (the rule
    /// under test, and the lease's premise), 3 or 5 nodes, at least three
    /// clients so that some read from the isolated leader while others
    /// write through the majority, and one or two keys so that they meet.
    pub fn isolated_leader(&mut self, rng: &mut Rng, options: &SimOptions) {
        self.nodes = options.nodes.unwrap_or_else(|| *rng.pick(&[3, 5]));
        self.check_quorum = true;
        self.clients = rng.between(3, 5) as usize;
        self.keys = rng.between(1, 2) as usize;
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
