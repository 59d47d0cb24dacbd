//! Deterministic rejections: the refusals a committed command can meet.
//!
//! **The rule of apply.** A committed entry is applied by every replica, so
//! what a command *says* — an unknown enum value, a compacted or future
//! revision, a missing lease or key, bytes that do not decode, a command
//! from a newer format — can only ever produce a [`Rejection`]: every
//! replica reaches the same one from the same state, changes nothing, and
//! the proposer returns it to the client. Only a replica's *own* failure (its
//! disk, its files: `KvError::Storage`, `KvError::Corrupt`) may stop it.
//! The apply path keeps the two apart by type (`mvcc::ApplyError`), never by
//! a list of special cases.
//!
//! A rejection travels from the leader's apply to a follower that forwarded
//! the command as a number in `CommandResult.error`: the codes below are
//! part of the replicated format and never change meaning.

use crate::error::KvError;

/// A refusal every replica reaches identically for the same command and
/// state. The command leaves the store unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the requested revision has been compacted")]
    Compacted,
    #[error("the requested revision is in the future")]
    FutureRevision,
    #[error("the key to keep the value or lease of does not exist")]
    KeyNotFound,
    #[error("the lease does not exist")]
    LeaseNotFound,
    #[error("the lease already exists")]
    LeaseExists,
    #[error("the member is not registered")]
    MemberNotFound,
    #[error("the key is empty")]
    EmptyKey,
    /// The entry's bytes are not a command (a peer or an older build put
    /// them in the log without checking).
    #[error("the command does not decode")]
    Undecodable,
    /// The command decodes but names no operation this build knows: it was
    /// written by a newer format version.
    #[error("the command names an operation this member does not know")]
    UnsupportedCommand,
    /// A NOSPACE alarm is active and the command would grow the store
    /// (etcd's capped applier).
    #[error("a NOSPACE alarm is active")]
    NoSpace,
    /// An alarm request with an action etcd does not have, or one that
    /// raises an alarm other than NOSPACE (Keel raises no other).
    #[error("the alarm request names an action or alarm this member does not raise")]
    UnsupportedAlarm,
    // Auth: etcd's refusals of users, roles and permissions.
    #[error("authentication is not enabled")]
    AuthNotEnabled,
    #[error("authentication failed")]
    AuthFailed,
    #[error("the user name is empty")]
    UserEmpty,
    #[error("the user exists")]
    UserExists,
    #[error("the user does not exist")]
    UserNotFound,
    #[error("the role name is empty")]
    RoleEmpty,
    #[error("the role exists")]
    RoleExists,
    #[error("the role does not exist")]
    RoleNotFound,
    #[error("there is no root user")]
    RootUserNotExist,
    #[error("the root user does not have the root role")]
    RootRoleNotExist,
    #[error("permission denied")]
    PermissionDenied,
    #[error("the role is not granted to the user")]
    RoleNotGranted,
    #[error("the permission is not granted to the role")]
    PermissionNotGranted,
    #[error("root may not lose its user or role while auth is enabled")]
    InvalidAuthMgmt,
    /// The command was checked against users and roles that have changed
    /// since: the client should check again (etcd's clients retry).
    #[error("the command's auth revision is old")]
    AuthOldRevision,
}

impl Rejection {
    /// The stable number this rejection travels as. Numbers 7 to 10 were
    /// refusals an older build checked in apply; they are never reused.
    pub fn code(self) -> u32 {
        match self {
            Rejection::Compacted => 1,
            Rejection::FutureRevision => 2,
            Rejection::KeyNotFound => 3,
            Rejection::LeaseNotFound => 4,
            Rejection::LeaseExists => 5,
            Rejection::MemberNotFound => 6,
            Rejection::EmptyKey => 11,
            Rejection::Undecodable => 12,
            Rejection::UnsupportedCommand => 13,
            Rejection::AuthNotEnabled => 14,
            Rejection::AuthFailed => 15,
            Rejection::UserEmpty => 16,
            Rejection::UserExists => 17,
            Rejection::UserNotFound => 18,
            Rejection::RoleEmpty => 19,
            Rejection::RoleExists => 20,
            Rejection::RoleNotFound => 21,
            Rejection::RootUserNotExist => 22,
            Rejection::RootRoleNotExist => 23,
            Rejection::PermissionDenied => 24,
            Rejection::RoleNotGranted => 25,
            Rejection::PermissionNotGranted => 26,
            Rejection::InvalidAuthMgmt => 27,
            Rejection::AuthOldRevision => 28,
            Rejection::NoSpace => 29,
            Rejection::UnsupportedAlarm => 30,
        }
    }

