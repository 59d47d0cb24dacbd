//! Messages exchanged between nodes. The core produces and consumes them as
//! plain values; encoding them for a wire is the transport's job.

use crate::entry::{Entry, SnapshotMeta};
use crate::types::{LogIndex, NodeId, Term};

/// A message from one node to another, stamped with the sender's term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The sender.
    pub from: NodeId,
    /// The recipient.
    pub to: NodeId,
    /// The sender's term (for a pre-vote request: the term it would campaign
    /// in, which it has not adopted).
    pub term: Term,
    /// What the message says.
    pub body: MessageBody,
}

/// Identifies a read request; chosen by the caller, unique per node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReadId(pub u64);

/// What a message says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageBody {
    /// RequestVote (§5.2), or a pre-vote probe (§9.6) that changes no state.
    VoteRequest {
        /// A pre-vote probe rather than a real vote request.
        pre_vote: bool,
        /// The index of the candidate's last log entry.
        last_log_index: LogIndex,
        /// The term of the candidate's last log entry.
        last_log_term: Term,
        /// Set during a leadership transfer (§3.10): voters skip leader
        /// stickiness for this campaign.
        transfer: bool,
    },
    /// The answer to a [`MessageBody::VoteRequest`].
    VoteResponse {
        /// Answers a pre-vote probe.
        pre_vote: bool,
        /// The vote (or pre-vote) was granted.
        granted: bool,
    },
    /// AppendEntries (§5.3). `prev_log_*` name the entry the new ones follow.
    AppendEntries {
        /// The index of the entry the new ones follow.
        prev_log_index: LogIndex,
        /// The term of the entry the new ones follow.
        prev_log_term: Term,
        /// The entries to append, at consecutive indexes (may be empty).
        entries: Vec<Entry>,
        /// The leader's commit index.
        leader_commit: LogIndex,
    },
    /// The leader's commit index, for a follower in the replicating state
    /// that holds everything the leader has: an AppendEntries with no
    /// entries that asks for no answer. A follower whose log holds
    /// `prev_log_*` commits up to the lesser of it and `leader_commit`
    /// and stays silent — the leader learns nothing from an answer, and on
    /// a lightly loaded cluster those answers were a third of the messages
    /// of a write. One that does not hold it answers as it would an
    /// AppendEntries, so that the leader backs off.
    Commit {
        /// The last entry the leader sent this follower.
        prev_log_index: LogIndex,
        /// That entry's term.
        prev_log_term: Term,
        /// The leader's commit index.
        leader_commit: LogIndex,
    },
    /// The answer to [`MessageBody::AppendEntries`] or
    /// [`MessageBody::InstallSnapshot`] (or to a [`MessageBody::Commit`]
    /// the follower's log does not match).
    AppendResponse(AppendResult),
    /// Keeps followers from campaigning and carries the commit index up to
    /// what the follower is known to hold. `round` confirms leadership for
    /// reads and leases (§6.4).
    Heartbeat {
        /// The commit index the follower may adopt.
        commit: LogIndex,
        /// The leader's heartbeat round this beat belongs to.
        round: u64,
    },
    /// The answer to a [`MessageBody::Heartbeat`].
    HeartbeatResponse {
        /// The round of the heartbeat being answered (0 when telling a stale
        /// leader of a newer term).
        round: u64,
    },
    /// The leader asks the caller to ship the snapshot described by `meta`;
    /// on the receiving side the caller steps this message in once the
    /// snapshot's data is stored (§7).
    InstallSnapshot {
        /// What the snapshot covers: index, term and membership.
        meta: SnapshotMeta,
    },
    /// Start an election now, skipping pre-vote (§3.10).
    TimeoutNow,
    /// A follower asks the leader to confirm a read index (§6.4).
    ReadIndexRequest {
        /// The read being confirmed.
        id: ReadId,
    },
    /// The index the follower must apply before serving read `id`, or `None`
    /// when the leader could not serve it.
    ReadIndexResponse {
        /// The read being answered.
        id: ReadId,
        /// The read index, or `None` if the leader could not serve the read.
        index: Option<LogIndex>,
    },
}

/// A follower's answer to AppendEntries or InstallSnapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendResult {
    /// The follower's log matches the leader's up to `match_index`.
    Success {
        /// The last index where the follower's log matches the leader's.
        match_index: LogIndex,
    },
    /// The follower has no entry matching `(prev_log_index, prev_log_term)` at
    /// `rejected`. The hint lets the leader skip a whole term at a time
    /// (§5.3): `hint_term` is the follower's term at `rejected` (`None` if
    /// its log is shorter) and `hint_index` the first index of that term in
    /// its log (or its last index + 1).
    Conflict {
        /// The `prev_log_index` that did not match.
        rejected: LogIndex,
        /// Where the leader should look next (see above).
        hint_index: LogIndex,
        /// The follower's term at `rejected`, if it has an entry there.
        hint_term: Option<Term>,
    },
}

impl MessageBody {
    /// A short name for traces.
    pub fn kind(&self) -> &'static str {
        match self {
            MessageBody::VoteRequest { pre_vote: true, .. } => "PreVote",
            MessageBody::VoteRequest { .. } => "Vote",
            MessageBody::VoteResponse { pre_vote: true, .. } => "PreVoteResp",
            MessageBody::VoteResponse { .. } => "VoteResp",
            MessageBody::AppendEntries { .. } => "App",
            MessageBody::Commit { .. } => "Commit",
            MessageBody::AppendResponse(_) => "AppResp",
            MessageBody::Heartbeat { .. } => "Heartbeat",
            MessageBody::HeartbeatResponse { .. } => "HeartbeatResp",
            MessageBody::InstallSnapshot { .. } => "Snapshot",
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::ReadIndexRequest { .. } => "ReadIndex",
            MessageBody::ReadIndexResponse { .. } => "ReadIndexResp",
        }
    }
}
