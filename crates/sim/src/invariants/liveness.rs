//! Liveness after heal: once every fault has stopped, the cluster must
//! elect a leader that every running member follows, bring every member's
//! state machine up to the leader's commit index, and complete a write for
//! every client within the heal phase — with no client timing out once
//! it has had `SETTLE_TICKS` to recover.

use keel_raft::Role;

use super::{Breach, Violation};
use crate::sim::{DRAIN_TICKS, SETTLE_TICKS, Simulation};
use crate::time::Micros;

/// Checked at the end of the heal phase: one leader that every member
/// follows, every member caught up, and every client served (above).
pub fn check(sim: &Simulation) -> Result<(), Violation> {
    if !sim.healing {
        return Ok(());
    }
    let fail = |breach: Breach| Err(Violation::from(breach));
    let Some(leader_id) = sim.leader() else {
        let heal_ticks = (sim.end_at().0 - sim.heal_at.0) / crate::time::TICK.0;
        return fail(Breach::NoLeaderAfterHeal { heal_ticks });
    };
    let leader = sim.nodes[&leader_id].raft().expect("the leader runs");
    let status = leader.status();
    for id in status.membership.nodes() {
        let Some(raft) = sim.nodes.get(&id).and_then(|n| n.raft()) else {
            return fail(Breach::MemberNotRunning { member: id });
        };
        let s = raft.status();
        if s.role != Role::Leader && (s.leader != Some(leader_id) || s.term != status.term) {
            return fail(Breach::MemberNotFollowing {
                member: id,
                follows: s.leader,
                term: s.term,
                leader: leader_id,
                leader_term: status.term,
            });
        }
        if s.applied != status.commit {
            return fail(Breach::MemberBehind {
                member: id,
                applied: s.applied,
                commit: status.commit,
            });
        }
    }
    let settled = sim.heal_at.plus(Micros::ticks(SETTLE_TICKS));
    if let Some(tag) = sim.late_timeouts.first() {
        return fail(Breach::LateTimeout {
            client: tag.client,
            request: tag.request,
            settle_ticks: SETTLE_TICKS,
        });
    }
    let drain_from = sim.end_at().saturating_sub(Micros::ticks(DRAIN_TICKS));
    if drain_from > settled {
        for (c, last) in sim.healed_writes.iter().enumerate() {
            if !last.is_some_and(|at| at >= settled) {
                return fail(Breach::NoWriteAfterHeal {
                    client: c + 1,
                    from: settled,
                    to: drain_from,
                });
            }
        }
    }
    Ok(())
}
