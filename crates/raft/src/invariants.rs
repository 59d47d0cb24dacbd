//! Checks of the node's internal invariants, run by tests and the
//! simulator after every step.

use crate::entry::Payload;
use crate::progress::ProgressState;
use crate::raft::Raft;
use crate::types::{LogIndex, NodeId, Role, Term};

/// A broken invariant: a bug in the core, never a caller error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("node {node}: invariant violated: {broken}")]
pub struct InvariantViolation {
    /// The id of the node whose state is broken.
    pub node: u64,
    /// Which invariant broke.
    pub broken: BrokenInvariant,
}

/// Which invariant broke, with the values that break it, so that a
/// simulator's report can be read (and matched) without re-running it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BrokenInvariant {
    /// The applied, commit and last indexes are out of order.
    #[error("applied {applied} <= commit {commit} <= last {last} does not hold")]
    IndexOrder {
        /// The last index applied.
        applied: LogIndex,
        /// The commit index.
        commit: LogIndex,
        /// The last index in the log.
        last: LogIndex,
    },
    /// The persisted index is beyond the last index.
    #[error("persisted {persisted} beyond last {last}")]
    PersistedBeyondLast {
        /// The last index known durable.
        persisted: LogIndex,
        /// The last index in the log.
        last: LogIndex,
    },
    /// The first index is beyond the last index plus one.
    #[error("first {first} beyond last {last} + 1")]
    FirstBeyondLast {
        /// The first index in the log.
        first: LogIndex,
        /// The last index in the log.
        last: LogIndex,
    },
    /// An entry in the log holds another index than its position.
    #[error("entry at position {position} claims index {claimed}")]
    MisplacedEntry {
        /// The index the entry is stored at.
        position: LogIndex,
        /// The index the entry itself carries.
        claimed: LogIndex,
    },
    /// Terms must not decrease along the log, nor pass the node's term.
    #[error("entry {index} has out-of-order term {term}")]
    TermOutOfOrder {
        /// The entry's index.
        index: LogIndex,
        /// The entry's term.
        term: Term,
    },
    /// A leader does not record itself as leader and as its own vote.
    #[error("leader of term {term} has leader {leader:?} and vote {vote:?}")]
    LeaderNotItself {
        /// The leader's current term.
        term: Term,
        /// The leader it records for that term.
        leader: Option<NodeId>,
        /// The vote it records for that term.
        vote: Option<NodeId>,
    },
    /// A leader's log holds more than one uncommitted membership change.
    #[error("{count} uncommitted membership changes")]
    PendingMembershipChanges {
        /// The number of uncommitted membership entries.
        count: usize,
    },
    /// A leader keeps no progress for a member of the configuration.
    #[error("leader does not track member {member}")]
    UntrackedMember {
        /// The member without progress.
        member: NodeId,
    },
    /// A follower's progress does not satisfy match < next <= last + 1.
    #[error("progress of {peer}: match {match_index} next {next_index} last {last}")]
    ProgressOutOfRange {
        /// The follower.
        peer: NodeId,
        /// The highest index known replicated on it.
        match_index: LogIndex,
        /// The next index to send it.
        next_index: LogIndex,
        /// The leader's last index.
        last: LogIndex,
    },
    /// More AppendEntries are in flight to a follower than `max_inflight_msgs`.
    #[error("{count} messages in flight to {peer}")]
    TooManyInflight {
        /// The follower.
        peer: NodeId,
        /// The number of messages in flight to it.
        count: usize,
    },
    /// A leader keeps progress for a node that is not a member.
    #[error("progress kept for non-member {peer}")]
    ProgressForNonMember {
        /// The node that is not a member.
        peer: NodeId,
    },
}

impl Raft {
    /// Verifies every local invariant; returns the first one broken.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        let fail = |broken: BrokenInvariant| {
            Err(InvariantViolation {
                node: self.id().0,
                broken,
            })
        };
        let s = self.status();
        if !(s.applied <= s.commit && s.commit <= s.last_index) {
            return fail(BrokenInvariant::IndexOrder {
                applied: s.applied,
                commit: s.commit,
                last: s.last_index,
            });
        }
        if s.persisted > s.last_index {
            return fail(BrokenInvariant::PersistedBeyondLast {
                persisted: s.persisted,
                last: s.last_index,
            });
        }
        if s.first_index > s.last_index.next() {
            return fail(BrokenInvariant::FirstBeyondLast {
                first: s.first_index,
                last: s.last_index,
            });
        }
        let mut previous_term = crate::types::Term(0);
        let mut pending_changes = 0;
        let mut index = s.first_index;
        while index <= s.last_index {
            let entry = self.entry(index).expect("index within the log");
            if entry.index != index {
                return fail(BrokenInvariant::MisplacedEntry {
                    position: index,
                    claimed: entry.index,
                });
            }
            if entry.term < previous_term || entry.term > s.term {
                return fail(BrokenInvariant::TermOutOfOrder {
                    index,
                    term: entry.term,
                });
            }
            if matches!(entry.payload, Payload::Membership(_)) && index > s.commit {
                pending_changes += 1;
            }
            previous_term = entry.term;
            index = index.next();
        }
        if self.role() == Role::Leader {
            if s.leader != Some(s.id) || s.vote != Some(s.id) {
                return fail(BrokenInvariant::LeaderNotItself {
                    term: s.term,
                    leader: s.leader,
                    vote: s.vote,
                });
            }
            if pending_changes > 1 {
                return fail(BrokenInvariant::PendingMembershipChanges {
                    count: pending_changes,
                });
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
                return fail(BrokenInvariant::UntrackedMember { member: untracked });
            }
            for (id, pr) in &s.progress {
                if pr.match_index() >= pr.next_index() || pr.next_index() > s.last_index.next() {
                    return fail(BrokenInvariant::ProgressOutOfRange {
                        peer: *id,
                        match_index: pr.match_index(),
                        next_index: pr.next_index(),
                        last: s.last_index,
                    });
                }
                if let ProgressState::Replicate { inflight } = pr.state()
                    && inflight.len() > self.config().max_inflight_msgs
                {
                    return fail(BrokenInvariant::TooManyInflight {
                        peer: *id,
                        count: inflight.len(),
                    });
                }
                if !s.membership.contains(*id) {
                    return fail(BrokenInvariant::ProgressForNonMember { peer: *id });
                }
            }
        }
        Ok(())
    }
}
