//! The joint-lag profile: a joint configuration change (§4.3) proposed
//! while a majority of the outgoing voters is cut off from the leader —
//! the schedule under which deciding by the incoming majority alone loses
//! committed entries.
//!
//! A round, on a cluster of five whose members all stay in the
//! configuration (outgoing voters are demoted to learners, not removed):
//!
//! 1. A leader holds a plain configuration of voters `old`. `lagging`, a
//!    majority of `old` without the leader, is cut off from everyone else
//!    (`rest`), and at once the leader proposes a joint change to voters
//!    `new`: the whole of `rest` plus at most `|rest| - 1` of `lagging`,
//!    so that `rest` alone is a majority of `new`. The joint entry reaches
//!    `rest` only.
//! 2. A correct leader needs a majority of `old` too, so it commits
//!    nothing; `lagging`, still in `old` and a majority of it, elects a
//!    leader of a higher term and commits its blank entry. A leader that
//!    counts only the incoming voters commits the joint entry with `rest`
//!    (and leaves the joint configuration), so two leaders commit
//!    different entries at one index: the new one was elected without a
//!    committed entry (Leader Completeness fails).
//! 3. After a while the network heals and the cluster rests.
//!
//! Like the other profiles, it observes nodes through the public API and
//! draws every choice from the seed.

use std::collections::BTreeSet;

use keel_raft::{MembershipChange, NodeId};

use crate::faults::FaultKind;
use crate::invariants::Violation;
use crate::rng::Rng;
use crate::sim::Simulation;
use crate::targeted::TargetedProfile;
use crate::time::Micros;

/// Ticks a round keeps its partition: enough for `lagging` to time out
/// (up to two election timeouts), elect, and commit.
const ROUND_TICKS: u64 = 50;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Rest {
        until: Micros,
    },
    /// The joint change went out behind the partition; healed at `until`.
    Split {
        until: Micros,
    },
}

/// The state of the profile in one run.
#[derive(Debug)]
pub(crate) struct JointLag {
    rng: Rng,
    stage: Stage,
}

impl JointLag {
    pub(crate) fn new(mut rng: Rng) -> JointLag {
        let first = Micros::ticks(rng.between(20, 60));
        JointLag {
            rng,
            stage: Stage::Rest { until: first },
        }
    }
}

/// The two sides of a round and the change proposed behind them.
struct Split {
    lagging: Vec<NodeId>,
    voters: BTreeSet<NodeId>,
    learners: BTreeSet<NodeId>,
}

impl TargetedProfile for JointLag {
    fn after_step(&mut self, sim: &mut Simulation) -> Result<(), Violation> {
        self.advance(sim)
    }
}

impl JointLag {
    fn advance(&mut self, sim: &mut Simulation) -> Result<(), Violation> {
        match self.stage {
            Stage::Rest { until } if sim.now >= until => {
                let Some(leader) = sim.leader_status(|_| true) else {
                    return Ok(());
                };
                let Some(split) = draw_split(&mut self.rng, leader.id, &leader.membership) else {
                    self.stage = self.rest(sim);
                    return Ok(());
                };
                let cut = sim.cut_off(&split.lagging);
                sim.steer_partition("joint lag (1): outgoing majority cut off", cut);
                let change = MembershipChange::Joint {
                    voters: split.voters,
                    learners: split.learners,
                    addresses: Default::default(),
                };
                self.stage = match sim.propose_membership(leader.id, change)? {
                    Ok(_) => {
                        sim.count(FaultKind::JointLagRound);
                        Stage::Split {
                            until: sim.now.plus(Micros::ticks(ROUND_TICKS)),
                        }
                    }
                    // Not ready (no commit in its term yet) or busy with
                    // another change: try again after a rest.
                    Err(_) => self.rest(sim),
                };
            }
            Stage::Rest { .. } => {}
            Stage::Split { until } if sim.now >= until => {
                self.stage = self.rest(sim);
            }
            Stage::Split { .. } => {}
        }
        Ok(())
    }

    /// Ends the round: the network heals and the cluster runs undisturbed
    /// for a while.
    fn rest(&mut self, sim: &mut Simulation) -> Stage {
        sim.steer_heal();
        let until = sim.now.plus(Micros::ticks(self.rng.between(10, 40)));
        Stage::Rest { until }
    }
}

/// Chooses `lagging` (a majority of the current voters without `leader`)
/// and the joint change's target, or `None` when the configuration is
/// joint or too small for a majority that excludes the leader.
fn draw_split(rng: &mut Rng, leader: NodeId, m: &keel_raft::Membership) -> Option<Split> {
    if m.is_joint() || m.voters().len() < 3 {
        return None;
    }
    let mut others: Vec<NodeId> = m
        .voters()
        .iter()
        .copied()
        .filter(|&v| v != leader)
        .collect();
    rng.shuffle(&mut others);
    let majority = m.voters().len() / 2 + 1;
    let lagging: Vec<NodeId> = others.into_iter().take(majority).collect();
    let rest: BTreeSet<NodeId> = m
        .nodes()
        .into_iter()
        .filter(|n| !lagging.contains(n))
        .collect();
    // `rest` stays a majority of the new voters: at most `|rest| - 1` of
    // `lagging` join it.
    let joining = rng.below(rest.len().min(lagging.len() + 1) as u64) as usize;
    let mut voters = rest;
    voters.extend(lagging.iter().take(joining));
    let learners = m
        .nodes()
        .into_iter()
        .filter(|n| !voters.contains(n))
        .collect();
    Some(Split {
        lagging,
        voters,
        learners,
    })
}
