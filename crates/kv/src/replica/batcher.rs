//! The follower's side of forwarding: writes bound for the same leader
//! travel together.
//!
//! Each leader has a queue. A command joins its leader's queue; if no batch
//! to that leader is in flight, a sender task starts and sends everything
//! waiting as one `ProposeBatch` call (`forward.rs` serves it); whatever
//! arrives while that call is in flight waits and goes in the next one. No
//! timer holds a batch back: a lone write leaves at once, and under load
//! the batch grows with the round trip, as the runtime's own proposals do.
//! A batch holds at most [`FORWARD_BATCH_COMMANDS_MAX`] commands and
//! [`FORWARD_BATCH_BYTES_MAX`] bytes (a larger command travels alone).
//!
//! Each command gets its own answer ([`Verdict`]), with the meaning a
//! single forwarded call had:
//! - nothing was sent (no connection to the leader, or the command's
//!   deadline passed while it waited): a definite failure, `NoLeader`
//!   (retried) or `Timeout`;
//! - the leader's outcome for this command: its result, `Refused` (not
//!   appended, retried), or the leader's error;
//! - the call broke, or outlived the batch's last deadline, after it may
//!   have reached the leader: every command in it has an unknown outcome
//!   (`LeaderFailed`, never retried), and the channel is dropped;
//! - the leader refused the whole call before proposing anything (its
//!   identity check, a batch over its limits: `InvalidArgument`, or an
//!   error in etcd's words): that error, for every command.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use keel::Node;
use tokio::sync::oneshot;
use tokio::time::{Instant, timeout_at};
use tonic::{Code, Status};

use super::forward::{FORWARD_BATCH_BYTES_MAX, FORWARD_BATCH_COMMANDS_MAX};
use super::machine::RaftMachine;
use super::peers::PeerChannels;
use crate::error::KvError;
use crate::proto::command::forward_client::ForwardClient;
use crate::proto::command::propose_outcome::Outcome;
use crate::proto::command::{ProposeBatchReply, ProposeBatchRequest};

/// How the leader's side answered one forwarded command.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// The leader applied it: the encoded `CommandResult`.
    Applied(Bytes),
    /// The receiver did not append it: it may be retried.
    Refused,
    /// It failed; [`KvError::LeaderFailed`] when whether it was applied is
    /// unknown.
    Failed(KvError),
}

/// Counts of a member's forwarded writes since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForwardStats {
    /// `ProposeBatch` calls sent to a leader.
    pub batches_sent: u64,
    /// Commands in those calls.
    pub commands_sent: u64,
}

/// A handle on a member's [`ForwardStats`], cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct ForwardCounters(Arc<Counts>);

#[derive(Debug, Default)]
struct Counts {
    batches_sent: AtomicU64,
    commands_sent: AtomicU64,
}

impl ForwardCounters {
    pub fn stats(&self) -> ForwardStats {
        ForwardStats {
            batches_sent: self.0.batches_sent.load(Ordering::Relaxed),
            commands_sent: self.0.commands_sent.load(Ordering::Relaxed),
        }
    }

    fn count_batch(&self, commands: usize) {
        self.0.batches_sent.fetch_add(1, Ordering::Relaxed);
        self.0
            .commands_sent
            .fetch_add(commands as u64, Ordering::Relaxed);
    }
}

/// Batches forwarded commands per leader; see the module's documentation.
#[derive(Clone)]
pub(crate) struct Forwarder {
    inner: Arc<Inner>,
}

struct Inner {
    node: Node<RaftMachine>,
    peers: PeerChannels,
    queues: Mutex<Queues>,
    counters: ForwardCounters,
}

impl Forwarder {
    pub(crate) fn new(node: Node<RaftMachine>) -> Forwarder {
        Forwarder {
            inner: Arc::new(Inner {
                node,
                peers: PeerChannels::default(),
                queues: Mutex::new(Queues::default()),
                counters: ForwardCounters::default(),
            }),
        }
    }

    pub(crate) fn counters(&self) -> ForwardCounters {
        self.inner.counters.clone()
    }

    /// Sends `command` to `leader` in the next batch and waits for its
    /// verdict, at most until `deadline`.
    pub(crate) async fn forward(&self, leader: u64, command: Bytes, deadline: Instant) -> Verdict {
        let (reply, mut answer) = oneshot::channel();
        let (id, start_sender) = self.inner.queues().push(
            leader,
            Waiting {
                id: 0,
                command,
                deadline,
                reply,
            },
        );
        if start_sender {
            tokio::spawn(self.inner.clone().send_batches(leader));
        }
        match timeout_at(deadline, &mut answer).await {
            Ok(Ok(verdict)) => verdict,
            // The sender ended without answering (the runtime is stopping);
            // it may have sent the command.
            Ok(Err(_)) => Verdict::Failed(KvError::LeaderFailed),
            Err(_) => {
                if self.inner.queues().withdraw(leader, id) {
                    // Still waiting, so never sent: a definite failure.
                    Verdict::Failed(KvError::Timeout)
                } else {
                    // Taken for a batch: answered meanwhile, or in flight.
                    answer
                        .try_recv()
                        .unwrap_or(Verdict::Failed(KvError::LeaderFailed))
                }
            }
        }
    }
}

