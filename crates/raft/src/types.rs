//! The protocol's vocabulary: identifiers, terms, log positions, the hard
//! state and roles. Log entries, which carry configurations, are in
//! `entry.rs`, so that this file depends on nothing else of the crate.
//!
//! Each is a newtype so that a term can never be passed where an index is meant.

use std::fmt;

/// Identifies one member of a cluster. `0` is reserved to mean "nobody".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u64);

/// A Raft term (§5.1): a logical clock that orders leaders.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Term(pub u64);

/// A position in the replicated log. Index `0` is the empty prefix; the first
/// entry has index `1`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogIndex(pub u64);

impl Term {
    /// The term that follows this one.
    pub fn next(self) -> Term {
        Term(self.0 + 1)
    }
}

impl LogIndex {
    /// The index after this one.
    pub fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }

    /// The index before this one, saturating at zero.
    pub fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }

    /// This index moved forward by `n` entries.
    pub fn plus(self, n: u64) -> LogIndex {
        LogIndex(self.0 + n)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for LogIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The state that must be durable before a node answers anyone (Figure 2's
/// "persistent state on all servers", plus the commit index so a restart
/// does not have to rediscover it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// The candidate this node voted for in `term`, if any.
    pub vote: Option<NodeId>,
    /// The highest index this node knows is committed.
    pub commit: LogIndex,
}

/// The role a node currently plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Replicates the leader's log and votes.
    Follower,
    /// Campaigning without bumping its term: asks whether it would win (§9.6).
    PreCandidate,
    /// Campaigning for votes in a new term (§5.2).
    Candidate,
    /// Takes proposals and replicates them.
    Leader,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        };
        f.write_str(name)
    }
}
