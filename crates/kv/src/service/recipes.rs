//! What etcd's Lock and Election services are built from (etcd builds them
//! on its client's `concurrency` recipes; Keel runs the same steps inside
//! the member): a key per participant under a prefix, held by the
//! participant's lease, created by a txn; the oldest key wins; the others
//! wait until every older key is gone.
//!
//! Every step is proposed as the request's caller and authorized like the
//! caller's own Txn, Put or DeleteRange (etcd's server runs the recipes
//! through a client that carries the request's credentials): with auth
//! on, a lock or an election needs READ and WRITE on its `name/` prefix.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rand::Rng;

use super::Shared;
use crate::consensus::Consensus;
use crate::error::KvError;
use crate::proto::command::Caller;
use crate::proto::command::command::Op;
use crate::proto::command::command_result::Result as Outcome;
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::response_op::Response as OpResponse;
use crate::proto::etcdserverpb::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest, RequestOp,
    ResponseOp, TxnRequest, TxnResponse,
};
use crate::proto::mvccpb::KeyValue;

/// `name/`: the prefix under which participants' keys live.
pub(crate) fn prefix(name: &[u8]) -> Bytes {
    let mut prefix = BytesMut::with_capacity(name.len() + 1);
    prefix.extend_from_slice(name);
    prefix.extend_from_slice(b"/");
    prefix.freeze()
}

/// A participant's key: the prefix and its lease ID in hexadecimal, as
/// Go's `%x` writes an `int64` (a minus sign, not two's complement).
pub(crate) fn participant_key(prefix: &[u8], lease: i64) -> Bytes {
    let hex = if lease < 0 {
        format!("-{:x}", lease.unsigned_abs())
    } else {
        format!("{lease:x}")
    };
    let mut key = BytesMut::from(prefix);
    key.extend_from_slice(hex.as_bytes());
    key.freeze()
}

/// The end of the range of keys that start with `prefix` (etcd's
/// `GetPrefixRangeEnd`): `\0` (every key) if `prefix` is all `0xff`.
fn prefix_end(prefix: &[u8]) -> Bytes {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end.into();
        }
    }
    Bytes::from_static(b"\0")
}

/// `CreateRevision(key) == revision`.
pub(crate) fn created_at(key: &Bytes, revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.clone(),
        range_end: Bytes::new(),
        target_union: Some(TargetUnion::CreateRevision(revision)),
    }
}

/// The oldest (`Ascend`) or newest (`Descend`) key under `prefix`, created
/// at or before `max_create_revision` (0: any).
pub(crate) fn by_creation(
    prefix: &Bytes,
    order: SortOrder,
    max_create_revision: i64,
) -> RangeRequest {
    RangeRequest {
        key: prefix.clone(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: order as i32,
        sort_target: SortTarget::Create as i32,
        max_create_revision,
        ..Default::default()
    }
}

/// The TTL of a lease granted for a caller that named none (etcd's
/// `concurrency` sessions: `defaultSessionTTL`).
const SESSION_TTL_SECONDS: i64 = 60;

/// The caller's lease, or, for lease 0, a new one granted for it with
/// etcd's session TTL, which nobody keeps alive (as in etcd's servers,
/// which orphan the session).
pub(crate) async fn session_lease<C: Consensus>(
    shared: &Shared<C>,
    caller: &Caller,
    lease: i64,
) -> Result<i64, KvError> {
    if lease != 0 {
        return Ok(lease);
    }
    // The proposer picks the ID so that apply stays deterministic.
    let id = rand::rng().random_range(1..i64::MAX);
    let grant = LeaseGrantRequest {
        ttl: SESSION_TTL_SECONDS.max(shared.config.lease_ttl_min_seconds),
        id,
    };
    match shared.propose(caller, Op::LeaseGrant(grant)).await?.1 {
        Outcome::LeaseGrant(_) => Ok(id),
        _ => Err(super::mismatch("lease grant")),
    }
}

/// Proposes a txn as `caller` and returns its response.
pub(crate) async fn txn<C: Consensus>(
    shared: &Shared<C>,
    caller: &Caller,
    txn: TxnRequest,
) -> Result<TxnResponse, KvError> {
    match shared.propose(caller, Op::Txn(txn)).await?.1 {
        Outcome::Txn(response) => Ok(response),
        _ => Err(super::mismatch("txn")),
    }
}

/// Deletes `key` through the log as `caller`; returns the revision after
/// it.
pub(crate) async fn delete<C: Consensus>(
    shared: &Shared<C>,
    caller: &Caller,
    key: Bytes,
) -> Result<i64, KvError> {
    let request = DeleteRangeRequest {
        key,
        ..Default::default()
    };
    Ok(shared.propose(caller, Op::DeleteRange(request)).await?.0)
}

/// A put of `value` on `key`, held by `lease`.
pub(crate) fn put_op(key: &Bytes, value: Bytes, lease: i64) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            key: key.clone(),
            value,
            lease,
            ..Default::default()
        })),
    }
}

