//! Request checks done before a request is proposed, as etcd's API layer
//! does them: they are about the request alone, never about the state.
//! The order of the checks is etcd's, so that a request with several faults
//! gets etcd's error.
//!
//! [`op`] and [`size`] run on every command before it is proposed, whoever
//! proposes it: the etcd services (`Shared::propose`) and the leader for a
//! command a follower forwarded (`replica/forward.rs`), so a peer cannot
//! get into the log what a client could not.

use std::collections::HashSet;

use bytes::Bytes;

use crate::error::KvError;
use crate::mvcc::{alarm_change_of, is_read_only};
use crate::proto::command::command::Op;
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::{PutRequest, RangeRequest, RequestOp, TxnRequest};

/// etcd's default `--max-txn-ops`.
pub const TXN_OPS_MAX: usize = 128;

/// The longest lease TTL etcd grants (`MaxLeaseTTL`), in seconds.
pub const LEASE_TTL_MAX_SECONDS: i64 = 9_000_000_000;

/// Everything a command can be refused for by its content alone.
pub fn op(op: &Op) -> Result<(), KvError> {
    match op {
        Op::Put(req) => put(req),
        Op::DeleteRange(req) => key_present(&req.key),
        Op::Txn(req) => txn(req),
        Op::Compaction(_) | Op::LeaseRevoke(_) => Ok(()),
        Op::LeaseGrant(req) => {
            if req.ttl > LEASE_TTL_MAX_SECONDS {
                return Err(KvError::LeaseTtlTooLarge);
            }
            // The proposer picks the ID (apply must not), and 0 means "no lease".
            if req.id == 0 {
                return Err(KvError::InvalidRequest("a granted lease needs an ID"));
            }
            Ok(())
        }
        Op::MemberSet(member) => member_id(member.id),
        Op::MemberRemove(req) => member_id(req.id),
        Op::Alarm(req) => alarm_change_of(req).map(|_| ()).map_err(KvError::from),
        Op::CompactionStep(_) => Ok(()),
        Op::Authenticate(req) => token_prefix(&req.token_prefix),
        Op::UserAdd(req) => {
            let no_password = req.options.is_some_and(|o| o.no_password);
            password_hashed(&req.password, &req.hashed_password, no_password)
        }
        Op::UserChangePassword(req) => password_hashed(&req.password, &req.hashed_password, false),
        Op::RoleGrantPermission(req) if req.perm.is_none() => {
            Err(KvError::InvalidRequest("a permission to grant is missing"))
        }
        Op::AuthEnable(_)
        | Op::AuthDisable(_)
        | Op::UserDelete(_)
        | Op::UserGrantRole(_)
        | Op::UserRevokeRole(_)
        | Op::RoleAdd(_)
        | Op::RoleDelete(_)
        | Op::RoleGrantPermission(_)
        | Op::RoleRevokePermission(_) => Ok(()),
    }
}

/// A token's random part: letters only, so that the `.` before the log
/// index is the only one in a token.
fn token_prefix(prefix: &str) -> Result<(), KvError> {
    if (1..=64).contains(&prefix.len()) && prefix.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(())
    } else {
        Err(KvError::InvalidRequest("a token prefix is 1 to 64 letters"))
    }
}

/// A user command carries its password as a hash only: the log must never
/// hold a password, whoever proposes the command.
fn password_hashed(password: &str, hashed: &str, no_password: bool) -> Result<(), KvError> {
    if !password.is_empty() {
        return Err(KvError::InvalidRequest(
            "a password travels only as its hash",
        ));
    }
    if hashed.is_empty() && !no_password {
        return Err(KvError::InvalidRequest("the password hash is missing"));
    }
    Ok(())
}

/// etcd's `--max-request-bytes`, on the encoded command. etcd serves a txn
/// of ranges alone without proposing it, so the limit never applies to one
/// there: nor here (the gRPC receive limit still bounds it).
pub fn size(op: &Op, encoded_bytes: usize, max_request_bytes: usize) -> Result<(), KvError> {
    if encoded_bytes > max_request_bytes && !matches!(op, Op::Txn(req) if is_read_only(req)) {
        Err(KvError::RequestTooLarge)
    } else {
        Ok(())
    }
}

fn member_id(id: u64) -> Result<(), KvError> {
    if id == 0 {
        Err(KvError::InvalidRequest("member ID 0 is reserved"))
    } else {
        Ok(())
    }
}

pub fn key_present(key: &Bytes) -> Result<(), KvError> {
    if key.is_empty() {
        Err(KvError::EmptyKey)
    } else {
        Ok(())
    }
}

