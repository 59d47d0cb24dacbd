//! Cluster configurations: voters, learners, and joint configurations
//! (thesis chapter 4).
//!
//! A configuration is stored whole in a log entry rather than as a delta, so
//! any node can tell the configuration in force at an index by looking at the
//! last configuration entry at or before it.

use std::collections::BTreeSet;

use crate::quorum::{self, VoteResult};
use crate::types::{LogIndex, NodeId};

/// A cluster configuration. While `outgoing` is non-empty the configuration is
/// *joint* (§4.3): decisions need a majority of `voters` **and** of `outgoing`.
///
/// Invariant: `learners` and `voters` are disjoint; a node may be both an
/// outgoing voter and a learner while it is being demoted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    voters: BTreeSet<NodeId>,
    outgoing: BTreeSet<NodeId>,
    learners: BTreeSet<NodeId>,
}

/// A change a caller asks the leader to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    /// Add a non-voting member that receives the log (§4.2.1).
    AddLearner(NodeId),
    /// Add one voter directly (single-server change, §4.1).
    AddVoter(NodeId),
    /// Turn a learner into a voter (single-server change).
    Promote(NodeId),
    /// Remove one voter or learner (single-server change).
    Remove(NodeId),
    /// Move to an arbitrary configuration through a joint configuration
    /// (§4.3). Leaving the joint configuration happens automatically once
    /// entering it has committed.
    Joint {
        /// The voters of the configuration to move to.
        voters: BTreeSet<NodeId>,
        /// Its learners.
        learners: BTreeSet<NodeId>,
    },
    /// Leave the current joint configuration now.
    LeaveJoint,
}

/// Why a membership change cannot be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// Adding a node that is already a voter or learner.
    #[error("node {0} is already a member")]
    AlreadyMember(NodeId),
    /// Promoting or removing a node that is not a member.
    #[error("node {0} is not a member of the cluster")]
    UnknownMember(NodeId),
    /// Promoting a node that already votes.
    #[error("node {0} is not a learner, so it cannot be promoted")]
    NotALearner(NodeId),
    /// The change would leave no one to elect a leader.
    #[error("a configuration must keep at least one voter")]
    NoVoters,
    /// Node id 0 means "no node" in messages and votes.
    #[error("node id 0 is reserved and cannot be a member")]
    ReservedId,
    /// A change proposed while a joint configuration is in force (§4.3).
    #[error("the configuration is joint; leave it before making another change")]
    InJointConfiguration,
    /// Leaving a joint configuration when none is in force.
    #[error("the configuration is not joint, so there is nothing to leave")]
    NotJoint,
    /// A single-server change (§4.1) that would add or remove more than
    /// one voter.
    #[error("a single-server change may alter at most one voter; use a joint change")]
    TooManyVoterChanges,
    /// A node named both voter and learner.
    #[error("voters and learners overlap at node {0}")]
    VoterIsLearner(NodeId),
}

impl Membership {
    /// A plain (non-joint) configuration.
    pub fn new(
        voters: impl IntoIterator<Item = NodeId>,
        learners: impl IntoIterator<Item = NodeId>,
    ) -> Result<Membership, MembershipError> {
        let voters: BTreeSet<NodeId> = voters.into_iter().collect();
        let learners: BTreeSet<NodeId> = learners.into_iter().collect();
        Self::validated(voters, BTreeSet::new(), learners)
    }

    /// Rebuilds a configuration from its three sets, e.g. when decoding.
    pub fn from_parts(
        voters: BTreeSet<NodeId>,
        outgoing: BTreeSet<NodeId>,
        learners: BTreeSet<NodeId>,
    ) -> Result<Membership, MembershipError> {
        Self::validated(voters, outgoing, learners)
    }

    fn validated(
        voters: BTreeSet<NodeId>,
        outgoing: BTreeSet<NodeId>,
        learners: BTreeSet<NodeId>,
    ) -> Result<Membership, MembershipError> {
        if voters.is_empty() {
            return Err(MembershipError::NoVoters);
        }
        let all = voters.iter().chain(&outgoing).chain(&learners);
        if all.into_iter().any(|id| id.0 == 0) {
            return Err(MembershipError::ReservedId);
        }
        if let Some(&id) = voters.intersection(&learners).next() {
            return Err(MembershipError::VoterIsLearner(id));
        }
        Ok(Membership {
            voters,
            outgoing,
            learners,
        })
    }

