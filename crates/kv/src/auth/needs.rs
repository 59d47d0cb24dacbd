//! What a request needs to be permitted: access to key ranges, the root
//! role, or nothing. The same answer serves the member that receives the
//! request and every member that applies it.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::mvcc::LeaseState;
use crate::proto::command::command::Op;
use crate::proto::etcdserverpb::request_op::Request as TxnOp;
use crate::proto::etcdserverpb::{RangeRequest, RequestOp, TxnRequest};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Access to one key (`range_end` empty) or a range, with etcd's
/// `range_end` meanings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Need {
    pub access: Access,
    pub key: Bytes,
    pub range_end: Bytes,
}

impl Need {
    fn new(access: Access, key: &Bytes, range_end: &Bytes) -> Need {
        Need {
            access,
            key: key.clone(),
            range_end: range_end.clone(),
        }
    }
}

/// What a request must be permitted before it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Required {
    /// Any caller, even unauthenticated.
    Nothing,
    /// A user with the root role.
    Admin,
    /// A user whose roles grant every one of these.
    Keys(Vec<Need>),
}

impl Required {
    /// A Range's needs: read on its keys.
    pub fn range(req: &RangeRequest) -> Required {
        Required::Keys(vec![Need::new(Access::Read, &req.key, &req.range_end)])
    }

    /// A watch on `[key, range_end)`: read, as for a Range.
    pub fn watch(key: &Bytes, range_end: &Bytes) -> Required {
        Required::Keys(vec![Need::new(Access::Read, key, range_end)])
    }

    /// A Txn's needs: read on every compare's keys and every op of both
    /// branches, whichever runs (etcd's rule), nested txns included.
    pub fn txn(req: &TxnRequest, leases: &BTreeMap<i64, LeaseState>) -> Required {
        let mut needs = Vec::new();
        txn_needs(req, leases, &mut needs);
        Required::Keys(needs)
    }

    /// An operation's needs. Writes that attach to or revoke a lease also
    /// need write access to the keys the lease holds already (etcd's
    /// rule: who may not delete those keys may not revoke their lease).
    pub fn op(op: &Op, leases: &BTreeMap<i64, LeaseState>) -> Required {
        let mut needs = Vec::new();
        match op {
            Op::Put(req) => {
                needs.push(Need::new(Access::Write, &req.key, &Bytes::new()));
                if req.prev_kv {
                    needs.push(Need::new(Access::Read, &req.key, &Bytes::new()));
                }
                lease_key_needs(req.lease, leases, &mut needs);
            }
            Op::DeleteRange(req) => {
                needs.push(Need::new(Access::Write, &req.key, &req.range_end));
                if req.prev_kv {
                    needs.push(Need::new(Access::Read, &req.key, &req.range_end));
                }
            }
            Op::Txn(req) => txn_needs(req, leases, &mut needs),
            Op::LeaseRevoke(req) => lease_key_needs(req.id, leases, &mut needs),
            // etcd checks no permission on Maintenance/Alarm: any client
            // (with a valid token, if it sends one) may raise or clear one.
            Op::LeaseGrant(_) | Op::Authenticate(_) | Op::Alarm(_) => return Required::Nothing,
            // Members publish their own attributes (proposed as the member,
            // see `Caller::member`); anyone else changing them is an admin.
            // Compaction steps are proposed by the leader as the member.
            Op::Compaction(_)
            | Op::CompactionStep(_)
            | Op::MemberSet(_)
            | Op::MemberRemove(_)
            | Op::AuthEnable(_)
            | Op::AuthDisable(_)
            | Op::UserAdd(_)
            | Op::UserDelete(_)
            | Op::UserChangePassword(_)
            | Op::UserGrantRole(_)
            | Op::UserRevokeRole(_)
            | Op::RoleAdd(_)
            | Op::RoleDelete(_)
            | Op::RoleGrantPermission(_)
            | Op::RoleRevokePermission(_) => return Required::Admin,
        }
        Required::Keys(needs)
    }
}

fn txn_needs(req: &TxnRequest, leases: &BTreeMap<i64, LeaseState>, needs: &mut Vec<Need>) {
    for compare in &req.compare {
        needs.push(Need::new(Access::Read, &compare.key, &compare.range_end));
    }
    for op in req.success.iter().chain(&req.failure) {
        request_op_needs(op, leases, needs);
    }
}

fn request_op_needs(op: &RequestOp, leases: &BTreeMap<i64, LeaseState>, needs: &mut Vec<Need>) {
    match &op.request {
        Some(TxnOp::RequestRange(r)) => needs.push(Need::new(Access::Read, &r.key, &r.range_end)),
        Some(TxnOp::RequestPut(p)) => {
            needs.push(Need::new(Access::Write, &p.key, &Bytes::new()));
            if p.prev_kv {
                needs.push(Need::new(Access::Read, &p.key, &Bytes::new()));
            }
            lease_key_needs(p.lease, leases, needs);
        }
        Some(TxnOp::RequestDeleteRange(d)) => {
            needs.push(Need::new(Access::Write, &d.key, &d.range_end));
            if d.prev_kv {
                needs.push(Need::new(Access::Read, &d.key, &d.range_end));
            }
        }
        Some(TxnOp::RequestTxn(t)) => txn_needs(t, leases, needs),
        None => {}
    }
}

fn lease_key_needs(lease: i64, leases: &BTreeMap<i64, LeaseState>, needs: &mut Vec<Need>) {
    if let Some(held) = leases.get(&lease) {
        for key in &held.keys {
            needs.push(Need::new(Access::Write, key, &Bytes::new()));
        }
    }
}
