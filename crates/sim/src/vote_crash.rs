//! The vote-crash profile: a split vote in which the voter crashes right
//! after granting, so that a vote answered before it was durable (§5.2:
//! "persist before you respond") is forgotten and given again.
//!
//! A round, on a cluster of three without pre-vote or check-quorum (so a
//! restarted node votes at once instead of waiting out a lease):
//!
//! 1. The election timers of two followers fire together: both campaign
//!    in the same new term.
//! 2. The moment the third node grants one of them its vote — while that
//!    vote is still unsynced on its disk — it crashes, losing every
//!    unsynced write, and restarts at once.
//! 3. The other candidate's request then reaches the restarted node, which
//!    no longer remembers voting. A correct core sent no vote before the
//!    fsync, so only this candidate wins; a core that answered early has
//!    elected both: Election Safety fails.
//!
//! Like the Figure 8 profile, it observes nodes through the public API and
//! draws every choice from the seed.

use keel_raft::{NodeId, Role};

use crate::disk::CrashKeep;
use crate::faults::FaultKind;
use crate::invariants::Violation;
use crate::rng::Rng;
use crate::sim::Simulation;
use crate::targeted::TargetedProfile;
use crate::time::Micros;
use crate::trace::TraceEvent;

/// Ticks a round may wait for a vote before it is abandoned.
const ROUND_TICKS: u64 = 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Rest {
        until: Micros,
    },
    /// Both candidates campaign for `term`; waiting for a granted vote.
    AwaitVote {
        term: keel_raft::Term,
        until: Micros,
    },
}

/// The state of the profile in one run.
#[derive(Debug)]
pub(crate) struct VoteCrash {
    rng: Rng,
    stage: Stage,
}

impl VoteCrash {
    pub(crate) fn new(mut rng: Rng) -> VoteCrash {
        let first = Micros::ticks(rng.between(20, 60));
        VoteCrash {
            rng,
            stage: Stage::Rest { until: first },
        }
    }
}

impl TargetedProfile for VoteCrash {
    fn after_step(&mut self, sim: &mut Simulation) -> Result<(), Violation> {
        self.advance(sim)
    }
}

impl VoteCrash {
    fn advance(&mut self, sim: &mut Simulation) -> Result<(), Violation> {
        match self.stage {
            Stage::Rest { until } if sim.now >= until => {
                let followers: Vec<NodeId> = sim
                    .nodes
                    .values()
                    .filter(|n| n.is_up())
                    .filter_map(|n| n.raft())
                    .filter(|r| r.role() == Role::Follower)
                    .map(|r| r.id())
                    .collect();
                let [a, b] = followers[..] else {
                    self.stage = self.rest(sim);
                    return Ok(());
                };
                let term = sim.nodes[&a].raft().map(|r| r.term());
                if term != sim.nodes[&b].raft().map(|r| r.term()) {
                    self.stage = self.rest(sim);
                    return Ok(());
                }
                sim.count(FaultKind::VoteCrashRound);
                let what = "vote crash (1): election timers fire together";
                let nodes = vec![a.0, b.0];
                sim.trace
                    .record(sim.now, TraceEvent::Scenario { what, nodes });
                for id in [a, b] {
                    sim.with_node(id, |n, ctx| n.call(|r| r.campaign(), ctx))?;
                }
                let term = term.expect("both are up").next();
                let until = sim.now.plus(Micros::ticks(ROUND_TICKS));
                self.stage = Stage::AwaitVote { term, until };
            }
            Stage::Rest { .. } => {}
            Stage::AwaitVote { until, .. } if sim.now >= until => {
                self.stage = self.rest(sim);
            }
            Stage::AwaitVote { term, .. } => {
                let voter = sim.nodes.values().find(|n| {
                    let durable = &n.disk.durable().hard_state;
                    n.raft().is_some_and(|r| {
                        let status = r.status();
                        status.term == term
                            && status.vote.is_some_and(|v| v != r.id())
                            && (durable.term, durable.vote) != (status.term, status.vote)
                    })
                });
                if let Some(voter) = voter.map(|n| n.id) {
                    let what = "vote crash (2): voter crashes before its vote is durable";
                    let nodes = vec![voter.0];
                    sim.trace
                        .record(sim.now, TraceEvent::Scenario { what, nodes });
                    let keep = CrashKeep {
                        writes: 0,
                        torn_entries: 0,
                    };
                    sim.crash_keeping(voter, Micros(0), keep)?;
                    sim.restart(voter)?;
                    self.stage = self.rest(sim);
                }
            }
        }
        Ok(())
    }

    fn rest(&mut self, sim: &Simulation) -> Stage {
        let until = sim.now.plus(Micros::ticks(self.rng.between(10, 40)));
        Stage::Rest { until }
    }
}