/// A range needs a key and sort values inside their enums (etcd 3.6's
/// rule: etcd 3.4 crashes on an unknown sort target).
pub fn range(req: &RangeRequest) -> Result<(), KvError> {
    key_present(&req.key)?;
    if SortOrder::try_from(req.sort_order).is_err()
        || SortTarget::try_from(req.sort_target).is_err()
    {
        return Err(KvError::InvalidSortOption);
    }
    Ok(())
}

/// A put needs a key, and no value or lease it was told to ignore.
pub fn put(req: &PutRequest) -> Result<(), KvError> {
    key_present(&req.key)?;
    if req.ignore_value && !req.value.is_empty() {
        return Err(KvError::ValueProvided);
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(KvError::LeaseProvided);
    }
    Ok(())
}

/// Checks sizes and every operation, then that no branch writes a key
/// twice.
pub fn txn(req: &TxnRequest) -> Result<(), KvError> {
    txn_ops(req, TXN_OPS_MAX)?;
    for branch in [&req.success, &req.failure] {
        writes(branch)?;
    }
    Ok(())
}

/// etcd counts a txn's size as its longest list; a nested txn may use only
/// what its parent left of `ops_max`.
fn txn_ops(req: &TxnRequest, ops_max: usize) -> Result<(), KvError> {
    let ops = req
        .compare
        .len()
        .max(req.success.len())
        .max(req.failure.len());
    if ops > ops_max {
        return Err(KvError::TooManyOps);
    }
    for c in &req.compare {
        key_present(&c.key)?;
    }
    for op in req.success.iter().chain(&req.failure) {
        request_op(op, ops_max - ops)?;
    }
    Ok(())
}

fn request_op(op: &RequestOp, ops_max: usize) -> Result<(), KvError> {
    match &op.request {
        Some(Request::RequestRange(r)) => range(r),
        Some(Request::RequestPut(p)) => put(p),
        Some(Request::RequestDeleteRange(d)) => key_present(&d.key),
        Some(Request::RequestTxn(nested)) => txn_ops(nested, ops_max),
        // etcd's answer to an operation with nothing in it.
        None => Err(KvError::KeyNotFound),
    }
}

/// A deleted interval as etcd's duplicate check sees it: `[start, end)` in
/// plain byte order, one key when `end` is empty. Unlike a range read, an
/// end of `\0` does not mean "every key from start": such an interval
/// holds no key, so a put after a from-key delete is allowed, as in etcd.
#[derive(Clone, Debug)]
struct Deleted {
    start: Bytes,
    end: Bytes,
}

impl Deleted {
    fn holds(&self, key: &[u8]) -> bool {
        if self.end.is_empty() {
            self.start.as_ref() == key
        } else {
            self.start.as_ref() <= key && key < self.end.as_ref()
        }
    }
}

