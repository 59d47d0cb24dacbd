//! The leader's side of replication (§5.3), commitment (§5.4.2),
//! heartbeats and check-quorum (§6.2).

use crate::message::{AppendResult, MessageBody};
use crate::progress::ProgressState;
use crate::types::{LogIndex, NodeId};

use super::Raft;
use super::role::Leadership;

impl Raft {
    /// Leader clock: heartbeats, check-quorum, and abandoning a leadership
    /// transfer that did not happen within an election timeout.
    pub(super) fn tick_leader(&mut self) {
        debug_assert!(
            self.heartbeat_elapsed < self.config.heartbeat_ticks
                && self.election_elapsed < self.config.election_ticks,
            "the leader clock fires every heartbeat and check-quorum round on time"
        );
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.config.election_ticks {
            self.election_elapsed = 0;
            let steps_down = self.config.check_quorum && !self.quorum_recently_active();
            #[cfg(feature = "fault-injection")]
            let steps_down = steps_down && !self.config.bugs.check_quorum_ignored;
            if steps_down {
                self.become_follower(self.term, None);
                return;
            }
            self.leadership_mut().transfer = None;
        }
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
    }

    /// Whether a quorum was heard from since the last check; clears the
    /// marks for the next round.
    fn quorum_recently_active(&mut self) -> bool {
        let me = self.id();
        let leader = self
            .role
            .leadership_mut()
            .expect("check-quorum runs only while leading");
        let progress = &leader.progress;
        let active = self
            .membership
            .has_quorum(|id| id == me || progress.get(&id).is_some_and(|p| p.is_recently_active()));
        for pr in leader.progress.values_mut() {
            pr.start_activity_round();
        }
        active
    }

    /// The leader's own state. Callers run only while leading: a handler of
    /// a message or event that may reach any role looks the state up with
    /// `self.role.leadership_mut()` instead.
    pub(super) fn leadership_mut(&mut self) -> &mut Leadership {
        self.role
            .leadership_mut()
            .expect("called only while leading")
    }

    /// After the leader appended to its log: replicate with the next Ready.
    pub(super) fn after_leader_append(&mut self) {
        self.leadership_mut().entries_unsent = true;
    }

    /// Sends new entries to every follower that can take them; with
    /// `even_if_empty`, also the commit index to those that have every
    /// entry (a [`MessageBody::Commit`] to a replicating follower, an
    /// empty AppendEntries to a probed one, whose answer the probe needs).
    pub(super) fn broadcast_append(&mut self, even_if_empty: bool) {
        let peers: Vec<NodeId> = self.leadership_mut().progress.keys().copied().collect();
        for to in peers {
            // A pipelined follower gets as many messages as its window
            // allows; a probing one stops after the first.
            if self.send_append(to, even_if_empty) {
                while self.send_append(to, false) {}
            }
        }
    }

    /// Sends `to` the entries from its `next_index`, or a snapshot when they
    /// were compacted. Returns whether anything was sent.
    pub(super) fn send_append(&mut self, to: NodeId, even_if_empty: bool) -> bool {
        let max_inflight = self.config.max_inflight_msgs;
        // Also called after a commit, which may have made this leader step
        // down (its own removal committed): then there is no one to send to.
        let Some(pr) = self
            .role
            .leadership()
            .and_then(|leader| leader.progress.get(&to))
        else {
            return false;
        };
        if pr.is_paused(max_inflight) {
            return false;
        }
        let next_index = pr.next_index();
        let replicating = matches!(pr.state(), ProgressState::Replicate { .. });
        let prev_log_index = next_index.prev();
        let Some(prev_log_term) = self.log.term(prev_log_index) else {
            self.send_snapshot(to);
            return true;
        };
        let entries = if next_index <= self.log.last_index() {
            self.log.entries_from(next_index, self.config.max_msg_bytes)
        } else {
            Vec::new()
        };
        if entries.is_empty() && replicating {
            if even_if_empty {
                let body = MessageBody::Commit {
                    prev_log_index,
                    prev_log_term,
                    leader_commit: self.log.committed(),
                };
                self.send(to, body);
            }
            // Nothing is in flight for a Commit: the window stays as it is.
            return false;
        }
        let last = entries.last().map_or(prev_log_index, |e| e.index);
        self.role
            .progress_mut(to)
            .expect("checked above")
            .sent(last);
        let body = MessageBody::AppendEntries {
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit: self.log.committed(),
        };
        self.send(to, body);
        true
    }

    fn send_snapshot(&mut self, to: NodeId) {
        let meta = self.log.snapshot().clone();
        let pr = self.role.progress_mut(to).expect("caller checked the peer");
        pr.become_snapshot(meta.index);
        self.send(to, MessageBody::InstallSnapshot { meta });
    }

