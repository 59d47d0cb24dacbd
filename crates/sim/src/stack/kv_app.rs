//! Keel KV as the world's application: its clients and its request path.
//!
//! A simulated client sends etcd requests (put, delete, a compare-and-swap
//! txn, a linearizable range, and — the runtime's own offer — lease reads)
//! to one member. That member handles it as Keel KV's `RaftConsensus`
//! does (the world's `requests.rs`, with Keel KV's own `is_retryable`).
//! Range reads pass a ReadIndex barrier, then read the member's MVCC store.
//! Results are decoded with Keel KV's `decode_result`, so what the
//! per-key linearizability checker sees is what an etcd client would. At
//! the end, no write may have been applied twice and members at one
//! revision must agree.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use bytes::Bytes;
use keel::{Error, ReadConsistency};
use keel_kv::command::{decode_result, encode};
use keel_kv::mvcc::KeyRange;
use keel_kv::proto::command::command::Op;
use keel_kv::proto::command::command_result::Result as Outcome;
use keel_kv::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use keel_kv::proto::etcdserverpb::request_op::Request as TxnOp;
use keel_kv::proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use keel_kv::proto::mvccpb::event::EventType;
use keel_kv::replica::{RaftMachine, is_retryable};
use keel_kv::{KvError, KvStateMachine};
use keel_linearizability::{OpKind, Output};
use keel_raft::NodeId;

use super::app::{App, CallKind, Operation, PinnedReaders};
use super::member::Member;
use crate::history::{ClientHistory, OpCounts};
use crate::kv::Tag;
use crate::node::Reply;
use crate::rng::{Fnv, Rng};
use crate::time::Micros;
use crate::verdict::{Verdict, verdict};

/// A closed-loop client over a few keys.
pub struct Client {
    pub id: u32,
    rng: Rng,
    keys: usize,
    next_request: u32,
    /// The last value seen per key, so that compare-and-swaps often succeed.
    last_seen: std::collections::BTreeMap<String, Option<String>>,
    /// Sends only reads of this consistency, to the member the world pins
    /// (the targeted profiles' readers).
    pinned_reads: Option<ReadConsistency>,
}

impl Client {
    fn new(id: u32, rng: Rng, keys: usize, pinned_reads: Option<ReadConsistency>) -> Client {
        Client {
            id,
            rng,
            keys,
            next_request: 0,
            last_seen: Default::default(),
            pinned_reads,
        }
    }

