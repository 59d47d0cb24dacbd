//! Clients and the KV layer's request path.
//!
//! A simulated client sends etcd requests (put, delete, a compare-and-swap
//! txn, a linearizable range, and — the runtime's own offer — lease reads)
//! to one member. That member handles it as Keel KV's `RaftConsensus`
//! does: it proposes the encoded command to its node; a follower forwards
//! it to the leader the node names (over the simulated network, as the
//! Forward call travels over the peer connection); retryable refusals are
//! retried after a backoff until the request's deadline, with the KV
//! layer's own `is_retryable`. Range reads pass a ReadIndex barrier, then
//! read the member's MVCC store. Results are decoded with Keel KV's
//! `decode_result`, so what the linearizability checker sees is what an
//! etcd client would.

use bytes::Bytes;
use keel::Error;
use keel_kv::KvError;
use keel_kv::command::{decode_result, encode};
use keel_kv::proto::command::command::Op;
use keel_kv::proto::command::command_result::Result as Outcome;
use keel_kv::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use keel_kv::proto::etcdserverpb::request_op::Request as TxnOp;
use keel_kv::proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use keel_linearizability::{OpKind, Output};
use keel_raft::NodeId;

use crate::kv::Tag;
use crate::node::Reply;
use crate::rng::Rng;

/// How a read waits for the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadKind {
    /// Keel KV's range: a ReadIndex barrier, then the local store.
    Linearizable,
    /// The runtime's lease read (§6.4.1).
    Lease,
}

/// What a call asks of its member.
#[derive(Clone, Debug)]
pub enum CallKind {
    Write(Bytes),
    Read { key: String, kind: ReadKind },
}

/// A client's operation, as the checker models it and as the member gets it.
#[derive(Clone, Debug)]
pub struct Operation {
    pub tag: Tag,
    pub op: OpKind,
    pub kind: CallKind,
}

/// A closed-loop client over a few keys.
pub struct Client {
    pub id: u32,
    rng: Rng,
    keys: usize,
    next_request: u32,
    /// The last value seen per key, so that compare-and-swaps often succeed.
    last_seen: std::collections::BTreeMap<String, Option<String>>,
    /// Sends only reads of this kind, to the member the world pins (the
    /// targeted profiles' readers).
    pub pinned_reads: Option<ReadKind>,
    pub waiting: Option<Tag>,
}

impl Client {
    pub fn new(id: u32, rng: Rng, keys: usize, pinned_reads: Option<ReadKind>) -> Client {
        Client {
            id,
            rng,
            keys,
            next_request: 0,
            last_seen: Default::default(),
            pinned_reads,
            waiting: None,
        }
    }

    /// Draws the next operation and the member to send it to, among `up`
    /// (never empty).
    pub fn next(&mut self, up: &[NodeId], pinned: Option<NodeId>) -> (NodeId, Operation) {
        self.next_request += 1;
        let tag = Tag {
            client: self.id,
            request: self.next_request,
        };
        self.waiting = Some(tag);
        let key = format!("k{}", self.rng.below(self.keys as u64));
        let value = format!("{}.{}", self.id, self.next_request);
        if let Some(kind) = self.pinned_reads {
            let member = pinned.unwrap_or(*self.rng.pick(up));
            let kind = CallKind::Read {
                key: key.clone(),
                kind,
            };
            let op = OpKind::get(key);
            return (member, Operation { tag, op, kind });
        }
        let member = *self.rng.pick(up);
        let (op, kind) = match self.rng.weighted(&[30, 8, 30, 20, 12]) {
            0 => (
                OpKind::get(key.clone()),
                CallKind::Read {
                    key,
                    kind: ReadKind::Linearizable,
                },
            ),
            1 => (
                OpKind::get(key.clone()),
                CallKind::Read {
                    key,
                    kind: ReadKind::Lease,
                },
            ),
            2 => (
                OpKind::put(key.clone(), value.clone()),
                CallKind::Write(encode(Op::Put(put(&key, &value)))),
            ),
            3 => {
                let expected = if self.rng.chance(800) {
                    self.last_seen.get(&key).cloned().flatten()
                } else {
                    None
                };
                let new = (!self.rng.chance(100)).then_some(value);
                let op = OpKind::cas(key.clone(), expected.as_deref(), new.as_deref());
                let txn = cas(&key, expected.as_deref(), new.as_deref());
                (op, CallKind::Write(encode(Op::Txn(txn))))
            }
            _ => (
                OpKind::delete(key.clone()),
                CallKind::Write(encode(Op::DeleteRange(delete(&key)))),
            ),
        };
        (member, Operation { tag, op, kind })
    }

    /// The answer to the operation it waited for.
    pub fn answered(&mut self, op: &OpKind, reply: &Reply) {
        self.waiting = None;
        if let Reply::Read(value) = reply {
            self.last_seen.insert(op.key().to_owned(), value.clone());
        }
    }
}

fn put(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
        ..Default::default()
    }
}

fn delete(key: &str) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: Bytes::copy_from_slice(key.as_bytes()),
        ..Default::default()
    }
}

/// Sets `key` to `new` (`None`: deletes it) if it holds `expected`
/// (`None`: absent, i.e. version 0), as etcd clients spell it.
fn cas(key: &str, expected: Option<&str>, new: Option<&str>) -> TxnRequest {
    let compare = match expected {
        Some(value) => Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Value as i32,
            key: Bytes::copy_from_slice(key.as_bytes()),
            target_union: Some(TargetUnion::Value(Bytes::copy_from_slice(value.as_bytes()))),
            ..Default::default()
        },
        None => Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Version as i32,
            key: Bytes::copy_from_slice(key.as_bytes()),
            target_union: Some(TargetUnion::Version(0)),
            ..Default::default()
        },
    };
    let op = match new {
        Some(value) => TxnOp::RequestPut(put(key, value)),
        None => TxnOp::RequestDeleteRange(delete(key)),
    };
    TxnRequest {
        compare: vec![compare],
        success: vec![RequestOp { request: Some(op) }],
        failure: Vec::new(),
    }
}

/// The checker's output for a write's apply result, or the error.
pub fn write_output(op: &OpKind, result: &[u8]) -> Result<Output, KvError> {
    let (_, outcome) = decode_result(result)?;
    Ok(match (op, outcome) {
        (OpKind::Cas { .. }, Outcome::Txn(txn)) => Output::Cas(txn.succeeded),
        _ => Output::Unit,
    })
}

/// The value of `key` in a member's store, as a linearizable range after
/// its barrier returns it.
pub fn read_value(kv: &keel_kv::KvStateMachine, key: &str) -> Result<Option<String>, KvError> {
    let request = RangeRequest {
        key: Bytes::copy_from_slice(key.as_bytes()),
        ..Default::default()
    };
    let response = kv.store().range(&request)?;
    Ok(response
        .kvs
        .first()
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
}

/// Whether a write that ended with `error` certainly did not take effect.
/// Only refusals before anything was appended, and a commit of another
/// entry at the proposal's index, say so; everything else (a lost
/// leadership, a timeout, a stopped member) leaves the outcome unknown.
pub fn certainly_not_written(error: &Error) -> bool {
    matches!(
        error,
        Error::NotLeader { .. }
            | Error::LeaderNotReady
            | Error::Overloaded
            | Error::ProposalDropped { .. }
            | Error::TransferInProgress { .. }
    )
}
