//! Liveness after heal: once every fault has stopped, the cluster must
//! elect a leader that every running member follows, bring every member's
//! state machine up to the leader's commit index, and complete a write for
//! every client within the heal phase — with no client timing out once
//! it has had [`SETTLE_TICKS`] to recover.

use keel_raft::Role;

use super::{Invariant, Violation};
use crate::sim::{DRAIN_TICKS, SETTLE_TICKS, Simulation};
use crate::time::Micros;

pub fn check(sim: &Simulation) -> Result<(), Violation> {
    if !sim.healing {
        return Ok(());
    }
    let fail = |detail: String| Err(Violation::new(Invariant::Liveness, detail));
    let heal_ticks = (sim.end_at().0 - sim.heal_at.0) / crate::time::TICK.0;
    let Some(leader_id) = sim.leader() else {
        return fail(format!("no leader {heal_ticks} ticks after faults stopped"));
    };
    let leader = sim.nodes[&leader_id].raft().expect("the leader runs");
    let status = leader.status();
    for id in status.membership.nodes() {
        let Some(raft) = sim.nodes.get(&id).and_then(|n| n.raft()) else {
            return fail(format!(
                "member {id} of the leader's configuration is not running"
            ));
        };
        let s = raft.status();
        if s.role != Role::Leader && (s.leader != Some(leader_id) || s.term != status.term) {
            return fail(format!(
                "member {id} follows {:?} in term {}, not leader {leader_id} of term {}",
                s.leader, s.term, status.term
            ));
        }
        if s.applied != status.commit {
            return fail(format!(
                "member {id} applied {} but the leader committed {}",
                s.applied, status.commit
            ));
        }
    }
    let settled = sim.heal_at.plus(Micros::ticks(SETTLE_TICKS));
    if let Some(tag) = sim.late_timeouts.first() {
        return fail(format!(
            "client {} request {} was sent {SETTLE_TICKS}+ ticks after faults stopped, and timed out",
            tag.client, tag.request
        ));
    }
    let drain_from = sim.end_at().saturating_sub(Micros::ticks(DRAIN_TICKS));
    if drain_from > settled {
        for (c, last) in sim.healed_writes.iter().enumerate() {
            if !last.is_some_and(|at| at >= settled) {
                return fail(format!(
                    "client {} completed no write between {settled} and {drain_from}",
                    c + 1
                ));
            }
        }
    }
    Ok(())
}