impl Inner {
    fn queues(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().expect("forward queue lock poisoned")
    }

    /// Sends batches to `leader` until nothing waits for it.
    async fn send_batches(self: Arc<Self>, leader: u64) {
        loop {
            let batch = self.queues().take_batch(leader, Instant::now());
            if batch.is_empty() {
                return;
            }
            self.send(leader, batch).await;
        }
    }

    /// Sends one batch and answers each of its commands.
    async fn send(&self, leader: u64, batch: Vec<Waiting>) {
        let deadline = batch
            .iter()
            .map(|w| w.deadline)
            .max()
            .expect("a batch is never empty");
        let mut commands = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for w in batch {
            commands.push(w.command);
            replies.push(w.reply);
        }
        // A failure to connect sent nothing: `NoLeader`, retried.
        let channel = match timeout_at(deadline, self.peers.connected(&self.node, leader)).await {
            Ok(Ok(channel)) => channel,
            Ok(Err(_)) | Err(_) => {
                for reply in replies {
                    let _ = reply.send(Verdict::Failed(KvError::NoLeader));
                }
                return;
            }
        };
        self.counters.count_batch(commands.len());
        // A txn's ranges can make a result of any size the leader could
        // build; etcd's clients accept up to `math.MaxInt32`, so do we.
        let mut client = ForwardClient::new(channel).max_decoding_message_size(i32::MAX as usize);
        let call = client.propose_batch(ProposeBatchRequest { commands });
        let ended = match timeout_at(deadline, call).await {
            Ok(Ok(reply)) => CallEnd::Replied(reply.into_inner()),
            Ok(Err(status)) => CallEnd::Failed(status),
            Err(_) => CallEnd::TimedOut,
        };
        let (verdicts, broken) = verdicts(ended, replies.len());
        if broken {
            self.peers.forget(leader);
        }
        for (reply, verdict) in replies.into_iter().zip(verdicts) {
            let _ = reply.send(verdict);
        }
    }
}

/// A command waiting for the next batch to its leader.
struct Waiting {
    /// Tells it apart in its queue, so that it can be withdrawn.
    id: u64,
    command: Bytes,
    deadline: Instant,
    reply: oneshot::Sender<Verdict>,
}

/// Every leader's queue. Leaders are few: a queue is dropped when idle.
#[derive(Default)]
struct Queues {
    next_id: u64,
    by_leader: HashMap<u64, Queue>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Waiting>,
    /// A sender task is sending batches to this leader.
    sending: bool,
}

impl Queues {
    /// Queues `w` for `leader`. Returns its id, and whether the caller must
    /// start a sender task for `leader` (none runs).
    fn push(&mut self, leader: u64, mut w: Waiting) -> (u64, bool) {
        self.next_id += 1;
        w.id = self.next_id;
        let queue = self.by_leader.entry(leader).or_default();
        queue.waiting.push_back(w);
        let start = !queue.sending;
        queue.sending = true;
        (self.next_id, start)
    }

    /// Removes command `id` if it still waits (it was never sent).
    fn withdraw(&mut self, leader: u64, id: u64) -> bool {
        let Some(queue) = self.by_leader.get_mut(&leader) else {
            return false;
        };
        let before = queue.waiting.len();
        queue.waiting.retain(|w| w.id != id);
        queue.waiting.len() < before
    }

    /// The next batch for `leader`: every command waiting, oldest first, up
    /// to the batch limits. Commands whose caller left are dropped and
    /// those whose deadline passed fail with `Timeout`, unsent. Empty when
    /// nothing waits: the sender task then ends, and the next command
    /// starts another.
    fn take_batch(&mut self, leader: u64, now: Instant) -> Vec<Waiting> {
        let Some(queue) = self.by_leader.get_mut(&leader) else {
            return Vec::new();
        };
        let mut batch: Vec<Waiting> = Vec::new();
        let mut bytes = 0;
        while let Some(next) = queue.waiting.front() {
            if next.reply.is_closed() {
                queue.waiting.pop_front();
                continue;
            }
            if next.deadline <= now {
                let late = queue.waiting.pop_front().expect("front exists");
                let _ = late.reply.send(Verdict::Failed(KvError::Timeout));
                continue;
            }
            let full = batch.len() == FORWARD_BATCH_COMMANDS_MAX
                || (!batch.is_empty() && bytes + next.command.len() > FORWARD_BATCH_BYTES_MAX);
            if full {
                break;
            }
            bytes += next.command.len();
            batch.push(queue.waiting.pop_front().expect("front exists"));
        }
        if batch.is_empty() {
            debug_assert!(queue.waiting.is_empty());
            self.by_leader.remove(&leader);
        }
        batch
    }
}

