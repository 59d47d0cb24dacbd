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
//!    here as [`Invariant::CheckQuorum`]). Until then it must not answer a
//!    read from its own state: its lease expired with the last heartbeat
//!    round a quorum answered, and ReadIndex needs a quorum it cannot
//!    reach. A lease that never expires answers the readers with values
//!    the majority has overwritten (Linearizability fails).
//! 4. After a while the network heals, clients go where they like, and
//!    the cluster rests.
//!
//! Like the other profiles, it observes nodes through the public API and
//! draws every choice from the seed.

use keel_raft::{NodeId, ReadMode, Role, Term};

use crate::invariants::{Invariant, Violation};
use crate::rng::Rng;
use crate::sim::Simulation;
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

/// Where one client may send its next operation.
pub(crate) struct Route {
    /// The nodes to choose from.
    pub(crate) nodes: Vec<NodeId>,
    /// Send a read of this mode, whatever the client would have drawn.
    pub(crate) read_only: Option<ReadMode>,
}

impl Simulation {
    /// Advances the isolated-leader round after a step, if this run follows
    /// the profile and faults are still on, and checks that an isolated
    /// leader stepped down in time.
    pub(crate) fn isolated_leader_step(&mut self) -> Result<(), Violation> {
        if self.healing {
            return Ok(());
        }
        let Some(mut round) = self.isolated_leader.take() else {
            return Ok(());
        };
        let result = self.advance_isolated_leader(&mut round);
        self.isolated_leader = Some(round);
        result
    }

    fn advance_isolated_leader(&mut self, round: &mut IsolatedLeader) -> Result<(), Violation> {
        match round.stage {
            Stage::Rest { until } if self.now >= until => {
                let Some(leader) = self.leader_status(|_| true) else {
                    return Ok(());
                };
                if leader.membership.has_quorum(|id| id == leader.id) {
                    round.stage = self.isolated_leader_rest(round);
                    return Ok(());
                }
                self.count(crate::faults::FaultKind::IsolatedLeaderRound);
                let cut = self.cut_off(&[leader.id]);
                self.steer_partition("isolated leader (1): leader cut off", cut);
                let node = &self.nodes[&leader.id];
                round.stage = Stage::Isolated {
                    leader: leader.id,
                    term: leader.term,
                    incarnation: node.incarnation,
                    first_tick: node.next_tick,
                    until: self.now.plus(Micros::ticks(ROUND_TICKS)),
                };
            }
            Stage::Rest { .. } => {}
            Stage::Isolated { until, .. } if self.now >= until => {
                round.stage = self.isolated_leader_rest(round);
            }
            Stage::Isolated {
                leader,
                term,
                incarnation,
                first_tick,
                ..
            } => self.check_stepped_down(leader, term, incarnation, first_tick)?,
        }
        Ok(())
    }

    /// Check-quorum's contract: a leader that hears from no voter steps
    /// down at its second check-quorum round at the latest (the first may
    /// still count answers from before the cut), one every election
    /// timeout of its own clock.
    fn check_stepped_down(
        &self,
        leader: NodeId,
        term: Term,
        incarnation: u64,
        first_tick: Micros,
    ) -> Result<(), Violation> {
        let node = &self.nodes[&leader];
        let Some(raft) = node.raft().filter(|_| node.incarnation == incarnation) else {
            return Ok(());
        };
        let ticks_cut_off = node.next_tick.0.saturating_sub(first_tick.0) / TICK.0;
        let limit_ticks = 2 * u64::from(self.params.config(leader, self.seed, 0).election_ticks);
        if raft.role() == Role::Leader && raft.term() == term && ticks_cut_off > limit_ticks {
            return Err(Violation::new(
                Invariant::CheckQuorum,
                format!(
                    "node {leader} still leads term {term} {ticks_cut_off} ticks after it was cut \
                     off from every other node; check-quorum steps down within {limit_ticks}"
                ),
            ));
        }
        Ok(())
    }

    /// Where client `c` may send its next operation while a round runs:
    /// readers read from the isolated leader only, the others avoid it.
    pub(crate) fn isolated_leader_route(&self, c: usize, up: Vec<NodeId>) -> Route {
        let isolated = match self.isolated_leader.as_ref().map(|r| r.stage) {
            Some(Stage::Isolated { leader, .. }) if !self.healing => leader,
            _ => {
                return Route {
                    nodes: up,
                    read_only: None,
                };
            }
        };
        let reader = c < self.params.clients / 2;
        let nodes: Vec<NodeId> = up
            .iter()
            .copied()
            .filter(|&n| (n == isolated) == reader)
            .collect();
        if nodes.is_empty() {
            return Route {
                nodes: up,
                read_only: None,
            };
        }
        // A read the leader cannot confirm waits for it to step down, so
        // each reader keeps to one mode: the first to lease reads, which
        // a valid lease answers at once, the second to ReadIndex.
        let mode = if c % 2 == 0 {
            ReadMode::Lease
        } else {
            ReadMode::ReadIndex
        };
        Route {
            nodes,
            read_only: reader.then_some(mode),
        }
    }

    /// Ends the round: the network heals and the cluster runs undisturbed
    /// for a while.
    fn isolated_leader_rest(&mut self, round: &mut IsolatedLeader) -> Stage {
        self.steer_heal();
        let until = self.now.plus(Micros::ticks(round.rng.between(10, 40)));
        Stage::Rest { until }
    }
}
