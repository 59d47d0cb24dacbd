//! The runtime's errors as etcd's, and which of them are worth a retry.
//!
//! Public so that the simulator, which drives the runtime without the
//! gRPC services, answers and retries exactly as a member does.

use keel::{Error, MembershipError};

use crate::error::KvError;

/// The error an etcd client gets for a runtime error.
pub fn to_kv(e: Error) -> KvError {
    match e {
        Error::NotLeader { leader: None } | Error::LeaderNotReady => KvError::NoLeader,
        Error::NotLeader { leader: Some(_) } => KvError::NotLeader,
        Error::Overloaded => KvError::TooManyRequests,
        Error::ProposalDropped { .. }
        | Error::LeadershipLost
        | Error::TransferInProgress { .. } => KvError::LeaderChanged,
        Error::OutcomeUnknown { .. } => KvError::LeaderFailed,
        Error::ChangePending { .. } => KvError::ChangePending,
        Error::Membership(m) => match m {
            MembershipError::AlreadyMember(_) => KvError::MemberExists,
            MembershipError::UnknownMember(_) => KvError::MemberNotFound,
            MembershipError::NotALearner(_) => KvError::MemberNotLearner,
            MembershipError::NoVoters => {
                KvError::InvalidRequest("the cluster must keep at least one voting member")
            }
            MembershipError::ReservedId => KvError::InvalidRequest("member ID 0 is reserved"),
            MembershipError::AddressOfNonMember(_) => KvError::MemberNotFound,
            MembershipError::AddressLength { .. } => {
                KvError::InvalidRequest("a peer URL must be at most 1 KiB long")
            }
            MembershipError::InJointConfiguration
            | MembershipError::NotJoint
            | MembershipError::TooManyVoterChanges
            | MembershipError::VoterIsLearner(_) => KvError::ChangePending,
        },
        Error::Timeout => KvError::Timeout,
        Error::Stopped(_) => KvError::Stopped,
    }
}

/// Whether the request certainly did not take effect and may soon succeed
/// if made again (a leader is being elected, a transfer or a membership
/// change is finishing). `NotLeader` naming a leader is not, because what
/// to do depends on the call: a proposal is forwarded to that leader
/// (`RaftConsensus::propose`), a read barrier retries, a membership change
/// fails with it.
pub fn is_retryable(e: &Error) -> bool {
    matches!(
        e,
        Error::NotLeader { leader: None }
            | Error::LeaderNotReady
            | Error::ProposalDropped { .. }
            | Error::LeadershipLost
            | Error::TransferInProgress { .. }
            | Error::ChangePending { .. }
            | Error::Membership(MembershipError::InJointConfiguration)
    )
}
