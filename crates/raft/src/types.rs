//! The protocol's vocabulary: identifiers, terms, log positions and entries.
//!
//! Each is a newtype so that a term can never be passed where an index is meant.

use std::fmt;

use bytes::Bytes;

use crate::membership::Membership;

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

/// What an entry carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// The empty entry a new leader appends to commit its predecessors'
    /// entries (§5.4.2, §8).
    Blank,
    /// An opaque command for the state machine.
    Command(Bytes),
    /// A new cluster configuration. It takes effect as soon as it is appended
    /// to a log, not when it commits (thesis §4.1).
    Membership(Membership),
}

/// One log entry: `(term, index, payload)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub term: Term,
    pub index: LogIndex,
    pub payload: Payload,
}

impl Entry {
    /// Bytes this entry contributes to a message, used for `max_msg_bytes`.
    pub fn size_bytes(&self) -> u64 {
        let payload = match &self.payload {
            Payload::Blank => 0,
            Payload::Command(data) => data.len() as u64,
            Payload::Membership(m) => 8 * m.node_count() as u64,
        };
        16 + payload
    }
}

/// The state that must be durable before a node answers anyone (Figure 2's
/// "persistent state on all servers", plus the commit index so a restart
/// does not have to rediscover it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: Term,
    /// The candidate this node voted for in `term`, if any.
    pub vote: Option<NodeId>,
    pub commit: LogIndex,
}

/// Describes a snapshot: the log prefix it replaces and the configuration
/// in force at its last index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotMeta {
    pub index: LogIndex,
    pub term: Term,
    pub membership: Membership,
}

/// The role a node currently plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Follower,
    /// Campaigning without bumping its term: asks whether it would win (§9.6).
    PreCandidate,
    Candidate,
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