    /// The incoming (or only) voter set.
    pub fn voters(&self) -> &BTreeSet<NodeId> {
        &self.voters
    }

    /// The outgoing voter set; empty unless joint.
    pub fn outgoing(&self) -> &BTreeSet<NodeId> {
        &self.outgoing
    }

    /// The nodes that receive the log without voting.
    pub fn learners(&self) -> &BTreeSet<NodeId> {
        &self.learners
    }

    /// Whether two voter sets are in force (§4.3).
    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Whether `id` votes in either half of the configuration.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.outgoing.contains(&id)
    }

    /// Whether `id` receives the log in this configuration.
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.learners.contains(&id)
    }

    /// Every node that receives the log, each once, in id order.
    pub fn nodes(&self) -> BTreeSet<NodeId> {
        let mut all = self.voters.clone();
        all.extend(&self.outgoing);
        all.extend(&self.learners);
        all
    }

    /// How many nodes receive the log.
    pub fn node_count(&self) -> usize {
        self.nodes().len()
    }

    /// The highest index stored on a majority of each voter set (§4.3).
    pub fn committed_index(&self, match_of: impl Fn(NodeId) -> Option<LogIndex>) -> LogIndex {
        let incoming = quorum::committed_index(&self.voters, &match_of);
        let outgoing = quorum::committed_index(&self.outgoing, &match_of);
        incoming.min(outgoing)
    }

    /// The largest `v` that a majority of each voter set has reached.
    pub fn majority_value(&self, value_of: impl Fn(NodeId) -> u64) -> u64 {
        let incoming = quorum::majority_value(&self.voters, &value_of);
        incoming.min(quorum::majority_value(&self.outgoing, &value_of))
    }

    /// The election outcome given each voter's answer: a joint configuration
    /// needs both halves (§4.3).
    pub fn vote_result(&self, vote_of: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
        let incoming = quorum::vote_result(&self.voters, &vote_of);
        let outgoing = quorum::vote_result(&self.outgoing, &vote_of);
        match (incoming, outgoing) {
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            _ => VoteResult::Pending,
        }
    }

    /// Whether the nodes for which `active` holds form a quorum.
    pub fn has_quorum(&self, active: impl Fn(NodeId) -> bool) -> bool {
        self.vote_result(|id| Some(active(id))) == VoteResult::Won
    }

    /// The configuration `change` leads to from this one.
    pub fn apply(&self, change: &MembershipChange) -> Result<Membership, MembershipError> {
        let single = |m: Membership| -> Result<Membership, MembershipError> {
            if self.is_joint() {
                return Err(MembershipError::InJointConfiguration);
            }
            let changed = self.voters.symmetric_difference(&m.voters).count();
            if changed > 1 {
                return Err(MembershipError::TooManyVoterChanges);
            }
            Ok(m)
        };
        match change {
            MembershipChange::AddLearner(id) => {
                if self.contains(*id) {
                    return Err(MembershipError::AlreadyMember(*id));
                }
                let mut learners = self.learners.clone();
                learners.insert(*id);
                single(Self::validated(
                    self.voters.clone(),
                    BTreeSet::new(),
                    learners,
                )?)
            }
            MembershipChange::AddVoter(id) => {
                if self.contains(*id) {
                    return Err(MembershipError::AlreadyMember(*id));
                }
                let mut voters = self.voters.clone();
                voters.insert(*id);
                single(Self::validated(
                    voters,
                    BTreeSet::new(),
                    self.learners.clone(),
                )?)
            }
            MembershipChange::Promote(id) => {
                if !self.learners.contains(id) {
                    return Err(MembershipError::NotALearner(*id));
                }
                let (mut voters, mut learners) = (self.voters.clone(), self.learners.clone());
                learners.remove(id);
                voters.insert(*id);
                single(Self::validated(voters, BTreeSet::new(), learners)?)
            }
            MembershipChange::Remove(id) => {
                if !self.contains(*id) {
                    return Err(MembershipError::UnknownMember(*id));
                }
                let (mut voters, mut learners) = (self.voters.clone(), self.learners.clone());
                voters.remove(id);
                learners.remove(id);
                single(Self::validated(voters, BTreeSet::new(), learners)?)
            }
            MembershipChange::Joint { voters, learners } => {
                if self.is_joint() {
                    return Err(MembershipError::InJointConfiguration);
                }
                let target = Self::validated(voters.clone(), BTreeSet::new(), learners.clone())?;
                Ok(Membership {
                    outgoing: self.voters.clone(),
                    ..target
                })
            }
            MembershipChange::LeaveJoint => {
                if !self.is_joint() {
                    return Err(MembershipError::NotJoint);
                }
                Ok(self.left_joint())
            }
        }
    }

    /// The configuration after leaving joint: the incoming voters and the
    /// learners (outgoing voters not in either are removed).
    pub fn left_joint(&self) -> Membership {
        Membership {
            voters: self.voters.clone(),
            outgoing: BTreeSet::new(),
            learners: self.learners.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(ids: &[u64]) -> BTreeSet<NodeId> {
        ids.iter().copied().map(NodeId).collect()
    }

    #[test]
    fn section_4_3_joint_commit_needs_both_majorities() {
        let joint = Membership::from_parts(set(&[4, 5, 6]), set(&[1, 2, 3]), set(&[])).unwrap();
        // Old majority has index 9, new majority only has 2.
        let matches = |id: NodeId| Some(LogIndex(if id.0 <= 3 { 9 } else { 2 }));
        assert_eq!(joint.committed_index(matches), LogIndex(2));
    }

    #[test]
    fn section_4_2_1_learners_never_count_toward_quorum() {
        let m = Membership::new(set(&[1]), set(&[2, 3])).unwrap();
        let matches = |id: NodeId| Some(LogIndex(if id.0 == 1 { 1 } else { 7 }));
        assert_eq!(m.committed_index(matches), LogIndex(1));
        assert_eq!(m.vote_result(|id| Some(id.0 != 1)), VoteResult::Lost);
    }

    #[test]
    fn single_server_change_rejects_two_voter_changes() {
        let m = Membership::new(set(&[1, 2, 3]), set(&[4])).unwrap();
        assert_eq!(
            m.apply(&MembershipChange::Promote(NodeId(4)))
                .unwrap()
                .voters(),
            &set(&[1, 2, 3, 4])
        );
        assert_eq!(
            m.apply(&MembershipChange::Promote(NodeId(3))),
            Err(MembershipError::NotALearner(NodeId(3)))
        );
        let joint = m
            .apply(&MembershipChange::Joint {
                voters: set(&[4, 5]),
                learners: set(&[]),
            })
            .unwrap();
        assert!(joint.is_joint());
        assert_eq!(
            joint.apply(&MembershipChange::AddLearner(NodeId(9))),
            Err(MembershipError::InJointConfiguration)
        );
        assert_eq!(
            joint.apply(&MembershipChange::LeaveJoint).unwrap().voters(),
            &set(&[4, 5])
        );
    }

    #[test]
    fn removing_the_last_voter_is_refused() {
        let m = Membership::new(set(&[1]), set(&[])).unwrap();
        assert_eq!(
            m.apply(&MembershipChange::Remove(NodeId(1))),
            Err(MembershipError::NoVoters)
        );
    }

    proptest! {
        /// A joint decision is exactly the conjunction of both halves'
        /// decisions, whatever the overlap between them.
        #[test]
        fn joint_quorum_is_the_conjunction_of_both_halves(
            old in proptest::collection::btree_set(1u64..8, 1..6),
            new in proptest::collection::btree_set(1u64..8, 1..6),
            granted in proptest::collection::btree_set(1u64..8, 0..8),
            matches in proptest::collection::vec(0u64..20, 8),
        ) {
            let old: BTreeSet<NodeId> = old.into_iter().map(NodeId).collect();
            let new: BTreeSet<NodeId> = new.into_iter().map(NodeId).collect();
            let joint = Membership::from_parts(new.clone(), old.clone(), BTreeSet::new()).unwrap();
            let active = |id: NodeId| granted.contains(&id.0);
            let both = quorum::vote_result(&old, |id| Some(active(id))) == VoteResult::Won
                && quorum::vote_result(&new, |id| Some(active(id))) == VoteResult::Won;
            prop_assert_eq!(joint.has_quorum(active), both);

            let m = |id: NodeId| Some(LogIndex(matches[id.0 as usize]));
            let expected = quorum::committed_index(&old, m).min(quorum::committed_index(&new, m));
            prop_assert_eq!(joint.committed_index(m), expected);
        }
    }
}
