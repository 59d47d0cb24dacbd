//! Which faults a run injects, and how often: everything drawn from the
//! seed. The simulation loop carries each fault out; this module decides
//! what comes next and how partitions are shaped.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use keel_raft::NodeId;

use crate::rng::Rng;

/// Classes of faults that can be switched on and off from the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultClass {
    /// Loss, duplication, delay and reordering of messages.
    Network,
    /// Cutting members off from each other, whole or one way.
    Partition,
    /// Killing members, losing their unsynced writes, and restarting them.
    Crash,
    /// Freezing members for a while, clocks and all.
    Pause,
    /// Slow fsyncs.
    Disk,
    /// Adding, promoting, removing and replacing members.
    Membership,
    /// Leadership transfers.
    Transfer,
    /// Snapshots taken out of turn, and followers fed by snapshot.
    Snapshot,
}

impl FaultClass {
    /// Every class, in the order the command line lists them.
    pub const ALL: [FaultClass; 8] = [
        FaultClass::Network,
        FaultClass::Partition,
        FaultClass::Crash,
        FaultClass::Pause,
        FaultClass::Disk,
        FaultClass::Membership,
        FaultClass::Transfer,
        FaultClass::Snapshot,
    ];

    fn name(self) -> &'static str {
        match self {
            FaultClass::Network => "network",
            FaultClass::Partition => "partition",
            FaultClass::Crash => "crash",
            FaultClass::Pause => "pause",
            FaultClass::Disk => "disk",
            FaultClass::Membership => "membership",
            FaultClass::Transfer => "transfer",
            FaultClass::Snapshot => "snapshot",
        }
    }
}

/// The fault classes enabled for a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultSet(BTreeSet<FaultClass>);

impl FaultSet {
    /// Every class on.
    pub fn all() -> FaultSet {
        FaultSet(FaultClass::ALL.into_iter().collect())
    }

    /// No faults at all.
    pub fn none() -> FaultSet {
        FaultSet(BTreeSet::new())
    }

    /// Whether `class` is on.
    pub fn contains(&self, class: FaultClass) -> bool {
        self.0.contains(&class)
    }

    /// The classes of this set that are among `keep`.
    pub fn only(&self, keep: &[FaultClass]) -> FaultSet {
        FaultSet(
            self.0
                .iter()
                .copied()
                .filter(|c| keep.contains(c))
                .collect(),
        )
    }
}

/// A `--faults` value that names no fault class.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown fault class {0:?}; use all, none, or a comma-separated list of: {names}", names = FaultClass::ALL.map(FaultClass::name).join(", "))]
pub struct UnknownFaultClass(String);

impl FromStr for FaultSet {
    type Err = UnknownFaultClass;

    /// `all`, `none`, or a comma-separated list such as `crash,partition`.
    fn from_str(s: &str) -> Result<FaultSet, UnknownFaultClass> {
        match s {
            "all" => return Ok(FaultSet::all()),
            "none" => return Ok(FaultSet::none()),
            _ => {}
        }
        let mut set = BTreeSet::new();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let class = FaultClass::ALL
                .into_iter()
                .find(|c| c.name() == name)
                .ok_or_else(|| UnknownFaultClass(name.to_owned()))?;
            set.insert(class);
        }
        Ok(FaultSet(set))
    }
}

impl fmt::Display for FaultSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|c| c.name()).collect();
        f.write_str(&names.join(","))
    }
}

