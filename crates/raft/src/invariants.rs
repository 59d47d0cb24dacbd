//! Checks of the node's internal invariants, run by tests and the
//! simulator after every step.

use crate::entry::Payload;
use crate::progress::ProgressState;
use crate::raft::Raft;
use crate::types::Role;

/// A broken invariant: a bug in the core, never a caller error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("node {node}: invariant violated: {what}")]
pub struct InvariantViolation {
    pub node: u64,
    pub what: String,
}

impl Raft {
    /// Verifies every local invariant; returns the first one broken.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        let fail = |what: String| {
            Err(InvariantViolation {
                node: self.id().0,
                what,
            })
        };
        let s = self.status();
        if !(s.applied <= s.commit && s.commit <= s.last_index) {
            return fail(format!(
                "applied {} <= commit {} <= last {} does not hold",
                s.applied, s.commit, s.last_index
            ));
        }
        if s.persisted > s.last_index {
            return fail(format!(
                "persisted {} beyond last {}",
                s.persisted, s.last_index
            ));
        }
        if s.first_index > s.last_index.next() {
            return fail(format!(
                "first {} beyond last {} + 1",
                s.first_index, s.last_index
            ));
        }
        let mut previous_term = crate::types::Term(0);
        let mut pending_changes = 0;
        let mut index = s.first_index;
        while index <= s.last_index {
            let entry = self.entry(index).expect("index within the log");
            if entry.index != index {
                return fail(format!(
                    "entry at position {index} claims index {}",
                    entry.index
                ));
            }
            if entry.term < previous_term || entry.term > s.term {
                return fail(format!(
                    "entry {index} has out-of-order term {}",
                    entry.term
                ));
            }
            if matches!(entry.payload, Payload::Membership(_)) && index > s.commit {
                pending_changes += 1;
            }
            previous_term = entry.term;
            index = index.next();
        }
        if self.role() == Role::Leader {
            if s.leader != Some(s.id) || s.vote != Some(s.id) {
                return fail(format!(
                    "leader of term {} has leader {:?} and vote {:?}",
                    s.term, s.leader, s.vote
                ));
            }
            if pending_changes > 1 {
                return fail(format!("{pending_changes} uncommitted membership changes"));
            }
            // While joint, decisions need both halves (§4.3): the leader
            // must track every voter of the incoming and the outgoing
            // configuration, and every learner.
            if let Some(untracked) = s
                .membership
                .nodes()
                .into_iter()
                .find(|id| *id != s.id && !s.progress.contains_key(id))
            {
                return fail(format!("leader does not track member {untracked}"));
            }
            for (id, pr) in &s.progress {
                if pr.match_index() >= pr.next_index() || pr.next_index() > s.last_index.next() {
                    return fail(format!(
                        "progress of {id}: match {} next {} last {}",
                        pr.match_index(),
                        pr.next_index(),
                        s.last_index
                    ));
                }
                if let ProgressState::Replicate { inflight } = pr.state()
                    && inflight.len() > self.config().max_inflight_msgs
                {
                    return fail(format!("{} messages in flight to {id}", inflight.len()));
                }
                if !s.membership.contains(*id) {
                    return fail(format!("progress kept for non-member {id}"));
                }
            }
        }
        Ok(())
    }
}
