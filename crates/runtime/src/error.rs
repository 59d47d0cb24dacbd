//! The errors a caller of [`crate::Node`] sees.
//!
//! Most are conditions to act on: retry elsewhere (`NotLeader`), later
//! (`Overloaded`, `LeaderNotReady`), or find out what happened
//! (`OutcomeUnknown`). `Stopped` is the fatal tier: the node hit an error it
//! cannot continue from (storage, state machine) or was shut down.

use std::sync::Arc;

use keel_raft::{LogIndex, MembershipError, NodeId};

use crate::config::ConfigError;

/// The state machine's own failure; it stops the node.
pub type StateMachineError = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong with a request to the node.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// Only the leader takes this request; retry on it.
    #[error("this node is not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this node knows of, if any.
        leader: Option<NodeId>,
    },
    /// A queue or the proposals in flight are at their bound; back off.
    #[error("the node is overloaded; retry later")]
    Overloaded,
    /// The entry was appended, but the entry that committed at its index is
    /// another leader's: the proposal did not take effect and may be
    /// retried. (Only a commit tells: an entry overwritten in this node's
    /// log may still commit through another member.)
    #[error("another leader's entry committed at index {index}, in place of the proposal's")]
    ProposalDropped {
        /// The index the proposal's entry was appended at.
        index: LogIndex,
    },
    /// Leadership was lost while the proposal was pending and its entry was
    /// not applied in time: it may or may not take effect.
    #[error("leadership was lost; the proposal at index {index} may or may not have committed")]
    OutcomeUnknown {
        /// The index the proposal's entry was appended at.
        index: LogIndex,
    },
    /// The leader stepped down before a read was confirmed; it read
    /// nothing, so retry.
    #[error("leadership changed before the read was confirmed; retry")]
    LeadershipLost,
    /// The leader refuses proposals while it hands leadership over.
    #[error("leadership is being transferred to node {target}; retry on the new leader")]
    TransferInProgress {
        /// The member taking over.
        target: NodeId,
    },
    /// One membership change at a time: this one waits for the pending one.
    #[error("a membership change is already in progress (entry {pending_index})")]
    ChangePending {
        /// The entry of the change still in progress.
        pending_index: LogIndex,
    },
    /// A new leader changes membership only once an entry of its own term
    /// committed: an older change could otherwise still be under way.
    #[error("the leader has not committed an entry in its term yet; retry shortly")]
    LeaderNotReady,
    /// The membership change is refused as it stands.
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// No answer within [`crate::Config::request_timeout`]; a write may or
    /// may not have taken effect.
    #[error("the request did not complete within the configured request timeout")]
    Timeout,
    /// The node is gone, and why.
    #[error("the node has stopped: {0}")]
    Stopped(StopReason),
}

/// Why a node stopped. Published in [`crate::Metrics::stopped`] and
/// carried by [`Error::Stopped`]; the failures keep their source error.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StopReason {
    /// [`crate::Node::shutdown`] was called, or every handle dropped.
    #[error("it was shut down")]
    Shutdown,
    /// The log or snapshot store failed: what is durable is unknown.
    #[error("its storage failed: {0}")]
    Storage(Arc<keel_storage::StorageError>),
    /// The state machine returned an error: state and log disagree.
    #[error("its state machine failed: {0}")]
    StateMachine(Arc<dyn std::error::Error + Send + Sync>),
    /// A thread of the node (named) ended, by a panic or a closed channel.
    #[error("its {0} thread ended unexpectedly")]
    ThreadEnded(&'static str),
}

