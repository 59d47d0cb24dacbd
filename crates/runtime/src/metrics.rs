//! What a node publishes about itself, through a `tokio::sync::watch`.

use std::collections::BTreeMap;

use keel_raft::{LogIndex, Membership, NodeId, Role, Status, Term};
use keel_transport::TransportMetrics;

use crate::error::StopReason;
use crate::histogram::LatencyHistogram;

/// A node's state at one moment. Published at least once per tick and on
/// every change of role, term or leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metrics {
    /// This node.
    pub id: NodeId,
    /// Leader, follower or candidate (pre-candidate with pre-vote).
    pub role: Role,
    /// The current term.
    pub term: Term,
    /// The leader of `term`, once known.
    pub leader: Option<NodeId>,
    /// The highest index known to be committed.
    pub commit_index: LogIndex,
    /// The highest index the state machine has applied.
    pub applied_index: LogIndex,
    /// The highest index durable in this node's log.
    pub persisted_index: LogIndex,
    /// The last index in this node's log, durable or not.
    pub last_index: LogIndex,
    /// The log's first index; entries before it are in the snapshot.
    pub first_index: LogIndex,
    /// The configuration in effect (the latest appended).
    pub membership: Membership,
    /// Leader only: each follower's replication state, learners included.
    pub peers: BTreeMap<NodeId, PeerMetrics>,
    /// Proposals appended and not yet answered.
    pub pending_proposals: usize,
    /// Since start: this node's proposals (commands and configuration
    /// changes) whose entry committed.
    pub proposals_committed: u64,
    /// Since start: this node's proposals whose entry was appended but
    /// that failed (dropped, outcome unknown, node stopped). Refusals
    /// before appending (not leader, overloaded) are not counted, so
    /// appended = committed + failed + pending.
    pub proposals_failed: u64,
    /// Snapshots this node created from its state machine.
    pub snapshots_created: u64,
    /// Snapshots this node installed from a leader.
    pub snapshots_installed: u64,
    /// Since start: the elections this node took part in as a candidate.
    pub elections: ElectionCounters,
    /// The peer transport's counters (messages, drops, refusals).
    pub transport: TransportMetrics,
    /// Per group commit: writing the log and making it durable.
    pub log_append: LatencyHistogram,
    /// Per group commit: the log's `sync` (with the file store, the write
    /// syscalls and the `fdatasync`).
    pub log_sync: LatencyHistogram,
    /// Set when the node has stopped, with the reason.
    pub stopped: Option<StopReason>,
}

/// The leader's view of one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerMetrics {
    /// The highest index known to be replicated on the follower.
    pub match_index: LogIndex,
    /// The next index the leader will send.
    pub next_index: LogIndex,
    /// How many entries the follower is known to lack: the leader's last
    /// index less `match_index`. A follower that is down or cut off lags
    /// by every entry appended since; one that keeps up stays near 0.
    pub lag: u64,
}

/// How often this node campaigned and won, counted from the role and term
/// it holds after each input, so that watching elections costs three
/// counters rather than an event log. An observer that samples these
/// counters on several members can tell who campaigned, with pre-vote or
/// vote, and who won, without seeing every transition itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ElectionCounters {
    /// Times this node became a pre-candidate (§9.6): it asked whether it
    /// would win, without raising its term.
    pub pre_votes_started: u64,
    /// Times this node raised its term to campaign. A single voter that
    /// passes through pre-candidate and candidate within one input is
    /// counted here (it campaigned) but not as a pre-vote.
    pub votes_started: u64,
    /// Terms this node became leader of.
    pub elections_won: u64,
    /// The role and term seen after the last input.
    last_role: Option<Role>,
    last_term: Term,
}

impl ElectionCounters {
    /// Counts what changed since the last observation. A node's term only
    /// grows, and it raises its own term only to campaign, so a higher
    /// term together with the candidate or leader role is a campaign.
    pub(crate) fn observe(&mut self, role: Role, term: Term) {
        let role_changed = self.last_role != Some(role);
        let term_changed = term != self.last_term;
        if self.last_role.is_some() {
            match role {
                Role::PreCandidate if role_changed => self.pre_votes_started += 1,
                Role::Candidate if term_changed => self.votes_started += 1,
                Role::Leader if term_changed || role_changed => {
                    if term_changed {
                        self.votes_started += 1;
                    }
                    self.elections_won += 1;
                }
                _ => {}
            }
        }
        self.last_role = Some(role);
        self.last_term = term;
    }
}

impl Metrics {
    pub(crate) fn from_status(status: Status) -> Metrics {
        Metrics {
            id: status.id,
            role: status.role,
            term: status.term,
            leader: status.leader,
            commit_index: status.commit,
            applied_index: status.applied,
            persisted_index: status.persisted,
            last_index: status.last_index,
            first_index: status.first_index,
            membership: status.membership,
            peers: status
                .progress
                .iter()
                .map(|(&id, p)| {
                    let peer = PeerMetrics {
                        match_index: p.match_index(),
                        next_index: p.next_index(),
                        lag: status.last_index.0.saturating_sub(p.match_index().0),
                    };
                    (id, peer)
                })
                .collect(),
            pending_proposals: 0,
            proposals_committed: 0,
            proposals_failed: 0,
            snapshots_created: 0,
            snapshots_installed: 0,
            elections: ElectionCounters::default(),
            transport: TransportMetrics::default(),
            log_append: LatencyHistogram::default(),
            log_sync: LatencyHistogram::default(),
            stopped: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(steps: &[(Role, u64)]) -> ElectionCounters {
        let mut counters = ElectionCounters::default();
        for &(role, term) in steps {
            counters.observe(role, Term(term));
        }
        counters
    }

    #[test]
    fn pre_vote_then_vote_then_win_counts_each_once() {
        let c = observed(&[
            (Role::Follower, 1),
            (Role::PreCandidate, 1),
            (Role::PreCandidate, 1),
            (Role::Candidate, 2),
            (Role::Candidate, 2),
            (Role::Leader, 2),
            (Role::Leader, 2),
        ]);
        assert_eq!(
            (c.pre_votes_started, c.votes_started, c.elections_won),
            (1, 1, 1)
        );
    }

    #[test]
    fn split_vote_campaigns_again_in_a_higher_term() {
        let c = observed(&[
            (Role::Follower, 1),
            (Role::Candidate, 2),
            (Role::Candidate, 3),
            (Role::Follower, 3),
        ]);
        assert_eq!(
            (c.pre_votes_started, c.votes_started, c.elections_won),
            (0, 2, 0)
        );
    }

    #[test]
    fn single_voter_campaigning_within_one_input_counts_vote_and_win() {
        let c = observed(&[(Role::Follower, 0), (Role::Leader, 1)]);
        assert_eq!(
            (c.pre_votes_started, c.votes_started, c.elections_won),
            (0, 1, 1)
        );
    }

    #[test]
    fn following_a_higher_term_is_no_campaign() {
        let c = observed(&[(Role::Leader, 4), (Role::Follower, 5)]);
        assert_eq!(
            c,
            ElectionCounters {
                last_role: Some(Role::Follower),
                last_term: Term(5),
                ..Default::default()
            }
        );
    }
}