/// How a `ProposeBatch` call ended.
enum CallEnd {
    Replied(ProposeBatchReply),
    Failed(Status),
    /// The batch's last deadline passed first.
    TimedOut,
}

/// Each of the `sent` commands' verdict from how their call ended, and
/// whether the channel broke (and should be dropped).
fn verdicts(ended: CallEnd, sent: usize) -> (Vec<Verdict>, bool) {
    let unknown = || (0..sent).map(|_| Verdict::Failed(KvError::LeaderFailed));
    match ended {
        CallEnd::Replied(reply) if reply.outcomes.len() == sent => {
            let verdicts = reply
                .outcomes
                .into_iter()
                .map(|o| match o.outcome {
                    Some(Outcome::Result(result)) => Verdict::Applied(result),
                    Some(Outcome::Refused(_)) => Verdict::Refused,
                    Some(Outcome::Failed(f)) => {
                        Verdict::Failed(leader_error(Status::new(Code::from(f.code), f.message)))
                    }
                    // A reply this build cannot read: the command may have
                    // been applied.
                    None => Verdict::Failed(KvError::LeaderFailed),
                })
                .collect();
            (verdicts, false)
        }
        // Not one outcome per command: which is whose is unknown.
        CallEnd::Replied(reply) => {
            tracing::warn!(
                sent,
                answered = reply.outcomes.len(),
                "a forwarded batch's reply does not match it"
            );
            (unknown().collect(), true)
        }
        CallEnd::Failed(status) if is_leader_verdict(&status) => (
            (0..sent)
                .map(|_| Verdict::Failed(KvError::Remote(status.clone())))
                .collect(),
            false,
        ),
        // The call broke or took too long after it may have reached the
        // leader: whether each write happened is unknown.
        CallEnd::Failed(_) | CallEnd::TimedOut => (unknown().collect(), true),
    }
}

/// Whether `status` is the leader's own answer (a refusal before anything
/// was proposed, or an error in etcd's words), to pass on as it is, rather
/// than a failure of the call.
fn is_leader_verdict(status: &Status) -> bool {
    status.message().starts_with("etcdserver:") || status.code() == Code::InvalidArgument
}

