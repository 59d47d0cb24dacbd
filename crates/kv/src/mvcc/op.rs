//! One command's operation, in two steps: [`check`] finds every refusal
//! against the state before the entry, and changes nothing (it holds the
//! writer by shared reference); [`execute`] then makes the changes.

use super::alarm::{AlarmChange, change_of};
use super::apply_error::ApplyError;
use super::txn::TxnPath;
use super::write::Writer;
use crate::auth::Required;
use crate::proto::command::command::Op;
use crate::proto::command::command_result::Result as Outcome;
use crate::proto::command::{Caller, Empty};
use crate::proto::etcdserverpb::{
    CompactionResponse, DeleteRangeRequest, LeaseGrantResponse, LeaseRevokeResponse, Member,
    PutRequest, ResponseHeader, TxnRequest,
};
use crate::rejection::Rejection;

/// An operation that [`check`] accepted: only a checked operation can be
/// executed. A txn carries the branches it takes, decided before any of its
/// writes.
pub(crate) enum Checked {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest, TxnPath),
    Compaction { revision: i64 },
    LeaseGrant { id: i64, ttl_seconds: i64 },
    LeaseRevoke { id: i64 },
    MemberSet(Member),
    MemberRemove { id: u64 },
    Alarm(AlarmChange),
    CompactionStep,
    Auth(Op),
}

/// Every refusal `op` can meet, found before anything changes: first
/// whether `caller` may do it under the auth state of this log position,
/// then what the operation itself can be refused for.
pub(crate) fn check(w: &Writer<'_, '_>, caller: &Caller, op: Op) -> Result<Checked, ApplyError> {
    let state = &*w.state;
    let refuse = |r: Rejection| Err(ApplyError::Rejected(r));
    w.check_capacity(&op)?;
    if state.auth.checks(caller) {
        state
            .auth
            .permit(caller, &Required::op(&op, &state.leases))
            .map_err(ApplyError::Rejected)?;
    }
    Ok(match op {
        Op::Put(req) => {
            w.check_lone_put(&req)?;
            Checked::Put(req)
        }
        Op::DeleteRange(req) if req.key.is_empty() => return refuse(Rejection::EmptyKey),
        Op::DeleteRange(req) => Checked::DeleteRange(req),
        Op::Txn(req) => {
            let path = w.check_txn(&req)?;
            Checked::Txn(req, path)
        }
        Op::Compaction(req) if req.revision <= state.compacted_revision => {
            return refuse(Rejection::Compacted);
        }
        Op::Compaction(req) if req.revision > state.current_revision => {
            return refuse(Rejection::FutureRevision);
        }
        Op::Compaction(req) => Checked::Compaction {
            revision: req.revision,
        },
        // ID 0 means "no lease" everywhere a key names its lease; the
        // proposer chooses a real ID, so 0 here is a malformed command
        // (etcd's lessor refuses it the same way).
        Op::LeaseGrant(req) if req.id == 0 => return refuse(Rejection::LeaseNotFound),
        Op::LeaseGrant(req) if state.leases.contains_key(&req.id) => {
            return refuse(Rejection::LeaseExists);
        }
        Op::LeaseGrant(req) => Checked::LeaseGrant {
            id: req.id,
            ttl_seconds: req.ttl,
        },
        Op::LeaseRevoke(req) if !state.leases.contains_key(&req.id) => {
            return refuse(Rejection::LeaseNotFound);
        }
        Op::LeaseRevoke(req) => Checked::LeaseRevoke { id: req.id },
        Op::MemberSet(member) => Checked::MemberSet(member),
        Op::MemberRemove(req) if !state.members.contains_key(&req.id) => {
            return refuse(Rejection::MemberNotFound);
        }
        Op::MemberRemove(req) => Checked::MemberRemove { id: req.id },
        Op::Alarm(req) => Checked::Alarm(change_of(&req)?),
        Op::CompactionStep(_) => Checked::CompactionStep,
        auth @ (Op::AuthEnable(_)
        | Op::AuthDisable(_)
        | Op::Authenticate(_)
        | Op::UserAdd(_)
        | Op::UserDelete(_)
        | Op::UserChangePassword(_)
        | Op::UserGrantRole(_)
        | Op::UserRevokeRole(_)
        | Op::RoleAdd(_)
        | Op::RoleDelete(_)
        | Op::RoleGrantPermission(_)
        | Op::RoleRevokePermission(_)) => {
            state.auth.check(&auth).map_err(ApplyError::Rejected)?;
            Checked::Auth(auth)
        }
    })
}

/// Applies an operation that [`check`] accepted.
pub(crate) fn execute(w: &mut Writer<'_, '_>, checked: Checked) -> Result<Outcome, ApplyError> {
    Ok(match checked {
        Checked::Put(req) => Outcome::Put(w.put(&req)?),
        Checked::DeleteRange(req) => Outcome::DeleteRange(w.delete_range(&req)?),
        Checked::Txn(req, path) => Outcome::Txn(w.run_txn(&req, &path)?),
        Checked::Compaction { revision } => {
            w.compact(revision);
            Outcome::Compaction(CompactionResponse {
                header: header(w.state.current_revision),
            })
        }
        Checked::LeaseGrant { id, ttl_seconds } => {
            w.lease_grant(id, ttl_seconds)?;
            Outcome::LeaseGrant(LeaseGrantResponse {
                header: header(w.state.current_revision),
                id,
                ttl: ttl_seconds,
                error: String::new(),
            })
        }
        Checked::LeaseRevoke { id } => {
            w.lease_revoke(id)?;
            // The revoke's deletions end at the pending revision.
            Outcome::LeaseRevoke(LeaseRevokeResponse { header: None })
        }
        Checked::MemberSet(member) => {
            w.member_set(member)?;
            Outcome::Done(Empty {})
        }
        Checked::MemberRemove { id } => {
            w.member_remove(id)?;
            Outcome::Done(Empty {})
        }
        Checked::Alarm(change) => Outcome::Alarm(w.alarm(change)?),
        Checked::CompactionStep => {
            w.compaction_step()?;
            Outcome::Done(Empty {})
        }
        Checked::Auth(op) => w.auth(&op)?,
    })
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}
