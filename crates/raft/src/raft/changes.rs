//! Membership changes (thesis chapter 4) and leadership transfer (§3.10).

use crate::entry::Payload;
use crate::membership::{MembershipChange, MembershipError};
use crate::message::MessageBody;
use crate::types::NodeId;

use super::{Proposal, ProposeError, Raft};

impl Raft {
    /// Proposes a configuration change. It takes effect on this leader as
    /// soon as it is appended (§4.1). Only one change may be in flight, and
    /// only once the leader has committed an entry of its own term: that
    /// closes the known hole where a single-server change races an
    /// uncommitted change of a previous leader.
    pub fn propose_membership(
        &mut self,
        change: MembershipChange,
    ) -> Result<Proposal, ProposeError> {
        self.check_can_propose()?;
        if self.membership_index > self.log.committed() {
            return Err(ProposeError::ChangePending {
                pending_index: self.membership_index,
            });
        }
        if !self.log.committed_in_term(self.term) {
            return Err(ProposeError::LeaderNotReady);
        }
        let next = self.membership.apply(&change)?;
        let index = self.log.push(self.term, Payload::Membership(next));
        self.refresh_membership();
        self.after_leader_append();
        Ok(Proposal {
            term: self.term,
            index,
        })
    }

    /// Leaves a committed joint configuration with a second entry (§4.3).
    pub(super) fn leave_joint(&mut self) {
        let next = self.membership.left_joint();
        self.log.push(self.term, Payload::Membership(next));
        self.refresh_membership();
        self.after_leader_append();
    }

    /// A leader removed from the voters has committed its removal: it steps
    /// down, first asking the most up-to-date voter to campaign at once so
    /// the cluster does not wait an election timeout (§4.2.2).
    pub(super) fn hand_off_after_removal(&mut self) {
        let successor = self
            .role
            .leadership()
            .expect("only a leader hands off leadership")
            .progress
            .iter()
            .filter(|(id, _)| self.membership.is_voter(**id))
            .max_by_key(|(_, pr)| pr.match_index())
            .map(|(&id, pr)| (id, pr.match_index()));
        if let Some((id, matched)) = successor
            && matched == self.log.last_index()
        {
            self.send(id, MessageBody::TimeoutNow);
        }
        self.become_follower(self.term, None);
    }

    /// Hands leadership to `target` (§3.10): stop taking proposals, bring
    /// the target up to date, then tell it to campaign. Abandoned if it has
    /// not happened within an election timeout.
    pub fn transfer_leader(&mut self, target: NodeId) -> Result<(), ProposeError> {
        if !self.role.is_leader() {
            return Err(ProposeError::NotLeader {
                leader_hint: self.leader,
            });
        }
        if target == self.id() {
            return Ok(());
        }
        if !self.membership.voters().contains(&target) {
            return Err(MembershipError::UnknownMember(target).into());
        }
        self.leadership_mut().transfer = Some(target);
        self.election_elapsed = 0;
        if !self.maybe_finish_transfer(target) {
            self.send_append(target, true);
        }
        Ok(())
    }

    /// Sends TimeoutNow once the transfer target holds the whole log.
    pub(super) fn maybe_finish_transfer(&mut self, from: NodeId) -> bool {
        let last_index = self.log.last_index();
        // Also called after a commit, which may have ended this leadership.
        let Some(leader) = self.role.leadership_mut() else {
            return false;
        };
        let caught_up = leader
            .progress
            .get(&from)
            .is_some_and(|pr| pr.match_index() == last_index);
        if leader.transfer == Some(from) && caught_up {
            leader.timeout_now_sent = true;
            self.send(from, MessageBody::TimeoutNow);
            return true;
        }
        false
    }
}
