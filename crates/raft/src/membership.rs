//! Cluster configurations: voters, learners, and joint configurations
//! (thesis chapter 4).
//!
//! A configuration is stored whole in a log entry rather than as a delta, so
//! any node can tell the configuration in force at an index by looking at the
//! last configuration entry at or before it.
//!
//! A configuration also records where its members can be reached: an
//! address per member, changed through the log like the voter sets, so
//! that every node (and every node added later, from the log or a
//! snapshot) knows the same addresses. The core never reads them; the
//! runtime's transport does.

use std::collections::{BTreeMap, BTreeSet};

use crate::quorum::{self, VoteResult};
use crate::types::{LogIndex, NodeId};

/// A cluster configuration. While `outgoing` is non-empty the configuration is
/// *joint* (§4.3): decisions need a majority of `voters` **and** of `outgoing`.
///
/// Invariant: `learners` and `voters` are disjoint; a node may be both an
/// outgoing voter and a learner while it is being demoted. Every address
/// belongs to a member, and is 1 to [`ADDRESS_BYTES_MAX`] bytes long.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    voters: BTreeSet<NodeId>,
    outgoing: BTreeSet<NodeId>,
    learners: BTreeSet<NodeId>,
    /// Where members are reached, opaque to the core. A member may have
    /// none: a transport that routes by id needs none, and data written
    /// before configurations carried addresses has none.
    addresses: BTreeMap<NodeId, String>,
}

/// The longest address a configuration accepts, in bytes: far more than
/// any `host:port` or URL needs, and small enough that a hostile peer
/// cannot make a configuration entry large.
pub const ADDRESS_BYTES_MAX: usize = 1024;

/// A change a caller asks the leader to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    /// Add a non-voting member that receives the log (§4.2.1).
    AddLearner {
        /// The new member.
        id: NodeId,
        /// Where it is reached, if its transport needs an address.
        addr: Option<String>,
    },
    /// Add one voter directly (single-server change, §4.1).
    AddVoter {
        /// The new member.
        id: NodeId,
        /// Where it is reached, if its transport needs an address.
        addr: Option<String>,
    },
    /// Turn a learner into a voter (single-server change).
    Promote(NodeId),
    /// Remove one voter or learner (single-server change), and its address.
    Remove(NodeId),
    /// Change where member `id` is reached (etcd's member update of peer
    /// URLs). Changes no voter set, so it may be made at any time, joint
    /// or not; like every configuration entry it takes effect when
    /// appended.
    SetAddress {
        /// The member.
        id: NodeId,
        /// Its new address.
        addr: String,
    },
    /// Move to an arbitrary configuration through a joint configuration
    /// (§4.3). Leaving the joint configuration happens automatically once
    /// entering it has committed.
    Joint {
        /// The voters of the configuration to move to.
        voters: BTreeSet<NodeId>,
        /// Its learners.
        learners: BTreeSet<NodeId>,
        /// Addresses for members of the new configuration: required for
        /// none, replacing the known address of those given. Members of
        /// the current configuration keep theirs.
        addresses: BTreeMap<NodeId, String>,
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
    /// An address given for a node that is not a member of the
    /// configuration.
    #[error("node {0} is given an address but is not a member")]
    AddressOfNonMember(NodeId),
    /// An address that is empty or longer than [`ADDRESS_BYTES_MAX`].
    #[error(
        "the address of node {id} is {len} bytes long; it must be 1 to {ADDRESS_BYTES_MAX} bytes"
    )]
    AddressLength {
        /// The member.
        id: NodeId,
        /// The address's length in bytes.
        len: usize,
    },
}

impl Membership {
    /// A plain (non-joint) configuration.
    pub fn new(
        voters: impl IntoIterator<Item = NodeId>,
        learners: impl IntoIterator<Item = NodeId>,
    ) -> Result<Membership, MembershipError> {
        let voters: BTreeSet<NodeId> = voters.into_iter().collect();
        let learners: BTreeSet<NodeId> = learners.into_iter().collect();
        Self::validated(Membership {
            voters,
            learners,
            ..Membership::default()
        })
    }

    /// Rebuilds a configuration from its three sets, e.g. when decoding.
    pub fn from_parts(
        voters: BTreeSet<NodeId>,
        outgoing: BTreeSet<NodeId>,
        learners: BTreeSet<NodeId>,
    ) -> Result<Membership, MembershipError> {
        Self::validated(Membership {
            voters,
            outgoing,
            learners,
            addresses: BTreeMap::new(),
        })
    }

