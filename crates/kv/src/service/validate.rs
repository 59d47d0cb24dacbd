//! Request checks done before a request is proposed, as etcd's API layer
//! does them: they are about the request alone, never about the state.
//!
//! [`op`] and [`size`] run on every command before it is proposed, whoever
//! proposes it: the etcd services (`Shared::propose`) and the leader for a
//! command a follower forwarded (`replica/forward.rs`), so a peer cannot
//! get into the log what a client could not.

use std::collections::HashSet;

use bytes::Bytes;

use crate::error::KvError;
use crate::mvcc::KeyRange;
use crate::proto::command::command::Op;
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::{RequestOp, TxnRequest};

/// etcd's default `--max-txn-ops`.
pub const TXN_OPS_MAX: usize = 128;

/// The longest lease TTL etcd grants (`MaxLeaseTTL`), in seconds.
pub const LEASE_TTL_MAX_SECONDS: i64 = 9_000_000_000;

/// Everything a command can be refused for by its content alone.
pub fn op(op: &Op) -> Result<(), KvError> {
    match op {
        Op::Put(req) => key_present(&req.key),
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
    }
}

/// etcd's `--max-request-bytes`, on the encoded command.
pub fn size(encoded_bytes: usize, max_request_bytes: usize) -> Result<(), KvError> {
    if encoded_bytes > max_request_bytes {
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

/// Checks sizes, keys and that no branch writes a key twice.
pub fn txn(req: &TxnRequest) -> Result<(), KvError> {
    if req.compare.len() > TXN_OPS_MAX
        || req.success.len() > TXN_OPS_MAX
        || req.failure.len() > TXN_OPS_MAX
    {
        return Err(KvError::TooManyOps);
    }
    for c in &req.compare {
        key_present(&c.key)?;
    }
    for branch in [&req.success, &req.failure] {
        let mut puts = HashSet::new();
        let mut deletes = Vec::new();
        branch_writes(branch, &mut puts, &mut deletes)?;
    }
    Ok(())
}

fn branch_writes(
    ops: &[RequestOp],
    puts: &mut HashSet<Bytes>,
    deletes: &mut Vec<KeyRange>,
) -> Result<(), KvError> {
    for op in ops {
        match &op.request {
            Some(Request::RequestRange(r)) => key_present(&r.key)?,
            Some(Request::RequestPut(p)) => {
                key_present(&p.key)?;
                if !puts.insert(p.key.clone()) || deletes.iter().any(|d| d.contains(&p.key)) {
                    return Err(KvError::DuplicateKey);
                }
            }
            Some(Request::RequestDeleteRange(d)) => {
                key_present(&d.key)?;
                let range = KeyRange::new(d.key.clone(), d.range_end.clone());
                if puts.iter().any(|k| range.contains(k)) {
                    return Err(KvError::DuplicateKey);
                }
                deletes.push(range);
            }
            Some(Request::RequestTxn(nested)) => {
                txn(nested)?;
                // Only one branch of the nested txn runs, so each branch
                // must agree with the writes around it.
                for branch in [&nested.success, &nested.failure] {
                    let mut p = puts.clone();
                    let mut d = deletes.clone();
                    branch_writes(branch, &mut p, &mut d)?;
                }
            }
            None => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::{DeleteRangeRequest, PutRequest};

    fn put(k: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: Bytes::from(k.to_owned()),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn same_key_put_twice_in_a_branch_is_refused() {
        let req = TxnRequest {
            success: vec![put("a"), put("a")],
            ..Default::default()
        };
        assert!(matches!(txn(&req), Err(KvError::DuplicateKey)));
        let ok = TxnRequest {
            success: vec![put("a")],
            failure: vec![put("a")],
            ..Default::default()
        };
        assert!(txn(&ok).is_ok());
    }

    #[test]
    fn put_inside_deleted_range_is_refused() {
        let req = TxnRequest {
            success: vec![
                RequestOp {
                    request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                        key: "a".into(),
                        range_end: "c".into(),
                        prev_kv: false,
                    })),
                },
                put("b"),
            ],
            ..Default::default()
        };
        assert!(matches!(txn(&req), Err(KvError::DuplicateKey)));
    }

    #[test]
    fn too_many_ops_is_refused() {
        let req = TxnRequest {
            success: (0..=TXN_OPS_MAX).map(|i| put(&i.to_string())).collect(),
            ..Default::default()
        };
        assert!(matches!(txn(&req), Err(KvError::TooManyOps)));
    }
}