/// The keys `ops` put and the intervals they delete, nested txns included;
/// fails when a key is put twice or put where something is deleted.
///
/// etcd's rule, order-independent within a list: a put may not meet a
/// delete of the same list or of a txn nested in it, nor a put of another
/// nested txn; the two branches of one nested txn may put the same key,
/// since only one of them runs.
fn writes(ops: &[RequestOp]) -> Result<(HashSet<Bytes>, Vec<Deleted>), KvError> {
    let mut deleted: Vec<Deleted> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestDeleteRange(d)) => Some(Deleted {
                start: d.key.clone(),
                end: d.range_end.clone(),
            }),
            _ => None,
        })
        .collect();
    let mut puts = HashSet::new();
    for op in ops {
        let Some(Request::RequestTxn(nested)) = &op.request else {
            continue;
        };
        let (puts_then, deleted_then) = writes(&nested.success)?;
        let (puts_else, deleted_else) = writes(&nested.failure)?;
        for key in &puts_then {
            if puts.contains(key) || deleted.iter().any(|d| d.holds(key)) {
                return Err(KvError::DuplicateKey);
            }
        }
        puts.extend(puts_then.iter().cloned());
        for key in puts_else {
            let clash = puts.contains(&key) && !puts_then.contains(&key);
            if clash || deleted.iter().any(|d| d.holds(&key)) {
                return Err(KvError::DuplicateKey);
            }
            puts.insert(key);
        }
        deleted.extend(deleted_then);
        deleted.extend(deleted_else);
    }
    for op in ops {
        let Some(Request::RequestPut(p)) = &op.request else {
            continue;
        };
        if puts.contains(&p.key) || deleted.iter().any(|d| d.holds(&p.key)) {
            return Err(KvError::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, deleted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::DeleteRangeRequest;

    fn put_op(k: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: Bytes::from(k.to_owned()),
                ..Default::default()
            })),
        }
    }

    fn delete_op(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: Bytes::from(k.to_owned()),
                range_end: Bytes::from(end.to_owned()),
                prev_kv: false,
            })),
        }
    }

    fn nested(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestTxn(TxnRequest {
                success,
                failure,
                ..Default::default()
            })),
        }
    }

    fn txn_of(success: Vec<RequestOp>) -> TxnRequest {
        TxnRequest {
            success,
            ..Default::default()
        }
    }

    #[test]
    fn same_key_put_twice_in_a_branch_is_refused() {
        let req = txn_of(vec![put_op("a"), put_op("a")]);
        assert!(matches!(txn(&req), Err(KvError::DuplicateKey)));
        let ok = TxnRequest {
            success: vec![put_op("a")],
            failure: vec![put_op("a")],
            ..Default::default()
        };
        assert!(txn(&ok).is_ok());
    }

    #[test]
    fn put_inside_deleted_range_is_refused_whatever_the_order() {
        for ops in [
            vec![delete_op("a", "c"), put_op("b")],
            vec![put_op("b"), delete_op("a", "c")],
        ] {
            assert!(matches!(txn(&txn_of(ops)), Err(KvError::DuplicateKey)));
        }
    }

    #[test]
    fn nested_writes_meet_the_writes_around_them_whatever_the_order() {
        for ops in [
            vec![nested(vec![put_op("a")], vec![]), delete_op("a", "")],
            vec![nested(vec![delete_op("a", "")], vec![]), put_op("a")],
            vec![
                nested(vec![put_op("a")], vec![]),
                nested(vec![], vec![put_op("a")]),
            ],
        ] {
            assert!(matches!(txn(&txn_of(ops)), Err(KvError::DuplicateKey)));
        }
        let branches = vec![nested(vec![put_op("a")], vec![put_op("a")])];
        assert!(txn(&txn_of(branches)).is_ok());
    }

    #[test]
    fn a_from_key_delete_holds_no_key_for_the_duplicate_check() {
        let req = txn_of(vec![delete_op("a", "\0"), put_op("b")]);
        assert!(txn(&req).is_ok());
    }

    #[test]
    fn an_empty_operation_is_key_not_found() {
        let req = txn_of(vec![RequestOp { request: None }]);
        assert!(matches!(txn(&req), Err(KvError::KeyNotFound)));
    }

    #[test]
    fn a_put_with_an_ignored_value_or_lease_is_refused() {
        let value = PutRequest {
            key: "k".into(),
            value: "v".into(),
            ignore_value: true,
            ..Default::default()
        };
        assert!(matches!(put(&value), Err(KvError::ValueProvided)));
        let lease = PutRequest {
            key: "k".into(),
            lease: 7,
            ignore_lease: true,
            ..Default::default()
        };
        assert!(matches!(put(&lease), Err(KvError::LeaseProvided)));
        let nested = txn_of(vec![RequestOp {
            request: Some(Request::RequestPut(value)),
        }]);
        assert!(matches!(txn(&nested), Err(KvError::ValueProvided)));
    }

    #[test]
    fn an_unknown_sort_option_is_refused() {
        for (sort_order, sort_target) in [(3, 0), (-1, 0), (0, 5), (0, -1)] {
            let req = RangeRequest {
                key: "k".into(),
                sort_order,
                sort_target,
                ..Default::default()
            };
            assert!(matches!(range(&req), Err(KvError::InvalidSortOption)));
        }
    }

    #[test]
    fn only_a_txn_of_ranges_alone_escapes_the_size_limit() {
        let big = || RangeRequest {
            key: "k".into(),
            range_end: vec![b'z'; 64].into(),
            ..Default::default()
        };
        let ranges = Op::Txn(TxnRequest {
            success: vec![RequestOp {
                request: Some(Request::RequestRange(big())),
            }],
            ..Default::default()
        });
        assert!(size(&ranges, 100, 10).is_ok());
        let writes = Op::Txn(txn_of(vec![put_op("k")]));
        assert!(matches!(
            size(&writes, 100, 10),
            Err(KvError::RequestTooLarge)
        ));
        let put = Op::Put(PutRequest {
            key: "k".into(),
            ..Default::default()
        });
        assert!(matches!(size(&put, 100, 10), Err(KvError::RequestTooLarge)));
    }

    #[test]
    fn too_many_ops_is_refused() {
        let req = txn_of((0..=TXN_OPS_MAX).map(|i| put_op(&i.to_string())).collect());
        assert!(matches!(txn(&req), Err(KvError::TooManyOps)));
    }

    #[test]
    fn a_nested_txn_may_use_only_what_its_parent_left() {
        let inner = nested((0..100).map(|i| put_op(&format!("n{i}"))).collect(), vec![]);
        let mut outer: Vec<RequestOp> = (0..50).map(|i| put_op(&format!("o{i}"))).collect();
        outer.push(inner);
        assert!(matches!(txn(&txn_of(outer)), Err(KvError::TooManyOps)));
    }
}