    /// This configuration with `addresses` as its members' addresses
    /// (replacing any it had), e.g. a founding configuration's or a
    /// decoded one's.
    ///
    /// # Errors
    /// [`MembershipError::AddressOfNonMember`] for an address of a node
    /// that is not a member, [`MembershipError::AddressLength`] for an
    /// empty or overlong one.
    pub fn with_addresses(
        self,
        addresses: BTreeMap<NodeId, String>,
    ) -> Result<Membership, MembershipError> {
        Self::validated(Membership { addresses, ..self })
    }

    fn validated(m: Membership) -> Result<Membership, MembershipError> {
        if m.voters.is_empty() {
            return Err(MembershipError::NoVoters);
        }
        let all = m.voters.iter().chain(&m.outgoing).chain(&m.learners);
        if all.into_iter().any(|id| id.0 == 0) {
            return Err(MembershipError::ReservedId);
        }
        if let Some(&id) = m.voters.intersection(&m.learners).next() {
            return Err(MembershipError::VoterIsLearner(id));
        }
        for (&id, addr) in &m.addresses {
            if !m.contains(id) {
                return Err(MembershipError::AddressOfNonMember(id));
            }
            if addr.is_empty() || addr.len() > ADDRESS_BYTES_MAX {
                return Err(MembershipError::AddressLength {
                    id,
                    len: addr.len(),
                });
            }
        }
        Ok(m)
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

    /// Where member `id` is reached, if the configuration records it.
    pub fn address(&self, id: NodeId) -> Option<&str> {
        self.addresses.get(&id).map(String::as_str)
    }

    /// Every member's recorded address, by id.
    pub fn addresses(&self) -> &BTreeMap<NodeId, String> {
        &self.addresses
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
            Self::validated(m)
        };
        let (mut voters, mut learners) = (self.voters.clone(), self.learners.clone());
        let mut addresses = self.addresses.clone();
        match change {
            MembershipChange::AddLearner { id, addr } | MembershipChange::AddVoter { id, addr } => {
                if self.contains(*id) {
                    return Err(MembershipError::AlreadyMember(*id));
                }
                if matches!(change, MembershipChange::AddVoter { .. }) {
                    voters.insert(*id);
                } else {
                    learners.insert(*id);
                }
                if let Some(addr) = addr {
                    addresses.insert(*id, addr.clone());
                }
                single(Membership {
                    voters,
                    outgoing: BTreeSet::new(),
                    learners,
                    addresses,
                })
            }
            MembershipChange::Promote(id) => {
                if !self.learners.contains(id) {
                    return Err(MembershipError::NotALearner(*id));
                }
                learners.remove(id);
                voters.insert(*id);
                single(Membership {
                    voters,
                    outgoing: BTreeSet::new(),
                    learners,
                    addresses,
                })
            }
            MembershipChange::Remove(id) => {
                if !self.contains(*id) {
                    return Err(MembershipError::UnknownMember(*id));
                }
                voters.remove(id);
                learners.remove(id);
                addresses.remove(id);
                single(Membership {
                    voters,
                    outgoing: BTreeSet::new(),
                    learners,
                    addresses,
                })
            }
            MembershipChange::SetAddress { id, addr } => {
                if !self.contains(*id) {
                    return Err(MembershipError::UnknownMember(*id));
                }
                addresses.insert(*id, addr.clone());
                Self::validated(Membership {
                    addresses,
                    ..self.clone()
                })
            }
            MembershipChange::Joint {
                voters,
                learners,
                addresses: given,
            } => {
                if self.is_joint() {
                    return Err(MembershipError::InJointConfiguration);
                }
                let target = Self::validated(Membership {
                    voters: voters.clone(),
                    outgoing: BTreeSet::new(),
                    learners: learners.clone(),
                    addresses: given.clone(),
                })?;
                let joint = Membership {
                    outgoing: self.voters.clone(),
                    ..target
                };
                // Members of either half keep the addresses they had,
                // unless the change gives them new ones.
                addresses.retain(|&id, _| joint.contains(id));
                addresses.extend(given.iter().map(|(&id, addr)| (id, addr.clone())));
                Ok(Membership { addresses, ..joint })
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
    /// learners (outgoing voters not in either are removed, with their
    /// addresses).
    pub fn left_joint(&self) -> Membership {
        let mut left = Membership {
            voters: self.voters.clone(),
            outgoing: BTreeSet::new(),
            learners: self.learners.clone(),
            addresses: BTreeMap::new(),
        };
        left.addresses = self
            .addresses
            .iter()
            .filter(|(id, _)| left.contains(**id))
            .map(|(&id, addr)| (id, addr.clone()))
            .collect();
        left
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
                addresses: BTreeMap::new(),
            })
            .unwrap();
        assert!(joint.is_joint());
        assert_eq!(
            joint.apply(&MembershipChange::AddLearner {
                id: NodeId(9),
                addr: None
            }),
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

    fn addr(a: &str) -> Option<String> {
        Some(a.to_owned())
    }

    #[test]
    fn adding_a_member_records_its_address_and_removing_it_drops_it() {
        let m = Membership::new(set(&[1]), set(&[])).unwrap();
        let m = m
            .apply(&MembershipChange::AddLearner {
                id: NodeId(2),
                addr: addr("10.0.0.2:7000"),
            })
            .unwrap();
        assert_eq!(m.address(NodeId(2)), Some("10.0.0.2:7000"));
        let m = m.apply(&MembershipChange::Promote(NodeId(2))).unwrap();
        assert_eq!(m.address(NodeId(2)), Some("10.0.0.2:7000"));
        let m = m
            .apply(&MembershipChange::AddVoter {
                id: NodeId(3),
                addr: None,
            })
            .unwrap();
        assert_eq!(m.address(NodeId(3)), None, "a member may have no address");
        let m = m.apply(&MembershipChange::Remove(NodeId(2))).unwrap();
        assert!(m.addresses().is_empty());
    }

    #[test]
    fn set_address_changes_only_the_address_even_while_joint() {
        let m = Membership::new(set(&[1, 2]), set(&[])).unwrap();
        let moved = m
            .apply(&MembershipChange::SetAddress {
                id: NodeId(2),
                addr: "b:2".to_owned(),
            })
            .unwrap();
        assert_eq!(moved.voters(), m.voters());
        assert_eq!(moved.address(NodeId(2)), Some("b:2"));
        let joint = moved
            .apply(&MembershipChange::Joint {
                voters: set(&[3]),
                learners: set(&[]),
                addresses: BTreeMap::from([(NodeId(3), "c:3".to_owned())]),
            })
            .unwrap();
        assert_eq!(
            joint.address(NodeId(2)),
            Some("b:2"),
            "outgoing keep theirs"
        );
        let joint = joint
            .apply(&MembershipChange::SetAddress {
                id: NodeId(1),
                addr: "a:1".to_owned(),
            })
            .unwrap();
        assert!(joint.is_joint());
        let left = joint.left_joint();
        assert_eq!(
            left.addresses(),
            &BTreeMap::from([(NodeId(3), "c:3".to_owned())]),
            "leaving joint drops the addresses of the members that left"
        );
        assert_eq!(
            left.apply(&MembershipChange::SetAddress {
                id: NodeId(9),
                addr: "x:9".to_owned(),
            }),
            Err(MembershipError::UnknownMember(NodeId(9)))
        );
    }

    #[test]
    fn addresses_must_belong_to_members_and_have_a_sane_length() {
        let m = Membership::new(set(&[1]), set(&[2])).unwrap();
        assert_eq!(
            m.clone()
                .with_addresses(BTreeMap::from([(NodeId(3), "c:3".to_owned())])),
            Err(MembershipError::AddressOfNonMember(NodeId(3)))
        );
        assert_eq!(
            m.apply(&MembershipChange::SetAddress {
                id: NodeId(2),
                addr: String::new(),
            }),
            Err(MembershipError::AddressLength {
                id: NodeId(2),
                len: 0
            })
        );
        let long = "x".repeat(ADDRESS_BYTES_MAX + 1);
        assert_eq!(
            m.apply(&MembershipChange::AddVoter {
                id: NodeId(5),
                addr: Some(long),
            }),
            Err(MembershipError::AddressLength {
                id: NodeId(5),
                len: ADDRESS_BYTES_MAX + 1
            })
        );
        assert_eq!(
            m.apply(&MembershipChange::Joint {
                voters: set(&[1]),
                learners: set(&[]),
                addresses: BTreeMap::from([(NodeId(2), "b:2".to_owned())]),
            }),
            Err(MembershipError::AddressOfNonMember(NodeId(2))),
            "a joint change gives addresses only to members of its target"
        );
        let max = "y".repeat(ADDRESS_BYTES_MAX);
        let with = m
            .with_addresses(BTreeMap::from([(NodeId(1), max.clone())]))
            .unwrap();
        assert_eq!(with.address(NodeId(1)), Some(max.as_str()));
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
