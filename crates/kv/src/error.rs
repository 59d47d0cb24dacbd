//! Errors of the KV store, and how each one reaches an etcd client.
//!
//! etcd clients match on the gRPC code and the exact message text (clientv3
//! turns known messages back into typed errors), so each variant carries the
//! message etcd uses.

use tonic::{Code, Status};

/// Everything the KV store can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: member ID already exist")]
    MemberExists,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: a membership change is already in progress; retry")]
    ChangePending,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// The backend quota is used up, or a NOSPACE alarm is active.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// A maintenance call that could not get the store to itself in time.
    #[error("keel-kv: {0}")]
    Busy(&'static str),
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    /// A write whose outcome is unknown: it may or may not have committed.
    #[error("etcdserver: request timed out, possibly due to previous leader failure")]
    LeaderFailed,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: {0} is not supported by this server")]
    Unsupported(&'static str),
    #[error("etcdserver: invalid request: {0}")]
    InvalidRequest(&'static str),
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    #[error("etcdserver: user name already exists")]
    UserExists,
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name already exists")]
    RoleExists,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    /// The leader's answer to a request this member forwarded to it,
    /// passed on to the client as it is.
    #[error("{}", .0.message())]
    Remote(Status),
    /// A stored or replicated record that does not decode, or decodes to
    /// something impossible: the node must stop.
    #[error("keel-kv: corrupt {what}: {kind}")]
    Corrupt {
        what: &'static str,
        #[source]
        kind: Corruption,
    },
    /// The embedded database failed: the node must stop.
    #[error("keel-kv: storage: {0}")]
    Storage(#[from] redb::Error),
    #[error("keel-kv: snapshot io: {0}")]
    Io(#[from] std::io::Error),
}

/// What is wrong with a corrupt record or snapshot, with the values that
/// show it, so that an operator's report names the fault exactly.
#[derive(Debug, thiserror::Error)]
pub enum Corruption {
    #[error("{0}")]
    Undecodable(#[from] prost::DecodeError),
    /// A length that does not fit its field or passes its bound.
    #[error("{bytes} bytes is more than the {max_bytes} allowed")]
    TooLong { bytes: usize, max_bytes: usize },
    /// A frame that ends before the fields it must hold.
    #[error("short {frame}")]
    Short { frame: &'static str },
    #[error("the stream ends before its end frame")]
    NoEndFrame,
    #[error("unknown frame tag {tag}")]
    UnknownTag { tag: u8 },
    #[error("a name is not UTF-8: {0}")]
    NotUtf8(#[from] std::str::Utf8Error),
    #[error("revision {revision} and compacted revision {compacted_revision} are impossible")]
    ImpossibleRevisions {
        revision: i64,
        compacted_revision: i64,
    },
    /// The index names a revision the key-value table does not hold.
    #[error("index points at missing revision {main}.{sub}")]
    MissingRevision { main: i64, sub: i64 },
    #[error("unknown rejection code {code}")]
    UnknownRejection { code: u32 },
    /// A command result that holds no outcome at all.
    #[error("empty")]
    NoOutcome,
    #[error("a command entry produced no result")]
    NoApplyResult,
    /// An apply result of another kind than the command asked for.
    #[error("apply returned a different kind of result")]
    ResultKindMismatch,
}

impl KvError {
    /// Wraps any redb error (they all convert into `redb::Error`).
    pub fn storage(e: impl Into<redb::Error>) -> KvError {
        KvError::Storage(e.into())
    }

    fn code(&self) -> Code {
        match self {
            KvError::Compacted | KvError::FutureRevision | KvError::LeaseTtlTooLarge => {
                Code::OutOfRange
            }
            KvError::EmptyKey
            | KvError::KeyNotFound
            | KvError::TooManyOps
            | KvError::DuplicateKey
            | KvError::ValueProvided
            | KvError::LeaseProvided
            | KvError::InvalidSortOption
            | KvError::InvalidRequest(_) => Code::InvalidArgument,
            KvError::LeaseNotFound | KvError::MemberNotFound => Code::NotFound,
            KvError::RequestTooLarge => Code::InvalidArgument,
            KvError::LeaseExists
            | KvError::PeerUrlExists
            | KvError::MemberNotLearner
            | KvError::MemberExists
            | KvError::LearnerNotReady => Code::FailedPrecondition,
            KvError::TooManyRequests | KvError::NoSpace => Code::ResourceExhausted,
            KvError::UserEmpty
            | KvError::RoleEmpty
            | KvError::AuthFailed
            | KvError::InvalidAuthMgmt
            | KvError::AuthOldRevision => Code::InvalidArgument,
            KvError::RootUserNotExist
            | KvError::RootRoleNotExist
            | KvError::UserExists
            | KvError::UserNotFound
            | KvError::RoleExists
            | KvError::RoleNotFound
            | KvError::RoleNotGranted
            | KvError::PermissionNotGranted
            | KvError::AuthNotEnabled => Code::FailedPrecondition,
            KvError::PermissionDenied => Code::PermissionDenied,
            KvError::InvalidAuthToken => Code::Unauthenticated,
            KvError::NotLeader
            | KvError::NoLeader
            | KvError::Timeout
            | KvError::Stopped
            | KvError::ChangePending
            | KvError::LeaderChanged
            | KvError::LeaderFailed
            | KvError::Busy(_) => Code::Unavailable,
            KvError::Remote(status) => status.code(),
            KvError::Unsupported(_) => Code::Unimplemented,
            KvError::Corrupt { .. } | KvError::Storage(_) | KvError::Io(_) => Code::Internal,
        }
    }
}

impl From<KvError> for Status {
    fn from(e: KvError) -> Status {
        match e {
            KvError::Remote(status) => status,
            e => Status::new(e.code(), e.to_string()),
        }
    }
}

/// Decodes a protobuf record, naming what it was on failure.
pub(crate) fn decode<M: prost::Message + Default>(
    what: &'static str,
    bytes: &[u8],
) -> Result<M, KvError> {
    M::decode(bytes).map_err(|e| KvError::Corrupt {
        what,
        kind: Corruption::Undecodable(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacted_maps_to_out_of_range_with_etcd_text() {
        let status = Status::from(KvError::Compacted);
        assert_eq!(status.code(), Code::OutOfRange);
        assert_eq!(
            status.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
    }
}
