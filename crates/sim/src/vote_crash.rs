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

impl Simulation {
    /// Advances the vote-crash round after a step, if this run follows the
    /// profile and faults are still on.
    pub(crate) fn vote_crash_step(&mut self) -> Result<(), Violation> {
        if self.healing {
            return Ok(());
        }
        let Some(mut round) = self.vote_crash.take() else {
            return Ok(());
        };
        let result = self.advance_vote_crash(&mut round);
        self.vote_crash = Some(round);
        result
    }

    fn advance_vote_crash(&mut self, round: &mut VoteCrash) -> Result<(), Violation> {
        match round.stage {
            Stage::Rest { until } if self.now >= until => {
                let followers: Vec<NodeId> = self
                    .nodes
                    .values()
                    .filter(|n| n.is_up())
                    .filter_map(|n| n.raft())
                    .filter(|r| r.role() == Role::Follower)
                    .map(|r| r.id())
                    .collect();
                let [a, b] = followers[..] else {
                    round.stage = self.vote_crash_rest(round);
                    return Ok(());
                };
                let term = self.nodes[&a].raft().map(|r| r.term());
                if term != self.nodes[&b].raft().map(|r| r.term()) {
                    round.stage = self.vote_crash_rest(round);
                    return Ok(());
                }
                self.count(FaultKind::VoteCrashRound);
                let what = "vote crash (1): election timers fire together";
                let nodes = vec![a.0, b.0];
                self.trace
                    .record(self.now, TraceEvent::Scenario { what, nodes });
                for id in [a, b] {
                    self.with_node(id, |n, ctx| n.call(|r| r.campaign(), ctx))?;
                }
                let term = term.expect("both are up").next();
                let until = self.now.plus(Micros::ticks(ROUND_TICKS));
                round.stage = Stage::AwaitVote { term, until };
            }
            Stage::Rest { .. } => {}
            Stage::AwaitVote { until, .. } if self.now >= until => {
                round.stage = self.vote_crash_rest(round);
            }
            Stage::AwaitVote { term, .. } => {
                let voter = self.nodes.values().find(|n| {
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
                    self.trace
                        .record(self.now, TraceEvent::Scenario { what, nodes });
                    let keep = CrashKeep {
                        writes: 0,
                        torn_entries: 0,
                    };
                    self.crash_keeping(voter, Micros(0), keep)?;
                    self.restart(voter)?;
                    round.stage = self.vote_crash_rest(round);
                }
            }
        }
        Ok(())
    }

    fn vote_crash_rest(&mut self, round: &mut VoteCrash) -> Stage {
        let until = self.now.plus(Micros::ticks(round.rng.between(10, 40)));
        Stage::Rest { until }
    }
}