    /// Heartbeats carry the commit index only up to what each follower is
    /// known to hold, so a follower never commits an entry it may lack.
    pub(super) fn broadcast_heartbeat(&mut self) {
        let now = self.ticks;
        let committed = self.log.committed();
        let leader = self.leadership_mut();
        let round = leader.reads.start_round(now);
        let beats: Vec<_> = leader
            .progress
            .iter()
            .map(|(&id, pr)| (id, pr.match_index().min(committed)))
            .collect();
        for (to, commit) in beats {
            self.send(to, MessageBody::Heartbeat { commit, round });
        }
    }

    pub(super) fn handle_append_response(&mut self, from: NodeId, result: AppendResult) {
        // A follower can only match entries this leader sent it, and a
        // leader's log only grows during its term: a claim beyond its last
        // index comes from a broken or forged peer and is ignored.
        if let AppendResult::Success { match_index } = result
            && match_index > self.log.last_index()
        {
            return;
        }
        let Some(pr) = self.role.progress_mut(from) else {
            return;
        };
        pr.heard_from();
        match result {
            AppendResult::Success { match_index } => {
                if pr.matched(match_index) {
                    self.maybe_commit();
                }
                while self.send_append(from, false) {}
                self.maybe_finish_transfer(from);
            }
            AppendResult::Conflict {
                rejected,
                hint_index,
                hint_term,
            } => {
                // §5.3's optimisation: skip every entry of the conflicting
                // term at once instead of one entry per round trip.
                let retry_at = hint_term
                    .and_then(|t| self.log.last_index_of_term(t, rejected))
                    .map_or(hint_index, LogIndex::next);
                let pr = self.role.progress_mut(from).expect("looked up above");
                if pr.rejected(rejected, retry_at) {
                    self.send_append(from, true);
                }
            }
        }
    }

    pub(super) fn handle_heartbeat_response(&mut self, from: NodeId, round: u64) {
        // Acknowledging a round this leader has not started would confirm
        // reads still waiting for it (§6.4) without any heartbeat: only a
        // broken or forged peer sends one, and it is ignored.
        if self
            .role
            .leadership()
            .is_some_and(|leader| round > leader.reads.last_started_round())
        {
            return;
        }
        let max_inflight = self.config.max_inflight_msgs;
        let last_index = self.log.last_index();
        let Some(pr) = self.role.progress_mut(from) else {
            return;
        };
        pr.heard_from();
        pr.heartbeat_acked(round);
        pr.resume(max_inflight);
        if pr.match_index() < last_index {
            // Even with nothing new to send: if earlier messages were lost,
            // the follower rejects this one and probing starts over.
            self.send_append(from, true);
        }
        self.confirm_reads();
    }

    /// The caller reports whether a snapshot reached `to`.
    pub fn report_snapshot(&mut self, to: NodeId, success: bool) {
        if let Some(pr) = self.role.progress_mut(to) {
            pr.snapshot_done(success);
        }
    }

    /// The caller could not reach `to`; stop streaming to it and probe.
    pub fn report_unreachable(&mut self, to: NodeId) {
        if let Some(pr) = self.role.progress_mut(to) {
            pr.unreachable();
        }
    }

    /// Advances the commit index to the highest index stored on a quorum,
    /// but only if that entry is from the current term: counting replicas of
    /// an older term's entry is unsafe (§5.4.2, Figure 8).
    pub(super) fn maybe_commit(&mut self) -> bool {
        let me = self.id();
        let persisted = self.log.persisted();
        let progress = &self
            .role
            .leadership()
            .expect("only a leader commits by counting replicas")
            .progress;
        let match_of = |id: NodeId| {
            if id == me {
                Some(persisted)
            } else {
                progress.get(&id).map(|p| p.match_index())
            }
        };
        let quorum_index = self.membership.committed_index(match_of);
        #[cfg(feature = "fault-injection")]
        let quorum_index = if self.config.bugs.joint_incoming_majority_only {
            self.membership.left_joint().committed_index(match_of)
        } else {
            quorum_index
        };
        let quorum_index = quorum_index.min(self.log.last_index());
        let own_term = self.log.term(quorum_index) == Some(self.term);
        #[cfg(feature = "fault-injection")]
        let own_term = own_term || self.config.bugs.commit_previous_term_by_counting;
        if quorum_index <= self.log.committed() || !own_term {
            return false;
        }
        debug_assert!(
            persisted <= self.log.last_index(),
            "the leader's own durable index {persisted} lies within its log"
        );
        self.log.commit_to(quorum_index);
        self.leadership_mut().commit_unannounced = true;
        self.after_commit();
        true
    }

    /// Reacts to a newly committed configuration: leave a joint one (§4.3),
    /// or step down if this leader is no longer a voter (§4.2.2). Also frees
    /// reads that waited for the first commit of the term.
    fn after_commit(&mut self) {
        self.release_reads_awaiting_commit();
        if self.membership_index > self.log.committed() {
            return;
        }
        if self.membership.is_joint() {
            self.leave_joint();
        } else if !self.membership.is_voter(self.id()) {
            self.hand_off_after_removal();
        }
    }
}
