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
    #[error("this node is not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("the node is overloaded; retry later")]
    Overloaded,
    /// The entry was appended, but the entry that committed at its index is
    /// another leader's: the proposal did not take effect and may be
    /// retried. (Only a commit tells: an entry overwritten in this node's
    /// log may still commit through another member.)
    #[error("another leader's entry committed at index {index}, in place of the proposal's")]
    ProposalDropped { index: LogIndex },
    /// Leadership was lost while the proposal was pending and its entry was
    /// not applied in time: it may or may not take effect.
    #[error("leadership was lost; the proposal at index {index} may or may not have committed")]
    OutcomeUnknown { index: LogIndex },
    #[error("leadership changed before the read was confirmed; retry")]
    LeadershipLost,
    #[error("leadership is being transferred to node {target}; retry on the new leader")]
    TransferInProgress { target: NodeId },
    #[error("a membership change is already in progress (entry {pending_index})")]
    ChangePending { pending_index: LogIndex },
    #[error("the leader has not committed an entry in its term yet; retry shortly")]
    LeaderNotReady,
    #[error(transparent)]
    Membership(#[from] MembershipError),
    #[error("the request did not complete within the configured request timeout")]
    Timeout,
    #[error("the node has stopped: {0}")]
    Stopped(StopReason),
}

/// Why a node stopped. Published in [`crate::Metrics::stopped`] and
/// carried by [`Error::Stopped`]; the failures keep their source error.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StopReason {
    #[error("it was shut down")]
    Shutdown,
    #[error("its storage failed: {0}")]
    Storage(Arc<keel_storage::StorageError>),
    #[error("its state machine failed: {0}")]
    StateMachine(Arc<dyn std::error::Error + Send + Sync>),
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

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("could not open storage: {0}")]
    Storage(#[from] keel_storage::StorageError),
    #[error("the stored state is inconsistent: {0}")]
    Restore(#[from] keel_raft::RestoreError),
    #[error("the peers given to bootstrap a cluster are invalid: {0}")]
    Peers(#[from] MembershipError),
    #[error("could not listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the log starts at {log_first_index} but the newest snapshot ends at {snapshot_index}: \
         entries in between are missing; restore the node from a snapshot or re-add it as a new member"
    )]
    MissingSnapshot {
        log_first_index: LogIndex,
        snapshot_index: LogIndex,
    },
    #[error("could not use the data directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("{} is not empty; a new member's data directory must be", .dir.display())]
    NotEmpty { dir: std::path::PathBuf },
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
