//! Simulated clients: each runs a closed loop of KV operations (put, get,
//! cas, delete over a few keys) against the node it believes leads, with
//! reads of every kind the core offers — ReadIndex and lease reads on the
//! leader, and reads through followers.

use std::collections::BTreeMap;

use keel_linearizability::OpKind;
use keel_raft::{NodeId, ReadMode};

use crate::kv::{Command, KvOp, Tag};
use crate::node::{Reply, Request};
use crate::rng::Rng;

/// An operation ready to be sent.
#[derive(Clone, Debug)]
pub struct Invocation {
    pub tag: Tag,
    pub node: NodeId,
    pub request: Request,
    /// The operation as the linearizability checker models it.
    pub op: OpKind,
}

#[derive(Debug)]
pub struct Client {
    pub id: u32,
    rng: Rng,
    keys: Vec<String>,
    next_request: u32,
    /// The node this client believes leads.
    leader_guess: Option<NodeId>,
    /// The operation it waits for.
    waiting: Option<Tag>,
    /// The last value seen per key, to make compare-and-swaps succeed often.
    last_seen: BTreeMap<String, Option<String>>,
}

impl Client {
    pub fn new(id: u32, rng: Rng, keys: usize) -> Client {
        Client {
            id,
            rng,
            keys: (0..keys).map(|k| format!("k{k}")).collect(),
            next_request: 0,
            leader_guess: None,
            waiting: None,
            last_seen: BTreeMap::new(),
        }
    }

    pub fn is_waiting(&self) -> bool {
        self.waiting.is_some()
    }

    /// Draws the next operation and the node to send it to, chosen among
    /// `up` (never empty); a read of the given mode, whatever else it would
    /// draw, when `read_only` says one.
    pub fn invoke(&mut self, up: &[NodeId], read_only: Option<ReadMode>) -> Invocation {
        self.next_request += 1;
        let tag = Tag {
            client: self.id,
            request: self.next_request,
        };
        self.waiting = Some(tag);
        let key = self.rng.pick(&self.keys).clone();
        let leader = self.leader_guess.filter(|l| up.contains(l));
        let any = *self.rng.pick(up);
        let value = format!("{}.{}", self.id, self.next_request);
        let write = |op: KvOp| Request::Write {
            tag,
            command: Command { tag, op },
        };
        let kind = if read_only.is_some() {
            0
        } else {
            self.rng.weighted(&[35, 30, 20, 15])
        };
        let (node, request, op) = match kind {
            0 => {
                // Reads go to the leader or, as follower reads, anywhere.
                let node = if self.rng.chance(600) {
                    leader.unwrap_or(any)
                } else {
                    any
                };
                let mode = match read_only {
                    Some(mode) => mode,
                    None if self.rng.chance(500) => ReadMode::ReadIndex,
                    None => ReadMode::Lease,
                };
                let request = Request::Read {
                    tag,
                    key: key.clone(),
                    mode,
                };
                (node, request, OpKind::get(key))
            }
            1 => (
                leader.unwrap_or(any),
                write(KvOp::Put {
                    key: key.clone(),
                    value: value.clone(),
                }),
                OpKind::put(key, value),
            ),
            2 => {
                let expected = if self.rng.chance(800) {
                    self.last_seen.get(&key).cloned().flatten()
                } else {
                    None
                };
                let new = (!self.rng.chance(100)).then_some(value);
                let op = OpKind::cas(key.clone(), expected.as_deref(), new.as_deref());
                let request = write(KvOp::Cas { key, expected, new });
                (leader.unwrap_or(any), request, op)
            }
            _ => (
                leader.unwrap_or(any),
                write(KvOp::Delete { key: key.clone() }),
                OpKind::delete(key),
            ),
        };
        Invocation {
            tag,
            node,
            request,
            op,
        }
    }

    /// A reply to `tag` from `node`. Returns whether the client was waiting
    /// for it (and is now free for its next operation).
    pub fn on_reply(&mut self, tag: Tag, node: NodeId, op: &OpKind, reply: &Reply) -> bool {
        match reply {
            Reply::Failed { leader_hint } => self.leader_guess = *leader_hint,
            Reply::Read(value) => {
                self.last_seen.insert(op.key().to_owned(), value.clone());
            }
            Reply::Written(_) => {
                self.leader_guess = Some(node);
                if let OpKind::Put { key, value } = op {
                    self.last_seen.insert(key.clone(), Some(value.clone()));
                }
            }
        }
        self.finish(tag)
    }

    /// The client gave up waiting for `tag`. Returns whether it was waiting.
    pub fn on_timeout(&mut self, tag: Tag) -> bool {
        let was_waiting = self.finish(tag);
        if was_waiting {
            self.leader_guess = None;
        }
        was_waiting
    }

    fn finish(&mut self, tag: Tag) -> bool {
        if self.waiting == Some(tag) {
            self.waiting = None;
            return true;
        }
        false
    }
}
