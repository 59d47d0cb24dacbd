//! The isolated-leader profile: a leader cut off from every other node
//! while some clients keep reading from it and the others write through
//! the majority — the schedule that tests check-quorum (§6.2) and the
//! leader lease built on it (§6.4.1).
//!
//! A round, with check-quorum on:
//!
//! 1. The leader of term `term` is cut off from every other node. From
//!    then on the readers (half the clients) send only reads, and only to
//!    it — the first lease reads, the second ReadIndex reads; the other
//!    clients avoid it.
//! 2. The majority elects a leader of a higher term once its voters stop
//!    honouring the old lease (an election timeout after last hearing from
//!    the old leader), and commits the writers' writes.
//! 3. The old leader must step down within two election timeouts of its
//!    own clock: its check-quorum round finds no voter heard from (checked
//!    here as [`crate::Invariant::CheckQuorum`]). Until then it must not answer a
//!    read from its own state: its lease expired with the last heartbeat
//!    round a quorum answered, and ReadIndex needs a quorum it cannot
//!    reach. A lease that never expires answers the readers with values
//!    the majority has overwritten (Linearizability fails).
//! 4. After a while the network heals, clients go where they like, and
//!    the cluster rests.
//!
//! Like the other profiles, it observes nodes through the public API and
//! draws every choice from the seed.

use keel_raft::{NodeId, Role, Term};

use crate::invariants::{Breach, Violation};
use crate::rng::Rng;
use crate::route::Steering;
use crate::sim::Simulation;
use crate::targeted::TargetedProfile;
use crate::time::{Micros, TICK};

/// Ticks a round keeps the leader cut off: past the two election timeouts
/// check-quorum may take, so that a leader that never steps down is seen.
const ROUND_TICKS: u64 = 40;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Rest {
        until: Micros,
    },
    /// `leader` of `term`, in its `incarnation`, was cut off just before
    /// its tick at `first_tick`; healed at `until`.
    Isolated {
        leader: NodeId,
        term: Term,
        incarnation: u64,
        first_tick: Micros,
        until: Micros,
    },
}

/// The state of the profile in one run.
#[derive(Debug)]
pub(crate) struct IsolatedLeader {
    rng: Rng,
    stage: Stage,
}

impl IsolatedLeader {
    pub(crate) fn new(mut rng: Rng) -> IsolatedLeader {
        let first = Micros::ticks(rng.between(20, 60));
        IsolatedLeader {
            rng,
            stage: Stage::Rest { until: first },
        }
    }
}

impl TargetedProfile for IsolatedLeader {
    /// Advances the round and checks that an isolated leader stepped down
    /// in time.
    fn after_step(&mut self, sim: &mut Simulation) -> Result<(), Violation> {
        self.advance(sim)
    }
}

impl IsolatedLeader {
    fn advance(&mut self, sim: &mut Simulation) -> Result<(), Violation> {
        match self.stage {
            Stage::Rest { until } if sim.now >= until => {
                let Some(leader) = sim.leader_status(|_| true) else {
                    return Ok(());
                };
                if leader.membership.has_quorum(|id| id == leader.id) {
                    self.stage = self.rest(sim);
                    return Ok(());
                }
                sim.count(crate::faults::FaultKind::IsolatedLeaderRound);
                let cut = sim.cut_off(&[leader.id]);
                sim.steer_partition("isolated leader (1): leader cut off", cut);
                sim.steering = Some(Steering {
                    isolated: leader.id,
                });
                let node = &sim.nodes[&leader.id];
                self.stage = Stage::Isolated {
                    leader: leader.id,
                    term: leader.term,
                    incarnation: node.incarnation,
                    first_tick: node.next_tick,
                    until: sim.now.plus(Micros::ticks(ROUND_TICKS)),
                };
            }
            Stage::Rest { .. } => {}
            Stage::Isolated { until, .. } if sim.now >= until => {
                self.stage = self.rest(sim);
            }
            Stage::Isolated {
                leader,
                term,
                incarnation,
                first_tick,
                ..
            } => check_stepped_down(sim, leader, term, incarnation, first_tick)?,
        }
        Ok(())
    }

    /// Ends the round: the network heals, clients go where they like, and
    /// the cluster runs undisturbed for a while.
    fn rest(&mut self, sim: &mut Simulation) -> Stage {
        sim.steer_heal();
        sim.steering = None;
        let until = sim.now.plus(Micros::ticks(self.rng.between(10, 40)));
        Stage::Rest { until }
    }
}

/// Check-quorum's contract: a leader that hears from no voter steps down
/// at its second check-quorum round at the latest (the first may still
/// count answers from before the cut), one every election timeout of its
/// own clock.
fn check_stepped_down(
    sim: &Simulation,
    leader: NodeId,
    term: Term,
    incarnation: u64,
    first_tick: Micros,
) -> Result<(), Violation> {
    let node = &sim.nodes[&leader];
    let Some(raft) = node.raft().filter(|_| node.incarnation == incarnation) else {
        return Ok(());
    };
    let ticks_cut_off = node.next_tick.0.saturating_sub(first_tick.0) / TICK.0;
    let limit_ticks = 2 * u64::from(sim.params.config(leader, sim.seed, 0).election_ticks);
    if raft.role() == Role::Leader && raft.term() == term && ticks_cut_off > limit_ticks {
        return Err(Breach::IsolatedLeaderStayed {
            leader,
            term,
            ticks_cut_off,
            limit_ticks,
        }
        .into());
    }
    Ok(())
}
