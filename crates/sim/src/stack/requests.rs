//! The clients' request path, as the application's client layer (Keel
//! KV's `RaftConsensus`, or an embedder's) handles a request on the member
//! it reached: it proposes writes to its node, and a follower forwards them
//! to the leader the node names (over the simulated network, as a forward
//! travels over the peer connection); refusals the application deems
//! retryable are retried after a backoff until the request's deadline.
//! Reads pass the node's read barrier, then read the member's state
//! machine. Every answer, and every call given up, lands in the
//! application's history.

use keel::Error;
use keel::node_loop::{Input, ReadFn, Request, Responder};
use keel_raft::NodeId;
use tokio::sync::oneshot;

use super::app::{App, CallKind, Operation, Response};
use super::call::{Call, Waiting};
use super::events::{Event, ForwardReply};
use super::world::{REQUEST_TIMEOUT, Slot, World};
use crate::time::{Micros, TICK};

/// The client layer's backoff between attempts: first and largest.
const BACKOFF_MIN: Micros = Micros(TICK.0);
const BACKOFF_MAX: Micros = Micros(20 * TICK.0);
/// Client to member and back: a reliable, short hop.
const CLIENT_HOP: Micros = Micros(200);
/// How often a client that resends writes of unknown outcome resends one.
const RESENDS_MAX: u32 = 3;

impl<A: App> World<A> {
    pub(super) fn up_members(&self) -> Vec<NodeId> {
        self.slots
            .iter()
            .filter(|(_, s)| matches!(s, Slot::Up { paused: false, .. }))
            .map(|(&id, _)| id)
            .collect()
    }

    pub(super) fn client_wake(&mut self, c: usize) {
        if self.now.plus(Micros::ticks(40)) > self.end_at {
            return; // the end nears: let the cluster converge
        }
        let mut up = self.up_members();
        if up.is_empty() {
            up = self.slots.keys().copied().collect();
        }
        let pinned = self.pinned;
        let (member, operation) = self.app.next_operation(c, &up, pinned);
        self.app.invoked(operation.tag, &operation.op, self.now);
        self.send_call(c, operation, member, 0);
    }

    /// The client sends `operation` to `member`.
    fn send_call(
        &mut self,
        client: usize,
        operation: Operation<A::Op>,
        member: NodeId,
        resends: u32,
    ) {
        self.next_call += 1;
        let id = self.next_call;
        self.calls.insert(
            id,
            Call {
                client,
                operation,
                member,
                incarnation: self.incarnation(member),
                deadline: self.now.plus(CLIENT_HOP).plus(REQUEST_TIMEOUT),
                backoff: BACKOFF_MIN,
                waiting: Waiting::Nothing,
                last_error: None,
                resends,
            },
        );
        self.schedule(CLIENT_HOP, Event::CallArrives(id));
        self.schedule(CLIENT_HOP.plus(REQUEST_TIMEOUT), Event::CallDeadline(id));
    }

