//! Majority arithmetic over one set of voters (§5.2, §5.3).
//!
//! Joint configurations combine two of these in [`crate::membership`]. An
//! empty voter set is treated as agreeing to everything, so that a joint
//! configuration whose outgoing half is empty behaves like its incoming half.

use std::collections::BTreeSet;

use crate::types::{LogIndex, NodeId};

/// The outcome of counting votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// A majority granted.
    Won,
    /// Enough rejected that a majority can no longer grant.
    Lost,
    /// Still waiting for responses.
    Pending,
}

/// The number of voters that form a majority of `voter_count`.
pub fn majority(voter_count: usize) -> usize {
    voter_count / 2 + 1
}

/// The highest index stored on a majority of `voters`, given each voter's
/// match index. Voters without a known match count as `0`.
pub fn committed_index(
    voters: &BTreeSet<NodeId>,
    match_of: impl Fn(NodeId) -> Option<LogIndex>,
) -> LogIndex {
    LogIndex(majority_value(voters, |id| match_of(id).map_or(0, |i| i.0)))
}

/// The largest `v` such that a majority of `voters` have a value of at least
/// `v`: the quorum's "low water mark" of any monotonic per-node counter.
pub fn majority_value(voters: &BTreeSet<NodeId>, value_of: impl Fn(NodeId) -> u64) -> u64 {
    if voters.is_empty() {
        return u64::MAX;
    }
    let mut values: Vec<u64> = voters.iter().map(|&id| value_of(id)).collect();
    values.sort_unstable_by(|a, b| b.cmp(a));
    values[majority(voters.len()) - 1]
}

/// Counts `vote_of` over `voters`: `Some(true)` granted, `Some(false)`
/// rejected, `None` not yet heard from.
pub fn vote_result(
    voters: &BTreeSet<NodeId>,
    vote_of: impl Fn(NodeId) -> Option<bool>,
) -> VoteResult {
    if voters.is_empty() {
        return VoteResult::Won;
    }
    let (mut granted, mut rejected) = (0, 0);
    for &id in voters {
        match vote_of(id) {
            Some(true) => granted += 1,
            Some(false) => rejected += 1,
            None => {}
        }
    }
    let needed = majority(voters.len());
    if granted >= needed {
        VoteResult::Won
    } else if voters.len() - rejected < needed {
        VoteResult::Lost
    } else {
        VoteResult::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids(n: u64) -> BTreeSet<NodeId> {
        (1..=n).map(NodeId).collect()
    }

    #[test]
    fn majority_of_small_clusters() {
        assert_eq!(majority(1), 1);
        assert_eq!(majority(2), 2);
        assert_eq!(majority(3), 2);
        assert_eq!(majority(4), 3);
        assert_eq!(majority(5), 3);
    }

    #[test]
    fn section_5_3_commit_needs_a_majority_of_replicas() {
        let matches = [5, 3, 1];
        let idx = committed_index(&ids(3), |id| Some(LogIndex(matches[id.0 as usize - 1])));
        assert_eq!(idx, LogIndex(3));
    }

    #[test]
    fn section_5_2_split_vote_stays_pending_until_decided() {
        let voters = ids(4);
        let votes = |id: NodeId| match id.0 {
            1 | 2 => Some(true),
            3 => Some(false),
            _ => None,
        };
        assert_eq!(vote_result(&voters, votes), VoteResult::Pending);
        let votes = |id: NodeId| Some(id.0 <= 2);
        assert_eq!(vote_result(&voters, votes), VoteResult::Lost);
    }

    proptest! {
        /// The committed index is stored on at least a majority, and no
        /// higher index is.
        #[test]
        fn committed_index_is_the_majority_maximum(matches in proptest::collection::vec(0u64..50, 1..8)) {
            let voters = ids(matches.len() as u64);
            let of = |id: NodeId| Some(LogIndex(matches[id.0 as usize - 1]));
            let c = committed_index(&voters, of).0;
            let at_least = matches.iter().filter(|&&m| m >= c).count();
            prop_assert!(at_least >= majority(matches.len()));
            let above = matches.iter().filter(|&&m| m > c).count();
            prop_assert!(above < majority(matches.len()));
        }

        /// Won and Lost are never both reachable: once decided, adding votes
        /// cannot flip the outcome.
        #[test]
        fn decided_votes_are_final(votes in proptest::collection::vec(proptest::option::of(any::<bool>()), 1..8)) {
            let voters = ids(votes.len() as u64);
            let of = |id: NodeId| votes[id.0 as usize - 1];
            let result = vote_result(&voters, of);
            let all_yes = vote_result(&voters, |id| of(id).or(Some(true)));
            let all_no = vote_result(&voters, |id| of(id).or(Some(false)));
            match result {
                VoteResult::Won => prop_assert_eq!(all_no, VoteResult::Won),
                VoteResult::Lost => prop_assert_eq!(all_yes, VoteResult::Lost),
                VoteResult::Pending => {
                    prop_assert_eq!(all_yes, VoteResult::Won);
                    prop_assert_eq!(all_no, VoteResult::Lost);
                }
            }
        }
    }
}