pub(crate) fn range_op(request: RangeRequest) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestRange(request)),
    }
}

/// The first key a txn's range op found.
pub(crate) fn range_kv(op: &ResponseOp) -> Option<&KeyValue> {
    match &op.response {
        Some(OpResponse::ResponseRange(r)) => r.kvs.first(),
        _ => None,
    }
}

/// Deletes a waiting participant's key unless disarmed: it is dropped with
/// the request's future when the client cancels or disconnects, and then
/// gives up its place, as etcd's recipes do. The member deletes it in its
/// own name: the key is the one the caller's own txn wrote (which needed
/// WRITE on it) a moment ago, and leaving the queue must not fail because
/// the caller's token or permissions changed while it waited — the key
/// would then block everyone behind it until its lease ran out.
pub(crate) struct Abandon<C: Consensus> {
    shared: Arc<Shared<C>>,
    key: Option<Bytes>,
}

impl<C: Consensus> Abandon<C> {
    pub(crate) fn new(shared: Arc<Shared<C>>, key: Bytes) -> Self {
        Abandon {
            shared,
            key: Some(key),
        }
    }

    pub(crate) fn disarm(&mut self) {
        self.key = None;
    }
}

impl<C: Consensus> Drop for Abandon<C> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else {
            return;
        };
        let shared = self.shared.clone();
        tokio::spawn(async move {
            if let Err(e) = delete(&shared, &crate::command::member_caller(), key).await {
                tracing::warn!(error = %e, "could not remove an abandoned waiter's key");
            }
        });
    }
}

/// Waits until no key under `prefix` created at or before
/// `max_create_revision` is left (each participant ahead of the caller has
/// unlocked, resigned or lost its lease); returns the store revision at
/// which that was seen.
///
/// The local store is enough: the caller's own key was applied here before
/// this is called, so every older key is here too, and a deletion this
/// member applied is committed for good.
pub(crate) async fn wait_deletes<C: Consensus>(
    shared: &Arc<Shared<C>>,
    prefix: &Bytes,
    max_create_revision: i64,
) -> Result<i64, KvError> {
    let mut announced = shared.sm.hub().subscribe();
    let older = by_creation(prefix, SortOrder::Descend, max_create_revision);
    loop {
        let response = shared.sm.store().range(&older)?;
        if response.kvs.is_empty() {
            return Ok(response.header.map_or(0, |h| h.revision));
        }
        announced.changed().await.map_err(|_| KvError::Stopped)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_written_as_etcd_writes_them() {
        let prefix = prefix(b"job");
        assert_eq!(prefix, "job/");
        assert_eq!(participant_key(&prefix, 0x694d7a1b), "job/694d7a1b");
        assert_eq!(participant_key(&prefix, -255), "job/-ff");
        assert_eq!(prefix_end(b"job/"), "job0");
        assert_eq!(prefix_end(b"a\xff"), "b");
        assert_eq!(prefix_end(b"\xff"), "\0");
    }
}