/// The error a client gets for the leader's failure of one command.
fn leader_error(status: Status) -> KvError {
    if is_leader_verdict(&status) {
        KvError::Remote(status)
    } else {
        KvError::LeaderFailed
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::proto::command::{Failed, ProposeOutcome, Refused};

    fn waiting(len: usize, deadline: Instant) -> (Waiting, oneshot::Receiver<Verdict>) {
        let (reply, answer) = oneshot::channel();
        let w = Waiting {
            id: 0,
            command: Bytes::from(vec![b'x'; len]),
            deadline,
            reply,
        };
        (w, answer)
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn the_first_command_starts_a_sender_and_later_ones_join_its_next_batch() {
        let mut queues = Queues::default();
        let (w, _a1) = waiting(10, later());
        assert!(queues.push(7, w).1, "nothing was sending to 7");
        let first = queues.take_batch(7, Instant::now());
        assert_eq!(first.len(), 1);
        // While the first batch is in flight, three more arrive.
        let mut answers = Vec::new();
        for _ in 0..3 {
            let (w, a) = waiting(10, later());
            answers.push(a);
            assert!(!queues.push(7, w).1, "the sender of 7 is still running");
        }
        // Another leader's queue is independent.
        let (w, _a) = waiting(10, later());
        assert!(queues.push(8, w).1);
        assert_eq!(queues.take_batch(7, Instant::now()).len(), 3);
        assert!(queues.take_batch(7, Instant::now()).is_empty());
        // Idle now: the next command starts a sender again.
        let (w, _a) = waiting(10, later());
        assert!(queues.push(7, w).1);
    }

    #[test]
    fn a_batch_stops_at_its_command_and_byte_limits_and_a_large_command_travels_alone() {
        let mut queues = Queues::default();
        let mut answers = Vec::new();
        for _ in 0..FORWARD_BATCH_COMMANDS_MAX + 1 {
            let (w, a) = waiting(1, later());
            answers.push(a);
            queues.push(1, w);
        }
        let now = Instant::now();
        assert_eq!(queues.take_batch(1, now).len(), FORWARD_BATCH_COMMANDS_MAX);
        assert_eq!(queues.take_batch(1, now).len(), 1);

        for len in [
            10,
            FORWARD_BATCH_BYTES_MAX + 1,
            10,
            FORWARD_BATCH_BYTES_MAX - 10,
            1,
        ] {
            let (w, a) = waiting(len, later());
            answers.push(a);
            queues.push(1, w);
        }
        let sizes = |batch: Vec<Waiting>| batch.iter().map(|w| w.command.len()).collect::<Vec<_>>();
        assert_eq!(sizes(queues.take_batch(1, now)), [10]);
        assert_eq!(
            sizes(queues.take_batch(1, now)),
            [FORWARD_BATCH_BYTES_MAX + 1]
        );
        assert_eq!(
            sizes(queues.take_batch(1, now)),
            [10, FORWARD_BATCH_BYTES_MAX - 10]
        );
        assert_eq!(sizes(queues.take_batch(1, now)), [1]);
    }

    #[test]
    fn a_command_past_its_deadline_or_abandoned_is_never_sent() {
        let mut queues = Queues::default();
        let now = Instant::now();
        let (late, mut late_answer) = waiting(1, now);
        let (gone, gone_answer) = waiting(1, later());
        let (kept, _kept_answer) = waiting(1, later());
        queues.push(1, late);
        queues.push(1, gone);
        let (kept_id, _) = queues.push(1, kept);
        drop(gone_answer);
        let batch = queues.take_batch(1, now);
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].id, kept_id);
        assert!(matches!(
            late_answer.try_recv(),
            Ok(Verdict::Failed(KvError::Timeout))
        ));
    }

    #[test]
    fn only_a_command_still_waiting_can_be_withdrawn() {
        let mut queues = Queues::default();
        let (w1, _a1) = waiting(1, later());
        let (w2, _a2) = waiting(1, later());
        let (id1, _) = queues.push(1, w1);
        let _sent = queues.take_batch(1, Instant::now());
        let (id2, _) = queues.push(1, w2);
        assert!(!queues.withdraw(1, id1), "in flight: not withdrawn");
        assert!(queues.withdraw(1, id2));
        assert!(!queues.withdraw(1, id2));
        assert!(queues.take_batch(1, Instant::now()).is_empty());
    }

    fn outcome(o: Outcome) -> ProposeOutcome {
        ProposeOutcome { outcome: Some(o) }
    }

    #[test]
    fn each_command_gets_its_own_outcome_from_a_reply() {
        let reply = ProposeBatchReply {
            outcomes: vec![
                outcome(Outcome::Result(Bytes::from_static(b"r"))),
                outcome(Outcome::Refused(Refused { leader_hint: 2 })),
                outcome(Outcome::Failed(Failed {
                    code: Code::InvalidArgument as i32,
                    message: "etcdserver: key is not provided".into(),
                })),
                outcome(Outcome::Failed(Failed {
                    code: Code::Internal as i32,
                    message: "something else".into(),
                })),
                ProposeOutcome { outcome: None },
            ],
        };
        let (v, broken) = verdicts(CallEnd::Replied(reply), 5);
        assert!(!broken);
        assert!(matches!(&v[0], Verdict::Applied(r) if r.as_ref() == b"r"));
        assert!(matches!(v[1], Verdict::Refused));
        assert!(matches!(
            &v[2],
            Verdict::Failed(KvError::Remote(s))
                if s.code() == Code::InvalidArgument && s.message() == "etcdserver: key is not provided"
        ));
        assert!(matches!(v[3], Verdict::Failed(KvError::LeaderFailed)));
        assert!(matches!(v[4], Verdict::Failed(KvError::LeaderFailed)));
    }

    #[test]
    fn a_broken_or_late_call_leaves_every_command_unknown() {
        for ended in [
            CallEnd::TimedOut,
            CallEnd::Failed(Status::unavailable("connection reset")),
            CallEnd::Failed(Status::failed_precondition("cluster id mismatch")),
            CallEnd::Replied(ProposeBatchReply {
                outcomes: vec![outcome(Outcome::Result(Bytes::new()))],
            }),
        ] {
            let (v, broken) = verdicts(ended, 3);
            assert!(broken);
            assert_eq!(v.len(), 3);
            assert!(
                v.iter()
                    .all(|v| matches!(v, Verdict::Failed(KvError::LeaderFailed)))
            );
        }
    }

    #[test]
    fn a_call_the_leader_refused_whole_is_that_refusal_for_every_command() {
        let status = Status::invalid_argument("keel-peer-header: missing header");
        let (v, broken) = verdicts(CallEnd::Failed(status), 2);
        assert!(!broken);
        assert!(v.iter().all(|v| matches!(
            v,
            Verdict::Failed(KvError::Remote(s)) if s.code() == Code::InvalidArgument
        )));
    }
}