    /// The call's member takes it (again): proposes or reads.
    pub(super) fn submit(&mut self, id: u64) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let member = call.member;
        if self.incarnation(member) != call.incarnation || !self.is_up(member) {
            return; // the connection died with the member: the client times out
        }
        let kind = call.operation.kind.clone();
        let waiting = match kind {
            CallKind::Write(command) => {
                let (sender, rx) = oneshot::channel();
                let responder = Responder::Command(sender);
                self.member_input(
                    member,
                    Input::Request(Request::Propose {
                        data: command,
                        responder,
                    }),
                );
                Waiting::Proposal(rx)
            }
            CallKind::Read(consistency) => {
                let (tx, rx) = oneshot::channel();
                let read: ReadFn<_> = Box::new(move |r: Result<&_, Error>| {
                    let _ = tx.send(r.map(|_| ()));
                });
                self.member_input(member, Input::Request(Request::Read { consistency, read }));
                Waiting::Read(rx)
            }
        };
        if let Some(call) = self.calls.get_mut(&id) {
            call.waiting = waiting;
        }
    }

    /// Looks at every answer that came in during this step.
    pub(super) fn poll_calls(&mut self) {
        let ids: Vec<u64> = self.calls.keys().copied().collect();
        for id in ids {
            let call = self.calls.get_mut(&id).expect("listed above");
            match &mut call.waiting {
                Waiting::Proposal(rx) => match rx.try_recv() {
                    Ok(result) => {
                        call.waiting = Waiting::Nothing;
                        self.on_proposal(id, result);
                    }
                    Err(oneshot::error::TryRecvError::Empty) => {}
                    // The member crashed: the client's connection broke
                    // with the proposal perhaps appended.
                    Err(oneshot::error::TryRecvError::Closed) => self.abandon(id),
                },
                Waiting::Read(rx) => match rx.try_recv() {
                    Ok(result) => {
                        call.waiting = Waiting::Nothing;
                        self.on_read(id, result);
                    }
                    Err(oneshot::error::TryRecvError::Empty) => {}
                    Err(oneshot::error::TryRecvError::Closed) => self.abandon(id),
                },
                Waiting::Nothing | Waiting::Forwarded => {}
            }
        }
        let forwarded: Vec<u64> = self.forwarded.keys().copied().collect();
        for id in forwarded {
            let (leader, rx) = self.forwarded.get_mut(&id).expect("listed above");
            let leader = *leader;
            let reply = match rx.try_recv() {
                Ok(Ok(result)) => ForwardReply::Applied(result),
                Ok(Err(e)) if matches!(e, Error::NotLeader { .. }) || self.app.retryable(&e) => {
                    ForwardReply::Refused
                }
                Ok(Err(e)) => ForwardReply::Failed(e),
                Err(oneshot::error::TryRecvError::Empty) => continue,
                // The leader stopped with the command pending: its end of
                // the connection closes, and the follower's call breaks.
                Err(oneshot::error::TryRecvError::Closed) => ForwardReply::Broken,
            };
            self.forwarded.remove(&id);
            let Some(call) = self.calls.get(&id) else {
                continue;
            };
            let member = call.member;
            if self.network.is_cut(leader, member) || self.network.send().lost {
                continue; // the follower's deadline answers the client
            }
            let delay = Micros(self.rng.between(100, 1_000));
            self.schedule(delay, Event::ForwardReply { call: id, reply });
        }
    }

    fn on_proposal(&mut self, id: u64, result: Result<Response<A>, Error>) {
        match result {
            Ok(response) => self.write_done(id, response),
            Err(Error::NotLeader {
                leader: Some(leader),
            }) if Some(leader) != self.calls.get(&id).map(|c| c.member) => {
                self.forward(id, leader);
            }
            Err(e) if self.app.retryable(&e) || matches!(e, Error::NotLeader { .. }) => {
                self.retry(id, e);
            }
            Err(e) => self.call_failed(id, e),
        }
    }

    fn on_read(&mut self, id: u64, result: Result<(), Error>) {
        match result {
            Ok(()) => {
                let call = &self.calls[&id];
                let Some(Slot::Up { member, .. }) = self.slots.get(&call.member) else {
                    return;
                };
                let read = self
                    .app
                    .read_output(call.member, member.machine(), &call.operation.op);
                match read {
                    Ok(output) => self.answer(id, Some(output)),
                    Err(e) => self.checks.fail(e),
                }
            }
            Err(e) if self.app.retryable(&e) || matches!(e, Error::NotLeader { .. }) => {
                self.retry(id, e);
            }
            Err(e) => self.call_failed(id, e),
        }
    }

    /// A follower's KV layer forwards the command to `leader`.
    fn forward(&mut self, id: u64, leader: NodeId) {
        let call = self.calls.get_mut(&id).expect("the caller holds the call");
        call.waiting = Waiting::Forwarded;
        let member = call.member;
        if self.network.is_cut(member, leader) || !self.is_up(leader) || self.network.send().lost {
            // The connection fails (no route, or no process listening):
            // nothing was sent; retried.
            return self.retry(id, Error::NotLeader { leader: None });
        }
        let delay = Micros(self.rng.between(100, 1_000));
        self.schedule(
            delay,
            Event::Forward {
                call: id,
                to: leader,
            },
        );
    }

    pub(super) fn forward_arrives(&mut self, id: u64, to: NodeId) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let CallKind::Write(command) = call.operation.kind.clone() else {
            return;
        };
        if !self.is_up(to) {
            // The leader stopped while the command was on its way: the
            // connection breaks, and the follower cannot tell whether the
            // command got there.
            if !self.network.is_cut(to, call.member) {
                let delay = Micros(self.rng.between(100, 1_000));
                let reply = ForwardReply::Broken;
                self.schedule(delay, Event::ForwardReply { call: id, reply });
            }
            return;
        }
        let (sender, rx) = oneshot::channel();
        let responder = Responder::Command(sender);
        self.member_input(
            to,
            Input::Request(Request::Propose {
                data: command,
                responder,
            }),
        );
        self.forwarded.insert(id, (to, rx));
    }

    pub(super) fn forward_reply(&mut self, id: u64, reply: ForwardReply<Response<A>>) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if self.incarnation(call.member) != call.incarnation || !self.is_up(call.member) {
            return;
        }
        match reply {
            ForwardReply::Applied(response) => self.write_done(id, response),
            ForwardReply::Refused => self.retry(id, Error::NotLeader { leader: None }),
            ForwardReply::Failed(e) => self.call_failed(id, e),
            ForwardReply::Broken => self.abandon(id),
        }
    }

    /// Backs off and tries again, unless the deadline is too near.
    fn retry(&mut self, id: u64, error: Error) {
        let call = self.calls.get_mut(&id).expect("the caller holds the call");
        call.waiting = Waiting::Nothing;
        let wake = self.now.plus(call.backoff);
        call.last_error = Some(error.clone());
        if wake >= call.deadline {
            return self.call_failed(id, error);
        }
        call.backoff = Micros((call.backoff.0 * 2).min(BACKOFF_MAX.0));
        let backoff = call.backoff;
        self.schedule(backoff, Event::CallRetry(id));
    }

    fn write_done(&mut self, id: u64, response: Response<A>) {
        let output = self
            .app
            .write_output(&self.calls[&id].operation.op, response);
        match output {
            Ok(output) => self.answer(id, Some(output)),
            Err(e) => self.checks.fail(e),
        }
    }

    /// The KV layer gives up with `error`.
    fn call_failed(&mut self, id: u64, error: Error) {
        let call = &self.calls[&id];
        let is_read = matches!(call.operation.kind, CallKind::Read(_));
        if is_read || (certainly_not_written(&error) && call.resends == 0) {
            self.answer(id, None);
        } else {
            self.abandon(id);
        }
    }

    pub(super) fn deadline(&mut self, id: u64) {
        if self.calls.contains_key(&id) {
            let error = self.calls[&id].last_error.clone();
            // A deadline after a definite refusal is still definite only if
            // nothing is in flight; a forward or proposal in flight is not.
            match (error, &self.calls[&id].waiting) {
                (Some(e), Waiting::Nothing) => self.call_failed(id, e),
                _ => self.abandon(id),
            }
        }
    }

    /// The client gets an answer (`None`: certainly not performed); the
    /// call ends.
    fn answer(&mut self, id: u64, output: Option<A::Output>) {
        let Some(call) = self.calls.remove(&id) else {
            return;
        };
        let acknowledged_write =
            output.is_some() && matches!(call.operation.kind, CallKind::Write(_));
        if self.healing && acknowledged_write {
            self.served_after_heal = true;
        }
        self.app
            .answered(call.client, call.operation.tag, output, self.now);
        self.wake_client(call.client);
    }

    /// The client stops waiting without an answer: the outcome is unknown.
    /// A client that resends such writes sends it again, as a new call to
    /// a member of its choice (late answers to the old call are lost with
    /// its connection), a few times before it gives up.
    fn abandon(&mut self, id: u64) {
        let Some(call) = self.calls.remove(&id) else {
            return;
        };
        let resend = self.app.resends_unknown()
            && matches!(call.operation.kind, CallKind::Write(_))
            && call.resends < RESENDS_MAX
            && self.now.plus(Micros::ticks(40)) <= self.end_at;
        if !resend {
            return self.wake_client(call.client);
        }
        let mut up = self.up_members();
        if up.is_empty() {
            up = self.slots.keys().copied().collect();
        }
        let member = *self.rng.pick(&up);
        self.send_call(call.client, call.operation, member, call.resends + 1);
    }

    fn wake_client(&mut self, c: usize) {
        let think = Micros(self.rng.between(100, 3 * TICK.0));
        self.schedule(think, Event::ClientWake(c));
    }
}

/// Whether a write that ended with `error` certainly did not take effect.
/// Only refusals before anything was appended, and a commit of another
/// entry at the proposal's index, say so; everything else (a lost
/// leadership, a timeout, a stopped member) leaves the outcome unknown.
fn certainly_not_written(error: &Error) -> bool {
    matches!(
        error,
        Error::NotLeader { .. }
            | Error::LeaderNotReady
            | Error::Overloaded
            | Error::ProposalDropped { .. }
            | Error::TransferInProgress { .. }
    )
}