/// Two reasons are equal when they are the same stop: the same variant
/// and, for a failure, the very same error (errors have no equality of
/// their own), so that metrics publish a stop once.
impl PartialEq for StopReason {
    fn eq(&self, other: &StopReason) -> bool {
        match (self, other) {
            (StopReason::Shutdown, StopReason::Shutdown) => true,
            (StopReason::Storage(a), StopReason::Storage(b)) => Arc::ptr_eq(a, b),
            (StopReason::StateMachine(a), StopReason::StateMachine(b)) => Arc::ptr_eq(a, b),
            (StopReason::ThreadEnded(a), StopReason::ThreadEnded(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for StopReason {}

/// Why [`crate::Node::trigger_snapshot`] stored no snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The node did not take the request (overloaded, stopped).
    #[error(transparent)]
    Node(#[from] Error),
    /// The snapshot was taken but could not be stored; the node goes on,
    /// and takes the next one when it is due.
    #[error("the snapshot could not be stored: {0}")]
    Write(#[from] SnapshotWriteError),
}

/// Why [`crate::Node::initialize`] founded no cluster.
#[derive(Debug, thiserror::Error)]
pub enum InitializeError {
    /// The node did not take the request (overloaded, stopped).
    #[error(transparent)]
    Node(#[from] Error),
    /// The members given are no valid configuration (none, or node 0).
    #[error("the members given are not a valid configuration: {0}")]
    Members(#[from] MembershipError),
    /// The node belongs to another cluster, holds another cluster's log,
    /// or is not among the members: nothing was written.
    #[error(transparent)]
    Refused(#[from] keel_raft::InitializeError),
}

/// Why [`crate::Node::purge_log`] discarded nothing.
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    /// The node did not take the request (overloaded, stopped).
    #[error(transparent)]
    Node(#[from] Error),
    /// Entries past the newest stored snapshot are the only record of
    /// what they hold: purge only what a snapshot covers.
    #[error(
        "no stored snapshot covers index {upto}: the newest ends at {snapshot}; \
         take one first (Node::trigger_snapshot)"
    )]
    NotCovered {
        /// The index asked for.
        upto: LogIndex,
        /// The last entry the newest stored snapshot covers.
        snapshot: LogIndex,
    },
}

/// Why [`crate::Storage::recover`] left the configuration as it was.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// The storage could not be read or written.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The members given are no valid configuration (none, or node 0).
    #[error("the members given are not a valid configuration: {0}")]
    Members(#[from] MembershipError),
    /// A member recovers into a configuration it votes in, or it could
    /// not elect itself.
    #[error("node {id} is not among the members it was asked to recover with")]
    NotAMember {
        /// The member whose storage this is.
        id: NodeId,
    },
    /// The storage holds no cluster yet: there is nothing to recover.
    #[error("the storage holds no cluster to recover; start the node to bootstrap one")]
    Empty,
}

/// Why a locally made snapshot could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotWriteError {
    /// The state machine's stream failed while it was copied.
    #[error("reading the state machine's snapshot failed: {0}")]
    Read(#[from] std::io::Error),
    /// The snapshot store failed to write or publish it.
    #[error(transparent)]
    Storage(#[from] keel_storage::StorageError),
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration does not validate.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The log or snapshot store could not be opened or read.
    #[error("could not open storage: {0}")]
    Storage(#[from] keel_storage::StorageError),
    /// What the storage holds contradicts itself (Raft's own checks).
    #[error("the stored state is inconsistent: {0}")]
    Restore(#[from] keel_raft::RestoreError),
    /// The founding members' set is not a valid configuration.
    #[error("the peers given to bootstrap a cluster are invalid: {0}")]
    Peers(#[from] MembershipError),
    /// The peer listener's address could not be bound.
    #[error("could not listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The operating system's refusal.
        #[source]
        source: std::io::Error,
    },
    /// Entries between the log's start and the newest snapshot are gone:
    /// the node cannot rebuild its state from what it holds.
    #[error(
        "the log starts at {log_first_index} but the newest snapshot ends at {snapshot_index}: \
         entries in between are missing; restore the node from a snapshot or re-add it as a new member"
    )]
    MissingSnapshot {
        /// The first entry the log holds.
        log_first_index: LogIndex,
        /// The last entry the newest snapshot covers.
        snapshot_index: LogIndex,
    },
    /// The data directory could not be created or read.
    #[error("could not use the data directory: {0}")]
    Io(#[from] std::io::Error),
    /// [`crate::Storage::install_snapshot`] writes only into an empty
    /// directory: it would not know what the old contents mean.
    #[error("{} is not empty; a new member's data directory must be", .dir.display())]
    NotEmpty {
        /// The data directory.
        dir: std::path::PathBuf,
    },
    /// [`crate::StateMachine::restore`] failed on the newest snapshot.
    #[error("the state machine failed to restore from the snapshot: {0}")]
    StateMachine(StateMachineError),
}

impl From<keel_raft::ProposeError> for Error {
    fn from(e: keel_raft::ProposeError) -> Error {
        use keel_raft::ProposeError as P;
        match e {
            P::NotLeader { leader_hint } => Error::NotLeader {
                leader: leader_hint,
            },
            P::TransferInProgress { target } => Error::TransferInProgress { target },
            P::ChangePending { pending_index } => Error::ChangePending { pending_index },
            P::LeaderNotReady => Error::LeaderNotReady,
            P::Membership(m) => Error::Membership(m),
        }
    }
}

impl From<keel_raft::ReadError> for Error {
    fn from(e: keel_raft::ReadError) -> Error {
        match e {
            keel_raft::ReadError::NotLeader { leader_hint } => Error::NotLeader {
                leader: leader_hint,
            },
            keel_raft::ReadError::LeadershipLost => Error::LeadershipLost,
        }
    }
}
