//! The world's events and their queue: ordered by virtual time, then by
//! insertion, so that a run is a pure function of its seed.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use bytes::Bytes;
use keel::Error;
use keel_raft::{Message, NodeId};

use crate::time::Micros;

/// Something that happens in the world at a moment of virtual time.
#[derive(Debug)]
pub enum Event<R> {
    Tick(NodeId, u64),
    Sync(NodeId, u64),
    Apply(NodeId, u64),
    Deliver(NodeId, Message),
    DeliverSnapshot(NodeId, Message, Bytes),
    /// The member's stream of messages from a peer ended: the peer crashed
    /// (its sockets closed) or a link reset.
    Disconnected {
        to: NodeId,
        from: NodeId,
    },
    SnapshotReport {
        from: NodeId,
        incarnation: u64,
        to: NodeId,
        ok: bool,
    },
    /// A client's call reaches its member.
    CallArrives(u64),
    /// A follower's forwarded command reaches the member it believes leads.
    Forward {
        call: u64,
        to: NodeId,
    },
    /// The leader's answer to a forward reaches the call's member.
    ForwardReply {
        call: u64,
        reply: ForwardReply<R>,
    },
    CallRetry(u64),
    CallDeadline(u64),
    ClientWake(usize),
    Fault,
    Crash(NodeId),
    Restart(NodeId),
    Resume(NodeId),
    /// Links slowed in this epoch are fast again.
    LinksRecovered(u64),
    HealNetwork(u64),
    Heal,
}

/// The leader's answer to a forwarded command.
#[derive(Debug)]
pub enum ForwardReply<R> {
    /// Applied; the state machine's response.
    Applied(R),
    /// Not appended by the leader: retry.
    Refused,
    Failed(Error),
    /// The connection broke with the command perhaps appended (the leader
    /// stopped while it was in flight or pending): the outcome is unknown.
    Broken,
}

/// An event and when it happens.
struct Scheduled<R> {
    at: Micros,
    seq: u64,
    event: Event<R>,
}

impl<R> PartialEq for Scheduled<R> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<R> Eq for Scheduled<R> {}
impl<R> PartialOrd for Scheduled<R> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<R> Ord for Scheduled<R> {
    /// Reversed: the max-heap pops the earliest event first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}
/// Events waiting for their time.
pub struct Queue<R> {
    heap: BinaryHeap<Scheduled<R>>,
    seq: u64,
}

impl<R> Default for Queue<R> {
    fn default() -> Queue<R> {
        Queue {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<R> Queue<R> {
    pub fn push(&mut self, at: Micros, event: Event<R>) {
        self.seq += 1;
        self.heap.push(Scheduled {
            at,
            seq: self.seq,
            event,
        });
    }

    /// The earliest event and its time.
    pub fn pop(&mut self) -> Option<(Micros, Event<R>)> {
        self.heap.pop().map(|s| (s.at, s.event))
    }
}
