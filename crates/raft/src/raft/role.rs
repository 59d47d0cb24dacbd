//! A node's role, and the state that exists only in that role.
//!
//! The state a role needs lives inside its variant: a follower has none, a
//! campaigning node its votes, a leader its followers' progress, its
//! leadership transfer and its reads in confirmation. Leaving a role drops
//! its state with it, so no handler can read a leader's progress on a
//! follower, and no transition has to remember which fields to clear.

use std::collections::BTreeMap;

use crate::progress::Progress;
use crate::types::{NodeId, Role};

use super::read::LeaderReads;

/// The role a node is in, owning that role's state.
#[derive(Debug)]
pub(super) enum RoleState {
    Follower,
    /// Asking for pre-votes in the next term without adopting it (§9.6).
    PreCandidate(Campaign),
    Candidate(Campaign),
    Leader(Leadership),
}

/// One campaign's answers.
///
/// Invariant: the node's own vote is in `votes`, granted.
#[derive(Debug)]
pub(super) struct Campaign {
    /// Answers received, this node's own included.
    pub(super) votes: BTreeMap<NodeId, bool>,
}

/// What a leader knows and does that no other role does.
#[derive(Debug)]
pub(super) struct Leadership {
    /// Every other member's replication state.
    ///
    /// Invariant: exactly the members of the configuration in force, this
    /// node excepted.
    pub(super) progress: BTreeMap<NodeId, Progress>,
    /// The node leadership is being handed to (§3.10).
    pub(super) transfer: Option<NodeId>,
    /// TimeoutNow went out this term, so some voter may elect another
    /// leader at any moment and no lease can be trusted.
    pub(super) timeout_now_sent: bool,
    /// Reads waiting for this leader to confirm it still leads.
    pub(super) reads: LeaderReads,
    /// The commit index advanced since followers were last told; one
    /// AppendEntries round goes out with the next Ready rather than one per
    /// acknowledgement.
    pub(super) commit_unannounced: bool,
    /// Entries were appended since the last broadcast. All proposals made
    /// between two Readies share one AppendEntries per follower (batching).
    pub(super) entries_unsent: bool,
}

impl Campaign {
    /// A campaign of `me`, which votes for itself.
    pub(super) fn new(me: NodeId) -> Campaign {
        Campaign {
            votes: BTreeMap::from([(me, true)]),
        }
    }
}

impl Leadership {
    /// A new leader's state: it knows nothing of its followers yet beyond
    /// where to start probing them.
    pub(super) fn new(progress: BTreeMap<NodeId, Progress>) -> Leadership {
        Leadership {
            progress,
            transfer: None,
            timeout_now_sent: false,
            reads: LeaderReads::default(),
            commit_unannounced: false,
            entries_unsent: false,
        }
    }

    /// Whether the next Ready has replication or a heartbeat round to send.
    pub(super) fn has_unsent_work(&self) -> bool {
        self.commit_unannounced || self.entries_unsent || self.reads.has_unstarted_round()
    }
}

impl RoleState {
    /// The role's name, as reported in [`crate::Status`] and
    /// [`crate::SoftState`].
    pub(super) fn role(&self) -> Role {
        match self {
            RoleState::Follower => Role::Follower,
            RoleState::PreCandidate(_) => Role::PreCandidate,
            RoleState::Candidate(_) => Role::Candidate,
            RoleState::Leader(_) => Role::Leader,
        }
    }

    pub(super) fn is_leader(&self) -> bool {
        matches!(self, RoleState::Leader(_))
    }

    pub(super) fn leadership(&self) -> Option<&Leadership> {
        match self {
            RoleState::Leader(leadership) => Some(leadership),
            _ => None,
        }
    }

    pub(super) fn leadership_mut(&mut self) -> Option<&mut Leadership> {
        match self {
            RoleState::Leader(leadership) => Some(leadership),
            _ => None,
        }
    }

    /// The campaign this node runs, if it is a pre-candidate or candidate.
    pub(super) fn campaign(&self) -> Option<&Campaign> {
        match self {
            RoleState::PreCandidate(campaign) | RoleState::Candidate(campaign) => Some(campaign),
            _ => None,
        }
    }

    /// The campaign whose answers a vote response of this kind counts
    /// toward: a pre-vote answer only a pre-candidate's, a vote only a
    /// candidate's.
    pub(super) fn campaign_for_mut(&mut self, pre_vote: bool) -> Option<&mut Campaign> {
        match (self, pre_vote) {
            (RoleState::PreCandidate(campaign), true) | (RoleState::Candidate(campaign), false) => {
                Some(campaign)
            }
            _ => None,
        }
    }

    /// The progress of follower `id`, if this node leads and tracks it.
    pub(super) fn progress_mut(&mut self, id: NodeId) -> Option<&mut Progress> {
        self.leadership_mut()?.progress.get_mut(&id)
    }
}
