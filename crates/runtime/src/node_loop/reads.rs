//! The node loop's linearizable reads: asking the core for a read index
//! (§6.4), and answering each waiter when the core releases its read.

use keel_raft::{LogIndex, ReadId, ReadMode, ReadOutcome};
use tokio::sync::oneshot;

use super::{NodeLoop, ReadIndexWait};
use crate::apply::{ApplyOp, ReadFn};
use crate::clock::Moment;
use crate::consistency::ReadConsistency;
use crate::error::Error;
use crate::state_machine::StateMachine;

/// Where the answer to a read index goes.
pub type IndexReply = oneshot::Sender<Result<LogIndex, Error>>;

/// Who waits for a read the core is confirming.
pub(super) enum ReadWaiter<S: StateMachine> {
    /// A closure to run on the state machine once it has applied the read
    /// index.
    Run(ReadFn<S>),
    /// A caller that wants the read index itself.
    Index(IndexReply),
}

impl<S: StateMachine> ReadWaiter<S> {
    pub(super) fn fail(self, error: Error) {
        match self {
            ReadWaiter::Run(read) => read(Err(error)),
            ReadWaiter::Index(reply) => {
                let _ = reply.send(Err(error));
            }
        }
    }
}

/// What the core is asked for.
enum Ask {
    /// Release the read once the state machine has applied its index.
    Served(ReadMode),
    /// Release it as soon as its index is confirmed.
    ConfirmedIndex,
}

impl<S: StateMachine> NodeLoop<S> {
    pub(super) fn read(&mut self, now: Moment, consistency: ReadConsistency, read: ReadFn<S>) {
        let mode = match consistency {
            ReadConsistency::Stale => return self.apply(ApplyOp::Read(read)),
            ReadConsistency::Linearizable => ReadMode::ReadIndex,
            ReadConsistency::Lease => ReadMode::Lease,
        };
        self.ask_core(now, Ask::Served(mode), ReadWaiter::Run(read));
    }

    pub(super) fn read_index(&mut self, now: Moment, wait: ReadIndexWait, reply: IndexReply) {
        let ask = match wait {
            ReadIndexWait::Confirmed => Ask::ConfirmedIndex,
            // The core counts an index applied only once the apply thread
            // reported it (`Input::Applied`), so its release is the answer.
            ReadIndexWait::Applied => Ask::Served(ReadMode::ReadIndex),
        };
        self.ask_core(now, ask, ReadWaiter::Index(reply));
    }

    fn ask_core(&mut self, now: Moment, ask: Ask, waiter: ReadWaiter<S>) {
        if self.reads.len() >= self.config.pending_proposals_max {
            waiter.fail(Error::Overloaded);
            return;
        }
        let id = ReadId(self.next_read_id);
        self.next_read_id += 1;
        self.reads.insert(id, (now, waiter));
        match ask {
            Ask::Served(mode) => {
                if mode == ReadMode::Lease && self.ticks_follow_time() {
                    // The lease is judged in ticks: bring them up to now.
                    self.tick_core(now);
                }
                self.raft.read(id, mode);
            }
            Ask::ConfirmedIndex => self.raft.confirm_read_index(id),
        }
    }

    pub(super) fn release_read(&mut self, outcome: ReadOutcome) {
        let Some((_, waiter)) = self.reads.remove(&outcome.id) else {
            return; // timed out meanwhile
        };
        match (outcome.result, waiter) {
            // Apply ops run in order, so the read runs after every entry
            // queued before it, which covers everything it must observe.
            (Ok(_), ReadWaiter::Run(read)) => self.apply(ApplyOp::Read(read)),
            (Ok(index), ReadWaiter::Index(reply)) => {
                let _ = reply.send(Ok(index));
            }
            (Err(e), waiter) => waiter.fail(e.into()),
        }
    }

    /// Fails the reads asked longer than the request timeout ago.
    pub(super) fn expire_reads(&mut self, now: Moment) {
        while let Some(entry) = self.reads.first_entry() {
            if now.saturating_since(entry.get().0) < self.config.request_timeout {
                break;
            }
            let (_, waiter) = entry.remove();
            waiter.fail(Error::Timeout);
        }
    }
}
