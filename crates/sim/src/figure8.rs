//! The Figure 8 profile: partitions chosen around the current leaders, at
//! the moments that matter, so that every round has the shape of Figure 8
//! of the Raft paper (§5.4.2) — the schedule under which a leader that
//! commits an earlier term's entry by counting replicas loses it.
//!
//! A round, with `side` a minority that holds the first leader:
//!
//! 1. A leader has appended an entry it has not committed: `side` is cut
//!    off from the rest at once, so the entry reaches `side` only.
//! 2. The rest elects a second leader of a higher term; the moment it is
//!    elected it is isolated, holding its blank entry (which conflicts
//!    with the first leader's entry) alone.
//! 3. `side` rejoins the rest but the second leader; only a node of `side`
//!    can win (the others lack its entry), and this third leader, of a yet
//!    higher term, re-replicates the old entry. At its first commit, `side`
//!    is cut off again, before it can tell the rest about anything newer.
//! 4. The rest, with the second leader back, elects a fourth leader. If the
//!    third leader's first commit was the old entry counted on a majority,
//!    the rest hold it but none of the third term, so the second leader
//!    (whose last term is higher) can win without it: Leader Completeness
//!    fails. A correct third leader commits only once its own term's blank
//!    is on a majority, which the rest then cannot elect around.
//!
//! The profile observes the cluster through the public `Raft` API only
//! (role, term, `status`), as an operator's nemesis would. Every choice
//! (which minority, how long to rest between rounds) comes from the seed.

use keel_raft::{LogIndex, NodeId, Term};

use crate::faults::FaultKind;
use crate::invariants::Violation;
use crate::rng::Rng;
use crate::sim::Simulation;
use crate::targeted::TargetedProfile;
use crate::time::Micros;

/// Ticks a stage may take before its round is abandoned and healed.
const STAGE_TICKS: u64 = 80;

/// Where a round stands.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Stage {
    /// Everything healed until `until`.
    Rest { until: Micros },
    /// Step 1: waiting for a leader with an uncommitted entry.
    CutFirst,
    /// Step 2: waiting for the rest to elect a leader above `first_term`.
    IsolateSecond { side: Vec<NodeId>, first_term: Term },
    /// Step 3: waiting for a leader above `second_term`.
    AwaitThird {
        side: Vec<NodeId>,
        second_term: Term,
    },
    /// Step 3: waiting for `third`'s first commit past `commit`.
    CutThird {
        side: Vec<NodeId>,
        third: NodeId,
        third_term: Term,
        commit: LogIndex,
    },
    /// Step 4: waiting for the rest to elect a leader above `third_term`.
    AwaitFourth { third_term: Term },
}

/// The state of the profile in one run.
#[derive(Debug)]
pub(crate) struct Figure8 {
    rng: Rng,
    stage: Stage,
    /// When the current stage is abandoned.
    deadline: Micros,
}

impl Figure8 {
    pub(crate) fn new(mut rng: Rng) -> Figure8 {
        let first = Micros::ticks(rng.between(20, 60));
        Figure8 {
            rng,
            stage: Stage::Rest { until: first },
            deadline: Micros(u64::MAX),
        }
    }
}

impl TargetedProfile for Figure8 {
    fn after_step(&mut self, sim: &mut Simulation) -> Result<(), Violation> {
        self.advance(sim);
        Ok(())
    }
}

impl Figure8 {
    fn advance(&mut self, sim: &mut Simulation) {
        if !matches!(self.stage, Stage::Rest { .. }) && sim.now >= self.deadline {
            self.rest(sim);
            return;
        }
        match self.stage.clone() {
            Stage::Rest { until } => {
                if sim.now >= until {
                    self.next(sim, Stage::CutFirst);
                }
            }
            Stage::CutFirst => {
                let Some(first) = sim.leader_status(|_| true) else {
                    return;
                };
                if first.last_index <= first.commit {
                    return;
                }
                let mut others: Vec<NodeId> = sim
                    .node_ids()
                    .into_iter()
                    .filter(|&id| id != first.id)
                    .collect();
                self.rng.shuffle(&mut others);
                let minority = sim.nodes.len().saturating_sub(1) / 2;
                let mut side = vec![first.id];
                side.extend(others.iter().take(minority.saturating_sub(1)));
                side.sort();
                sim.count(FaultKind::Figure8Round);
                let cut = sim.cut_off(&side);
                sim.steer_partition("figure 8 (1): leader and minority", cut);
                let first_term = first.term;
                self.next(sim, Stage::IsolateSecond { side, first_term });
            }
            Stage::IsolateSecond { side, first_term } => {
                let Some(second) = sim.leader_status(|s| s.term > first_term) else {
                    return;
                };
                if side.contains(&second.id) {
                    self.rest(sim);
                    return;
                }
                let cut = sim.cut_off(&[second.id]);
                sim.steer_partition("figure 8 (2): new leader isolated", cut);
                let second_term = second.term;
                self.next(sim, Stage::AwaitThird { side, second_term });
            }
            Stage::AwaitThird { side, second_term } => {
                let Some(third) = sim.leader_status(|s| s.term > second_term) else {
                    return;
                };
                if !side.contains(&third.id) {
                    self.rest(sim);
                    return;
                }
                let stage = Stage::CutThird {
                    side,
                    third: third.id,
                    third_term: third.term,
                    commit: third.commit,
                };
                self.next(sim, stage);
            }
            Stage::CutThird {
                side,
                third,
                third_term,
                commit,
            } => {
                let Some(status) = sim.leader_status(|s| s.id == third) else {
                    self.rest(sim);
                    return;
                };
                if status.term != third_term {
                    self.rest(sim);
                    return;
                }
                if status.commit > commit {
                    let cut = sim.cut_off(&side);
                    sim.steer_partition("figure 8 (3): third leader at its first commit", cut);
                    self.next(sim, Stage::AwaitFourth { third_term });
                }
            }
            Stage::AwaitFourth { third_term } => {
                if sim.leader_status(|s| s.term > third_term).is_some() {
                    sim.count(FaultKind::Figure8Completed);
                    self.rest(sim);
                }
            }
        }
    }

    fn next(&mut self, sim: &Simulation, stage: Stage) {
        self.stage = stage;
        self.deadline = sim.now.plus(Micros::ticks(STAGE_TICKS));
    }

    /// Ends the round (completed or abandoned): the network heals and the
    /// cluster runs undisturbed for a while.
    fn rest(&mut self, sim: &mut Simulation) {
        sim.steer_heal();
        let until = sim.now.plus(Micros::ticks(self.rng.between(10, 50)));
        self.stage = Stage::Rest { until };
        self.deadline = Micros(u64::MAX);
    }
}
