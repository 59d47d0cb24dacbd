//! Membership changes as faults: drawn from the seed, proposed at the
//! leader, one at a time. A replacement is a plan of three single-server
//! changes (add learner, promote, remove) carried out over several
//! attempts; the others are one change each.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use keel_raft::{Membership, MembershipChange, NodeId};

use crate::faults::FaultKind;
use crate::rng::Rng;

/// Voter counts the simulator keeps to, so that faults in a minority
/// always leave a working quorum and clusters stay small.
pub const VOTERS_MIN: usize = 3;
pub const VOTERS_MAX: usize = 7;
/// Learners and voters together.
pub const MEMBERS_MAX: usize = 9;

/// Attempts at one step before a plan is abandoned.
const ATTEMPTS_MAX: u32 = 6;

/// Changes still to be proposed.
#[derive(Debug, Default)]
pub struct Plan {
    steps: VecDeque<MembershipChange>,
    attempts: u32,
}

impl Plan {
    pub fn next_step(&self) -> Option<&MembershipChange> {
        self.steps.front()
    }

    /// The leader accepted the front step.
    pub fn advance(&mut self) {
        self.steps.pop_front();
        self.attempts = 0;
    }

    /// The leader could not take the front step now; give up after a few
    /// tries, or at once when the change no longer makes sense.
    pub fn failed(&mut self, permanently: bool) {
        self.attempts += 1;
        if permanently || self.attempts >= ATTEMPTS_MAX {
            self.steps.clear();
            self.attempts = 0;
        }
    }

    pub fn clear(&mut self) {
        self.steps.clear();
    }

    /// Nodes a remaining step will add, which must not be shut down.
    pub fn mentions(&self, id: NodeId) -> bool {
        self.steps.iter().any(|c| match c {
            MembershipChange::AddLearner { id: x, .. }
            | MembershipChange::AddVoter { id: x, .. }
            | MembershipChange::Promote(x) => *x == id,
            MembershipChange::Joint {
                voters, learners, ..
            } => voters.contains(&id) || learners.contains(&id),
            MembershipChange::Remove(_)
            | MembershipChange::SetAddress { .. }
            | MembershipChange::LeaveJoint => false,
        })
    }

    /// Draws a new plan for configuration `m`; `fresh` hands out ids never
    /// used before.
    pub fn draw(
        &mut self,
        rng: &mut Rng,
        m: &Membership,
        mut fresh: impl FnMut() -> NodeId,
    ) -> Option<FaultKind> {
        if m.is_joint() {
            return None;
        }
        let voters: Vec<NodeId> = m.voters().iter().copied().collect();
        let learners: Vec<NodeId> = m.learners().iter().copied().collect();
        let members = voters.len() + learners.len();
        let can_grow = voters.len() < VOTERS_MAX;
        let can_shrink = voters.len() > VOTERS_MIN;
        let options = [
            (FaultKind::AddLearner, members < MEMBERS_MAX),
            (FaultKind::Promote, !learners.is_empty() && can_grow),
            (FaultKind::AddVoter, can_grow && members < MEMBERS_MAX),
            (FaultKind::Remove, can_shrink || !learners.is_empty()),
            (FaultKind::Replace, can_grow && members < MEMBERS_MAX),
            (FaultKind::Joint, true),
        ];
        let possible: Vec<FaultKind> = options
            .iter()
            .filter(|(_, ok)| *ok)
            .map(|(k, _)| *k)
            .collect();
        let kind = *rng.pick(&possible);
        let steps: Vec<MembershipChange> = match kind {
            FaultKind::AddLearner => vec![add_learner(fresh())],
            FaultKind::Promote => vec![MembershipChange::Promote(*rng.pick(&learners))],
            FaultKind::AddVoter => vec![MembershipChange::AddVoter {
                id: fresh(),
                addr: None,
            }],
            FaultKind::Remove => {
                let pool = if can_shrink {
                    [voters.as_slice(), learners.as_slice()].concat()
                } else {
                    learners.clone()
                };
                vec![MembershipChange::Remove(*rng.pick(&pool))]
            }
            FaultKind::Replace => {
                let new = fresh();
                vec![
                    add_learner(new),
                    MembershipChange::Promote(new),
                    MembershipChange::Remove(*rng.pick(&voters)),
                ]
            }
            _ => vec![joint(rng, &voters, &learners, fresh)],
        };
        self.steps = steps.into();
        self.attempts = 0;
        Some(kind)
    }
}

/// A joint change that swaps one or two voters: out go voters (demoted to
/// learners or removed), in come learners or brand-new nodes.
fn joint(
    rng: &mut Rng,
    voters: &[NodeId],
    learners: &[NodeId],
    mut fresh: impl FnMut() -> NodeId,
) -> MembershipChange {
    let mut new_voters: BTreeSet<NodeId> = voters.iter().copied().collect();
    let mut new_learners: BTreeSet<NodeId> = learners.iter().copied().collect();
    for _ in 0..rng.between(1, 2) {
        if new_voters.len() > VOTERS_MIN && rng.chance(500) {
            let out = *rng.pick(&new_voters.iter().copied().collect::<Vec<_>>());
            new_voters.remove(&out);
            if rng.chance(500) {
                new_learners.insert(out);
            }
        }
        if new_voters.len() < VOTERS_MAX && new_voters.len() + new_learners.len() < MEMBERS_MAX {
            let promotable: Vec<NodeId> = new_learners.iter().copied().collect();
            let incoming = if !promotable.is_empty() && rng.chance(500) {
                let id = *rng.pick(&promotable);
                new_learners.remove(&id);
                id
            } else {
                fresh()
            };
            new_voters.insert(incoming);
        }
    }
    MembershipChange::Joint {
        voters: new_voters,
        learners: new_learners,
        addresses: BTreeMap::new(),
    }
}

/// Adds `id` as a learner. Simulated members are reached by id, so
/// changes carry no addresses: the entries, and the schedules a seed
/// replays, stay what they were before configurations had addresses.
fn add_learner(id: NodeId) -> MembershipChange {
    MembershipChange::AddLearner { id, addr: None }
}