/// Every kind of fault injected, for the run summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// A message dropped.
    MessageLost,
    /// A message delivered twice.
    MessageDuplicated,
    /// A message held back, so that later ones overtake it.
    MessageDelayed,
    /// Two groups that cannot reach each other.
    PartitionSymmetric,
    /// Messages lost in one direction only.
    PartitionOneWay,
    /// A minority cut off from the rest.
    PartitionMinority,
    /// The leader cut off from everyone.
    PartitionLeaderIsolated,
    /// Two groups that reach each other only through one member.
    PartitionBridge,
    /// A member killed, its unsynced writes lost.
    Crash,
    /// A crash that also tore the last record it was writing.
    CrashTornTail,
    /// Every member killed at once.
    CrashAll,
    /// A member frozen for a while.
    Pause,
    /// A member's fsyncs made slow.
    SlowDisk,
    /// A learner added.
    AddLearner,
    /// A learner promoted to voter.
    Promote,
    /// A voter added directly, without a learner's catch-up first.
    AddVoter,
    /// A member removed.
    Remove,
    /// A voter replaced: a new learner added and promoted, a voter removed.
    Replace,
    /// Several changes at once, through a joint configuration.
    Joint,
    /// A leadership transfer started.
    Transfer,
    /// A snapshot taken out of turn, and the log compacted behind it.
    Snapshot,
    /// A Figure 8 round began: a leader with an uncommitted entry and a
    /// minority around it were cut off.
    Figure8Round,
    /// A Figure 8 round reached its end: a fourth leader was elected by
    /// the majority that the third leader's first commit was cut from.
    Figure8Completed,
    /// A vote-crash round began: two followers campaign in one term.
    VoteCrashRound,
    /// A joint-lag round began: the leader took a joint change while the
    /// outgoing majority was cut off from it.
    JointLagRound,
    /// An isolated-leader round began: a leader was cut off from every
    /// other node while some clients kept reading from it.
    IsolatedLeaderRound,
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            FaultKind::MessageLost => "message lost",
            FaultKind::MessageDuplicated => "message duplicated",
            FaultKind::MessageDelayed => "message delayed (spike)",
            FaultKind::PartitionSymmetric => "partition: symmetric",
            FaultKind::PartitionOneWay => "partition: one-way",
            FaultKind::PartitionMinority => "partition: minority/majority",
            FaultKind::PartitionLeaderIsolated => "partition: leader isolated",
            FaultKind::PartitionBridge => "partition: bridge",
            FaultKind::Crash => "crash + restart",
            FaultKind::CrashTornTail => "crash with torn tail",
            FaultKind::CrashAll => "crash of every node",
            FaultKind::Pause => "pause",
            FaultKind::SlowDisk => "slow disk",
            FaultKind::AddLearner => "membership: add learner",
            FaultKind::Promote => "membership: promote",
            FaultKind::AddVoter => "membership: add voter",
            FaultKind::Remove => "membership: remove",
            FaultKind::Replace => "membership: replace",
            FaultKind::Joint => "membership: joint",
            FaultKind::Transfer => "leadership transfer",
            FaultKind::Snapshot => "snapshot + compaction",
            FaultKind::Figure8Round => "figure 8: round started",
            FaultKind::Figure8Completed => "figure 8: round completed",
            FaultKind::VoteCrashRound => "vote crash: split vote started",
            FaultKind::JointLagRound => "joint lag: change behind a cut",
            FaultKind::IsolatedLeaderRound => "isolated leader: leader cut off",
        })
    }
}

/// Counts of faults by kind.
pub type FaultCounts = BTreeMap<FaultKind, u64>;

/// A fault the loop should carry out now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Reshape the network's partition.
    Partition,
    /// Kill a member, for a while, if a majority stays up.
    Crash,
    /// Kill every member at once.
    CrashAll,
    /// Freeze a member.
    Pause,
    /// Slow a member's disk down.
    SlowDisk,
    /// Change the membership.
    Membership,
    /// Transfer leadership.
    Transfer,
    /// Take a snapshot now.
    Snapshot,
}

/// How often each fault strikes in one run; drawn from the seed so that
/// runs differ in character (one seed crashes a lot, another partitions).
#[derive(Clone, Debug)]
pub struct FaultPlan {
    weights: Vec<(Action, u64)>,
    /// Ticks between fault decisions.
    pub interval_ticks: (u64, u64),
}