    /// Draws the next operation and the member to send it to, among `up`
    /// (never empty).
    fn next(&mut self, up: &[NodeId], pinned: Option<NodeId>) -> (NodeId, Operation<OpKind>) {
        self.next_request += 1;
        let tag = Tag {
            client: self.id,
            request: self.next_request,
        };
        let key = format!("k{}", self.rng.below(self.keys as u64));
        let value = format!("{}.{}", self.id, self.next_request);
        if let Some(consistency) = self.pinned_reads {
            let member = pinned.unwrap_or(*self.rng.pick(up));
            let kind = CallKind::Read(consistency);
            let op = OpKind::get(key);
            return (member, Operation { tag, op, kind });
        }
        let member = *self.rng.pick(up);
        let (op, kind) = match self.rng.weighted(&[30, 8, 30, 20, 12]) {
            0 => (
                OpKind::get(key),
                CallKind::Read(ReadConsistency::Linearizable),
            ),
            1 => (OpKind::get(key), CallKind::Read(ReadConsistency::Lease)),
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

    /// A read's answer, remembered for later compare-and-swaps.
    fn read(&mut self, op: &OpKind, value: Option<String>) {
        self.last_seen.insert(op.key().to_owned(), value);
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
fn write_output(op: &OpKind, result: &[u8]) -> Result<Output, KvError> {
    let (_, outcome) = decode_result(result)?;
    Ok(match (op, outcome) {
        (OpKind::Cas { .. }, Outcome::Txn(txn)) => Output::Cas(txn.succeeded),
        _ => Output::Unit,
    })
}

/// The value of `key` in a member's store, as a linearizable range after
/// its barrier returns it.
fn read_value(kv: &KvStateMachine, key: &str) -> Result<Option<String>, KvError> {
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

/// Keel KV's MVCC state machine on in-memory redb, with etcd clients.
#[derive(Default)]
pub struct KvApp {
    clients: Vec<Client>,
    /// Each member's store in its current life, for the end checks.
    stores: BTreeMap<NodeId, Arc<KvStateMachine>>,
    history: ClientHistory,
}

impl App for KvApp {
    type Machine = RaftMachine;
    type Op = OpKind;
    type Output = Output;

    fn add_clients(&mut self, count: usize, pinned: PinnedReaders, rng: &mut Rng) {
        self.clients = (0..count)
            .map(|c| {
                let reads = pinned.consistency.filter(|_| c < pinned.count);
                Client::new(c as u32 + 1, rng.fork(c as u64), 3, reads)
            })
            .collect();
    }

    fn machine(&mut self, id: NodeId) -> Result<RaftMachine, String> {
        let kv = KvStateMachine::in_memory().map_err(|e| e.to_string())?;
        self.stores.insert(id, kv.clone());
        Ok(RaftMachine::new(kv))
    }

    fn next_operation(
        &mut self,
        client: usize,
        up: &[NodeId],
        pinned: Option<NodeId>,
    ) -> (NodeId, Operation<OpKind>) {
        self.clients[client].next(up, pinned)
    }

    fn write_output(&self, op: &OpKind, response: Bytes) -> Result<Output, String> {
        write_output(op, &response)
            .map_err(|e| format!("the store refused a well-formed {}: {e}", op.name()))
    }

    /// Reads the member's MVCC store (the machine wraps the same store).
    fn read_output(&self, id: NodeId, _: &RaftMachine, op: &OpKind) -> Result<Output, String> {
        read_value(&self.stores[&id], op.key())
            .map(Output::Read)
            .map_err(|e| format!("a range read failed: {e}"))
    }

    fn retryable(&self, error: &Error) -> bool {
        is_retryable(error)
    }

    /// etcd clients do not resend a write that timed out.
    fn resends_unknown(&self) -> bool {
        false
    }

    fn invoked(&mut self, tag: Tag, op: &OpKind, now: Micros) {
        self.history.invoke(tag, op.clone(), now);
    }

    fn answered(&mut self, client: usize, tag: Tag, output: Option<Output>, now: Micros) {
        let reply = match output {
            Some(Output::Read(value)) => Reply::Read(value),
            Some(output) => Reply::Written(output),
            None => Reply::Failed { leader_hint: None },
        };
        if let Some(op) = self.history.complete(tag, &reply, now)
            && let Reply::Read(value) = reply
        {
            self.clients[client].read(&op, value);
        }
    }

    fn verdict(&mut self, now: Micros) -> (Verdict, OpCounts) {
        let (history, ops) = std::mem::take(&mut self.history).finish(None, now);
        (verdict(&history), ops)
    }

    /// Members at the same revision hold the same data, and no write was
    /// applied twice.
    fn at_end(&mut self, members: &mut [&mut Member<RaftMachine>]) -> Result<(), String> {
        let mut by_revision: BTreeMap<i64, (NodeId, u32)> = BTreeMap::new();
        for member in members.iter() {
            let store = self.stores[&member.id].store();
            let (hash, revision, _) = store
                .hash_kv(0)
                .map_err(|e| format!("HashKV on member {} failed: {e}", member.id))?;
            match by_revision.get(&revision) {
                Some(&(other, other_hash)) if other_hash != hash => {
                    return Err(format!(
                        "members {other} and {} disagree at revision {revision}",
                        member.id
                    ));
                }
                _ => {
                    by_revision.insert(revision, (member.id, hash));
                }
            }
            exactly_once(member.id, &self.stores[&member.id])?;
        }
        Ok(())
    }

    fn fingerprint(&mut self, members: &mut [&mut Member<RaftMachine>]) -> u64 {
        let mut h = Fnv::default();
        for member in members.iter() {
            member.id.hash(&mut h);
            if let Ok(hash) = self.stores[&member.id].store().hash_kv(0) {
                hash.hash(&mut h);
            }
        }
        h.finish()
    }
}

/// Every value a client writes is unique, so a value stored by two
/// revisions means one command took effect twice.
fn exactly_once(id: NodeId, kv: &KvStateMachine) -> Result<(), String> {
    let store = kv.store();
    let revision = store.position().revision;
    let all = KeyRange::new(vec![0u8], vec![0u8]);
    let events = store
        .history(1, revision, &all, usize::MAX)
        .map_err(|e| format!("reading member {id}'s history failed: {e}"))?;
    let mut seen: BTreeMap<Bytes, i64> = BTreeMap::new();
    for event in events {
        if event.r#type != EventType::Put as i32 {
            continue;
        }
        let kv = event.kv.unwrap_or_default();
        if let Some(first) = seen.insert(kv.value.clone(), kv.mod_revision) {
            return Err(format!(
                "member {id}: value {:?} written at revisions {first} and {}: a write applied twice",
                String::from_utf8_lossy(&kv.value),
                kv.mod_revision
            ));
        }
    }
    Ok(())
}
