//! What the full-stack world needs from the application it replicates:
//! its state machine, its clients' operations, and how to judge what the
//! clients saw. Keel KV is one application (`kv_app.rs`); an embedder's
//! state machine with its sequential model is another (`crate::service`).

use bytes::Bytes;
use keel::{Error, ReadConsistency, StateMachine};
use keel_raft::NodeId;

use super::member::Member;
use crate::history::OpCounts;
use crate::kv::Tag;
use crate::rng::Rng;
use crate::time::Micros;
use crate::verdict::Verdict;

/// What application `A`'s state machine answers a write.
pub type Response<A> = <<A as App>::Machine as StateMachine>::Response;

/// How a call reaches the state machine.
#[derive(Clone, Debug)]
pub enum CallKind {
    /// Proposed through the log; the member forwards it to the leader.
    Write(Bytes),
    /// Served from the member's state machine after a read barrier.
    Read(ReadConsistency),
}

/// A client's operation, as the history records it and as the member gets it.
#[derive(Clone, Debug)]
pub struct Operation<Op> {
    pub tag: Tag,
    pub op: Op,
    pub kind: CallKind,
}

/// Clients that only read, with one consistency, from the member the
/// world pins (the targeted profiles' readers).
#[derive(Clone, Copy, Debug)]
pub struct PinnedReaders {
    pub count: usize,
    pub consistency: Option<ReadConsistency>,
}

/// An application the world runs on every member, with its clients.
pub trait App {
    /// The replicated state machine, one per life of a member.
    type Machine: StateMachine;
    /// An operation as the history records it.
    type Op: Clone;
    /// What a successful operation returned, as the history records it.
    type Output;

    /// Creates `count` clients (the first `pinned.count` of them readers
    /// of the pinned member), drawing their randomness from `rng`.
    fn add_clients(&mut self, count: usize, pinned: PinnedReaders, rng: &mut Rng);

    /// A fresh state machine for a new life of member `id`.
    fn machine(&mut self, id: NodeId) -> Result<Self::Machine, String>;

    /// Client `client`'s next operation and the member it sends it to,
    /// among `up` (never empty), or to `pinned` if it is a pinned reader.
    fn next_operation(
        &mut self,
        client: usize,
        up: &[NodeId],
        pinned: Option<NodeId>,
    ) -> (NodeId, Operation<Self::Op>);

    /// What a write returned, from the state machine's response.
    fn write_output(&self, op: &Self::Op, response: Response<Self>)
    -> Result<Self::Output, String>;

    /// What a read returns from member `id`'s `machine`, once its barrier
    /// passed.
    fn read_output(
        &self,
        id: NodeId,
        machine: &Self::Machine,
        op: &Self::Op,
    ) -> Result<Self::Output, String>;

    /// Whether the application's client layer retries a request that
    /// failed with `error` (rather than answering the client).
    fn retryable(&self, error: &Error) -> bool;

    /// Whether a client sends a write again, with the same request, when
    /// it did not hear back (a timeout, a broken connection): then the
    /// state machine must recognise the resend.
    fn resends_unknown(&self) -> bool;

    /// Records an invocation.
    fn invoked(&mut self, tag: Tag, op: &Self::Op, now: Micros);

    /// Records an answer: `Some` output, or `None` for a request that
    /// certainly did not take effect.
    fn answered(&mut self, client: usize, tag: Tag, output: Option<Self::Output>, now: Micros);

    /// Closes the history (open operations have unknown outcomes) and
    /// checks it.
    fn verdict(&mut self, now: Micros) -> (Verdict, OpCounts);

    /// The application's checks over the members up at the end.
    fn at_end(&mut self, members: &mut [&mut Member<Self::Machine>]) -> Result<(), String>;

    /// A digest of the members' final states, to tell two runs apart.
    fn fingerprint(&mut self, members: &mut [&mut Member<Self::Machine>]) -> u64;
}