impl FaultPlan {
    /// A plan for one run: each class in `set` with a weight from `rng`.
    pub fn draw(rng: &mut Rng, set: &FaultSet) -> FaultPlan {
        let mut weight = |class: FaultClass, base: u64| {
            if set.contains(class) && !rng.chance(150) {
                base * rng.between(1, 4)
            } else {
                0
            }
        };
        let weights = vec![
            (Action::Partition, weight(FaultClass::Partition, 6)),
            (Action::Crash, weight(FaultClass::Crash, 5)),
            (Action::CrashAll, weight(FaultClass::Crash, 1) / 2),
            (Action::Pause, weight(FaultClass::Pause, 3)),
            (Action::SlowDisk, weight(FaultClass::Disk, 2)),
            (Action::Membership, weight(FaultClass::Membership, 5)),
            (Action::Transfer, weight(FaultClass::Transfer, 2)),
            (Action::Snapshot, weight(FaultClass::Snapshot, 3)),
        ];
        let low = rng.between(3, 15);
        FaultPlan {
            weights,
            interval_ticks: (low, low * 3),
        }
    }

    /// The next fault, or `None` when every class is off.
    pub fn next(&self, rng: &mut Rng) -> Option<Action> {
        let weights: Vec<u64> = self.weights.iter().map(|&(_, w)| w).collect();
        if weights.iter().all(|&w| w == 0) {
            return None;
        }
        Some(self.weights[rng.weighted(&weights)].0)
    }
}

/// Draws a partition of `nodes` as a set of cut directed links.
pub fn partition(
    rng: &mut Rng,
    nodes: &[NodeId],
    leader: Option<NodeId>,
) -> (FaultKind, BTreeSet<(NodeId, NodeId)>) {
    let mut cut = BTreeSet::new();
    let mut cut_between = |a: &[NodeId], b: &[NodeId], both: bool| {
        for &x in a {
            for &y in b {
                cut.insert((x, y));
                if both {
                    cut.insert((y, x));
                }
            }
        }
    };
    let mut shuffled = nodes.to_vec();
    for i in (1..shuffled.len()).rev() {
        shuffled.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let n = shuffled.len();
    let kind = match rng.below(5) {
        0 => {
            let k = rng.between(1, (n as u64 - 1).max(1)) as usize;
            let (a, b) = shuffled.split_at(k);
            cut_between(a, b, true);
            FaultKind::PartitionSymmetric
        }
        1 => {
            let k = rng.between(1, (n as u64 - 1).max(1)) as usize;
            let (a, b) = shuffled.split_at(k);
            cut_between(a, b, false);
            FaultKind::PartitionOneWay
        }
        2 => {
            let k = rng.between(1, ((n as u64 - 1) / 2).max(1)) as usize;
            let (a, b) = shuffled.split_at(k);
            cut_between(a, b, true);
            FaultKind::PartitionMinority
        }
        3 => {
            let isolated = leader.unwrap_or(shuffled[0]);
            let rest: Vec<NodeId> = nodes.iter().copied().filter(|&x| x != isolated).collect();
            cut_between(&[isolated], &rest, true);
            FaultKind::PartitionLeaderIsolated
        }
        _ => {
            // Two halves that only the bridge node talks to both of.
            let rest = &shuffled[1..];
            let (a, b) = rest.split_at(rest.len() / 2);
            cut_between(a, b, true);
            FaultKind::PartitionBridge
        }
    };
    (kind, cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_sets_parse() {
        assert_eq!("all".parse::<FaultSet>(), Ok(FaultSet::all()));
        let set: FaultSet = "crash, partition".parse().unwrap();
        assert!(set.contains(FaultClass::Crash) && !set.contains(FaultClass::Pause));
        assert!("lightning".parse::<FaultSet>().is_err());
    }

    #[test]
    fn bridge_keeps_the_bridge_connected() {
        let nodes: Vec<NodeId> = (1..=5).map(NodeId).collect();
        for seed in 0..50 {
            let (kind, cut) = partition(&mut Rng::new(seed), &nodes, None);
            if kind == FaultKind::PartitionBridge {
                let cut_nodes: BTreeSet<NodeId> = cut.iter().map(|&(a, _)| a).collect();
                assert!(cut_nodes.len() < nodes.len());
            }
        }
    }
}
