//! Leader election (§5.2), the election restriction (§5.4.1) and pre-vote
//! (§9.6).

use crate::entry::Payload;
use crate::message::MessageBody;
use crate::progress::Progress;
use crate::quorum::VoteResult;
use crate::types::{LogIndex, NodeId, Term};

use super::Raft;
use super::role::{Campaign, Leadership, RoleState};

impl Raft {
    /// Follower and candidate clock: campaign when no leader was heard
    /// from for the randomized election timeout.
    pub(super) fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.election_elapsed >= self.election_timeout && self.is_promotable() {
            self.start_campaign(self.config.pre_vote);
        }
    }

    /// Fast failover: the connection from `peer` closed. If `peer` is the
    /// leader, stop following it, so that vote requests are no longer
    /// ignored for its sake (§4.2.3), and campaign soon. The surviving
    /// voters campaign in order of id, two ticks apart, so they do not
    /// split their votes: by a voter's turn it has normally heard from the
    /// winner, which resets its timer. If the leader is alive after all,
    /// its other followers still refuse the pre-vote and its next message
    /// is followed again.
    pub(super) fn leader_maybe_lost(&mut self, peer: NodeId) {
        if !self.config.fast_failover
            || self.leader != Some(peer)
            || !matches!(self.role, RoleState::Follower)
            || !self.is_promotable()
        {
            return;
        }
        let me = self.id();
        let rank = self
            .membership
            .nodes()
            .into_iter()
            .filter(|&v| self.membership.is_voter(v) && v != peer && v < me)
            .count();
        let delay = 1 + 2 * u32::try_from(rank).unwrap_or(u32::MAX / 4);
        self.leader = None;
        self.election_elapsed = self
            .election_elapsed
            .max(self.election_timeout.saturating_sub(delay));
    }

    /// Campaigns for leadership: with `pre_vote`, first asks whether a
    /// majority would vote, without touching the term (§9.6).
    pub(super) fn start_campaign(&mut self, pre_vote: bool) {
        self.start_campaign_with(pre_vote, false);
    }

    /// `transfer` marks the campaign that a leadership transfer asked for;
    /// voters then skip leader stickiness (§3.10).
    pub(super) fn start_campaign_with(&mut self, pre_vote: bool, transfer: bool) {
        assert!(
            !self.role.is_leader(),
            "a leader never campaigns: it steps down first"
        );
        debug_assert!(self.is_promotable(), "only voters campaign (§4.2.1)");
        let me = self.id();
        let campaign_term = if pre_vote {
            self.role = RoleState::PreCandidate(Campaign::new(me));
            self.leader = None;
            self.term.next()
        } else {
            self.term = self.term.next();
            self.vote = Some(me);
            self.role = RoleState::Candidate(Campaign::new(me));
            self.leader = None;
            self.term
        };
        self.reset_election_timer();
        if self.tally(pre_vote) {
            return;
        }
        let membership = &self.membership;
        let voters: Vec<NodeId> = membership
            .nodes()
            .into_iter()
            .filter(|&id| id != me && membership.is_voter(id))
            .collect();
        for to in voters {
            let body = MessageBody::VoteRequest {
                pre_vote,
                last_log_index: self.log.last_index(),
                last_log_term: self.log.last_term(),
                transfer,
            };
            self.send_in_term(to, campaign_term, body);
        }
    }

    /// Grants a vote at most once per term, and only to a candidate whose
    /// log is at least as up to date as ours (§5.4.1).
    pub(super) fn handle_vote_request(
        &mut self,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        last_log_index: LogIndex,
        last_log_term: Term,
    ) {
        let can_vote = self.vote == Some(from)
            || (self.vote.is_none() && self.leader.is_none())
            || (pre_vote && term > self.term);
        let up_to_date = self.log.is_up_to_date(last_log_index, last_log_term);
        #[cfg(feature = "fault-injection")]
        let up_to_date = up_to_date || self.config.bugs.vote_without_log_check;
        let granted = can_vote && up_to_date;
        debug_assert!(
            term >= self.term && (pre_vote || term == self.term),
            "the term rules let through only vote requests of our term, or pre-votes for a later one"
        );
        if granted && !pre_vote {
            assert!(
                self.vote.is_none() || self.vote == Some(from),
                "one vote per term (§5.2): voted for {:?}, granting {from} in term {}",
                self.vote,
                self.term
            );
            self.vote = Some(from);
            self.election_elapsed = 0;
        }
        // A granted pre-vote answers in the term the candidate asked about,
        // so that it does not read the answer as news of a newer term.
        let answer_term = if granted { term } else { self.term };
        self.send_in_term(
            from,
            answer_term,
            MessageBody::VoteResponse { pre_vote, granted },
        );
    }

    /// Counts an answer to this node's campaign: a pre-vote answer only
    /// toward a pre-vote campaign, a vote only toward a real one.
    pub(super) fn handle_vote_response(
        &mut self,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        granted: bool,
    ) {
        let Some(campaign) = self.role.campaign_for_mut(pre_vote) else {
            return;
        };
        if !self.membership.is_voter(from) {
            return;
        }
        // A granted pre-vote answers in the term we would campaign in; any
        // other answer from a later term made us follow it before we got here.
        debug_assert!(
            term == self.term || (pre_vote && granted && term == self.term.next()),
            "votes are counted only in the candidate's term: answer of term {term} in term {}",
            self.term
        );
        campaign.votes.insert(from, granted);
        self.tally(pre_vote);
    }

    /// Counts votes; acts on a decided election. Returns whether it was
    /// decided.
    fn tally(&mut self, pre_vote: bool) -> bool {
        let votes = &self
            .role
            .campaign()
            .expect("votes are tallied only during a campaign")
            .votes;
        debug_assert_eq!(
            votes.get(&self.config.id),
            Some(&true),
            "a campaigning node votes for itself"
        );
        let vote_of = |id: NodeId| votes.get(&id).copied();
        let result = self.membership.vote_result(vote_of);
        #[cfg(feature = "fault-injection")]
        let result = if self.config.bugs.joint_incoming_majority_only {
            self.membership.left_joint().vote_result(vote_of)
        } else {
            result
        };
        match result {
            VoteResult::Won if pre_vote => {
                self.start_campaign(false);
                true
            }
            VoteResult::Won => {
                self.become_leader();
                true
            }
            VoteResult::Lost => {
                self.become_follower(self.term, None);
                true
            }
            VoteResult::Pending => false,
        }
    }

    /// A leadership transfer chose this node: campaign at once (§3.10).
    pub(super) fn handle_timeout_now(&mut self) {
        if !self.role.is_leader() && self.is_promotable() {
            self.start_campaign_with(false, true);
        }
    }

    /// Takes office: every follower starts in probe, and a blank entry of the
    /// new term lets entries of earlier terms commit (§5.4.2, §8).
    fn become_leader(&mut self) {
        assert!(
            matches!(self.role, RoleState::Candidate(_)),
            "only a candidate becomes leader, not a {:?}",
            self.role()
        );
        let me = self.id();
        assert_eq!(
            self.vote,
            Some(me),
            "a leader voted for itself in its term (§5.2)"
        );
        let next = self.log.last_index().next();
        let progress = self
            .membership
            .nodes()
            .into_iter()
            .filter(|&id| id != me)
            .map(|id| (id, Progress::new(next)))
            .collect();
        self.role = RoleState::Leader(Leadership::new(progress));
        self.leader = Some(me);
        self.reset_election_timer();
        self.log.push(self.term, Payload::Blank);
        self.after_leader_append();
    }
}