    /// The rejection with number `code`, if this build knows it.
    pub fn from_code(code: u32) -> Option<Rejection> {
        Some(match code {
            1 => Rejection::Compacted,
            2 => Rejection::FutureRevision,
            3 => Rejection::KeyNotFound,
            4 => Rejection::LeaseNotFound,
            5 => Rejection::LeaseExists,
            6 => Rejection::MemberNotFound,
            11 => Rejection::EmptyKey,
            12 => Rejection::Undecodable,
            13 => Rejection::UnsupportedCommand,
            14 => Rejection::AuthNotEnabled,
            15 => Rejection::AuthFailed,
            16 => Rejection::UserEmpty,
            17 => Rejection::UserExists,
            18 => Rejection::UserNotFound,
            19 => Rejection::RoleEmpty,
            20 => Rejection::RoleExists,
            21 => Rejection::RoleNotFound,
            22 => Rejection::RootUserNotExist,
            23 => Rejection::RootRoleNotExist,
            24 => Rejection::PermissionDenied,
            25 => Rejection::RoleNotGranted,
            26 => Rejection::PermissionNotGranted,
            27 => Rejection::InvalidAuthMgmt,
            28 => Rejection::AuthOldRevision,
            29 => Rejection::NoSpace,
            30 => Rejection::UnsupportedAlarm,
            _ => return None,
        })
    }
}

/// What the client is told: etcd's error for the same refusal.
impl From<Rejection> for KvError {
    fn from(r: Rejection) -> KvError {
        match r {
            Rejection::Compacted => KvError::Compacted,
            Rejection::FutureRevision => KvError::FutureRevision,
            Rejection::KeyNotFound => KvError::KeyNotFound,
            Rejection::LeaseNotFound => KvError::LeaseNotFound,
            Rejection::LeaseExists => KvError::LeaseExists,
            Rejection::MemberNotFound => KvError::MemberNotFound,
            Rejection::EmptyKey => KvError::EmptyKey,
            Rejection::Undecodable => KvError::InvalidRequest("the command does not decode"),
            Rejection::UnsupportedCommand => {
                KvError::Unsupported("a command from a newer format version")
            }
            Rejection::NoSpace => KvError::NoSpace,
            Rejection::UnsupportedAlarm => KvError::Unsupported(
                "an alarm action other than listing, disarming or raising NOSPACE",
            ),
            Rejection::AuthNotEnabled => KvError::AuthNotEnabled,
            Rejection::AuthFailed => KvError::AuthFailed,
            Rejection::UserEmpty => KvError::UserEmpty,
            Rejection::UserExists => KvError::UserExists,
            Rejection::UserNotFound => KvError::UserNotFound,
            Rejection::RoleEmpty => KvError::RoleEmpty,
            Rejection::RoleExists => KvError::RoleExists,
            Rejection::RoleNotFound => KvError::RoleNotFound,
            Rejection::RootUserNotExist => KvError::RootUserNotExist,
            Rejection::RootRoleNotExist => KvError::RootRoleNotExist,
            Rejection::PermissionDenied => KvError::PermissionDenied,
            Rejection::RoleNotGranted => KvError::RoleNotGranted,
            Rejection::PermissionNotGranted => KvError::PermissionNotGranted,
            Rejection::InvalidAuthMgmt => KvError::InvalidAuthMgmt,
            Rejection::AuthOldRevision => KvError::AuthOldRevision,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Rejection; 26] = [
        Rejection::Compacted,
        Rejection::FutureRevision,
        Rejection::KeyNotFound,
        Rejection::LeaseNotFound,
        Rejection::LeaseExists,
        Rejection::MemberNotFound,
        Rejection::EmptyKey,
        Rejection::Undecodable,
        Rejection::UnsupportedCommand,
        Rejection::AuthNotEnabled,
        Rejection::AuthFailed,
        Rejection::UserEmpty,
        Rejection::UserExists,
        Rejection::UserNotFound,
        Rejection::RoleEmpty,
        Rejection::RoleExists,
        Rejection::RoleNotFound,
        Rejection::RootUserNotExist,
        Rejection::RootRoleNotExist,
        Rejection::PermissionDenied,
        Rejection::RoleNotGranted,
        Rejection::PermissionNotGranted,
        Rejection::InvalidAuthMgmt,
        Rejection::AuthOldRevision,
        Rejection::NoSpace,
        Rejection::UnsupportedAlarm,
    ];

    #[test]
    fn codes_round_trip_and_are_distinct() {
        let mut seen = std::collections::BTreeSet::new();
        for r in ALL {
            assert!(seen.insert(r.code()), "{r:?} reuses code {}", r.code());
            assert_eq!(Rejection::from_code(r.code()), Some(r));
        }
    }

    #[test]
    fn unknown_and_retired_codes_are_not_rejections() {
        for code in [0, 7, 8, 9, 10, 31, u32::MAX] {
            assert_eq!(Rejection::from_code(code), None);
        }
    }

    #[test]
    fn compacted_reaches_the_client_as_etcds_error() {
        let status = tonic::Status::from(KvError::from(Rejection::Compacted));
        assert_eq!(status.code(), tonic::Code::OutOfRange);
        assert_eq!(
            status.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
    }
}
