//! Where the driver hands committed entries: the apply thread's queue, or,
//! for a small batch of quick commands while that thread has nothing to
//! do, the driver's own hands.
//!
//! On a lightly loaded node the apply thread sleeps between writes, and
//! waking it costs tens of microseconds on a virtual machine — then the
//! answer it sends wakes the client's task in turn. Applying a batch of a
//! few quick commands on the driver saves both hops on the path from
//! commit to answer. The machine decides (`StateMachine::try_apply_quickly`):
//! it applies only if it need not wait for anything, and otherwise hands
//! the batch back to be queued. Order is kept by counting: an op counts as
//! unfinished from when the driver queues it until the thread is done with
//! it, and the driver applies on its own only while nothing is unfinished,
//! so everything queued before is already applied. Under load the thread
//! is busy, batches are large, and every batch takes the queue as before.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use keel_raft::{Entry, LogIndex};
use tokio::sync::mpsc;

use crate::apply::{ApplyOp, ApplyWorker};
use crate::error::{Error, StopReason};
use crate::proposals::Responder;
use crate::state_machine::StateMachine;

/// The apply worker, shared by the apply thread and the driver, and the
/// count of queued ops the thread has not finished.
pub(crate) struct SharedWorker<S> {
    worker: Mutex<ApplyWorker<S>>,
    unfinished: AtomicUsize,
}

impl<S: StateMachine> SharedWorker<S> {
    pub(crate) fn new(worker: ApplyWorker<S>) -> Arc<SharedWorker<S>> {
        Arc::new(SharedWorker {
            worker: Mutex::new(worker),
            unfinished: AtomicUsize::new(0),
        })
    }

    /// The worker. A thread that panicked while holding it leaves it as it
    /// was; the node stops on the thread's end either way.
    pub(crate) fn lock(&self) -> MutexGuard<'_, ApplyWorker<S>> {
        self.worker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The apply thread finished `ops` queued ops.
    pub(crate) fn finished(&self, ops: usize) {
        self.unfinished.fetch_sub(ops, Ordering::Release);
    }
}

/// Why an op could not be handed on.
pub(crate) enum Refused {
    /// The apply thread is gone.
    ThreadEnded,
    /// The driver applied the batch itself, and the machine failed.
    Failed(StopReason),
}

/// The driver's end of applying.
pub(crate) struct ApplyQueue<S: StateMachine> {
    ops: mpsc::Sender<ApplyOp<S>>,
    shared: Arc<SharedWorker<S>>,
}

impl<S: StateMachine> ApplyQueue<S> {
    pub(crate) fn new(
        ops: mpsc::Sender<ApplyOp<S>>,
        shared: Arc<SharedWorker<S>>,
    ) -> ApplyQueue<S> {
        ApplyQueue { ops, shared }
    }

    /// Applies `op` here if it is a small batch, the thread has nothing
    /// unfinished and the machine can apply it at once; queues it for the
    /// thread otherwise.
    pub(crate) async fn push(&self, op: ApplyOp<S>) -> Result<(), Refused> {
        let op = match op {
            ApplyOp::Entries { entries, waiters }
                if self.shared.unfinished.load(Ordering::Acquire) == 0 =>
            {
                let mut worker = self.shared.lock();
                match worker.try_apply_quickly(entries, waiters) {
                    Ok(None) => return Ok(()),
                    Ok(Some(op)) => op,
                    Err(e) => return Err(Refused::Failed(worker.fail(e))),
                }
            }
            op => op,
        };
        self.shared.unfinished.fetch_add(1, Ordering::AcqRel);
        if self.ops.send(op).await.is_err() {
            return Err(Refused::ThreadEnded);
        }
        Ok(())
    }
}

/// The apply thread: runs until the driver drops its sender (every queued
/// op is done first) or the state machine fails. Each op runs holding the
/// worker, and counts as finished in `shared` only once it is done, so
/// that the driver applies on its own only behind a finished queue.
/// Snapshots are written to the store on another thread while applying
/// goes on.
pub(crate) fn run<S: StateMachine>(
    shared: Arc<SharedWorker<S>>,
    mut ops: mpsc::Receiver<ApplyOp<S>>,
) {
    // An op taken from the queue behind merged entries, to run next.
    let mut next = None;
    while let Some(op) = next.take().or_else(|| ops.blocking_recv()) {
        let mut finished = 1;
        let outcome = {
            let mut worker = shared.lock();
            match op {
                ApplyOp::Entries {
                    mut entries,
                    mut waiters,
                } => {
                    let merged;
                    (next, merged) = take_queued_entries(&mut ops, &mut entries, &mut waiters);
                    finished += merged;
                    worker.apply(entries, waiters)
                }
                op => worker.run(op),
            }
            .map_err(|e| worker.fail(e))
        };
        shared.finished(finished);
        if let Err(reason) = outcome {
            let error = Error::Stopped(reason);
            if let Some(op) = next.take() {
                op.fail(&error);
            }
            fail_queued(&mut ops, &error);
            break;
        }
    }
    shared.lock().end();
}

/// At most this many entries are applied as one batch by merging queued
/// ops ([`take_queued_entries`]): a bound on how long one state machine
/// call, and the answers it holds back, can take.
const MERGED_ENTRIES_MAX: usize = 4096;

/// Appends to `entries` and `waiters` those of every `Entries` op queued
/// right behind them, so that a thread that fell behind catches up with
/// one state machine call (for Keel KV, one storage transaction, whose
/// fixed cost dwarfs a small write's) instead of one per op. Order is
/// kept: ops are consecutive in log order, and so are their waiters.
/// Returns the first queued op of another kind, which must run next, and
/// how many ops were merged.
fn take_queued_entries<S: StateMachine>(
    ops: &mut mpsc::Receiver<ApplyOp<S>>,
    entries: &mut Vec<Entry>,
    waiters: &mut Vec<(LogIndex, Responder<S::Response>)>,
) -> (Option<ApplyOp<S>>, usize) {
    let mut merged = 0;
    while entries.len() < MERGED_ENTRIES_MAX {
        match ops.try_recv() {
            Ok(ApplyOp::Entries {
                entries: more,
                waiters: more_waiters,
            }) => {
                entries.extend(more);
                waiters.extend(more_waiters);
                merged += 1;
            }
            Ok(other) => return (Some(other), merged),
            Err(_) => break,
        }
    }
    (None, merged)
}

/// Fails every op still queued once the machine cannot run them.
fn fail_queued<S: StateMachine>(ops: &mut mpsc::Receiver<ApplyOp<S>>, error: &Error) {
    ops.close();
    while let Ok(op) = ops.try_recv() {
        op.fail(error);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use keel_raft::{Payload, Term};
    use tokio::sync::oneshot;

    use super::*;

    fn entries(indexes: std::ops::RangeInclusive<u64>) -> ApplyOp<()> {
        let entries = indexes
            .map(|i| Entry {
                term: Term(1),
                index: LogIndex(i),
                payload: Payload::Command(Bytes::from(vec![i as u8])),
            })
            .collect::<Vec<_>>();
        let (sender, _) = oneshot::channel();
        let waiters = vec![(entries[0].index, Responder::Command(sender))];
        ApplyOp::Entries { entries, waiters }
    }

    /// The entries and waiters of [`entries`]' op.
    fn batch(
        indexes: std::ops::RangeInclusive<u64>,
    ) -> (Vec<Entry>, Vec<(LogIndex, Responder<()>)>) {
        let ApplyOp::Entries { entries, waiters } = entries(indexes) else {
            unreachable!("entries() makes an Entries op")
        };
        (entries, waiters)
    }

    fn indexes(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.index.0).collect()
    }

    #[test]
    fn queued_entries_merge_in_order_up_to_an_op_of_another_kind() {
        let (tx, mut rx) = mpsc::channel(8);
        for op in [
            entries(3..=4),
            entries(5..=6),
            ApplyOp::Read(Box::new(|_| ())),
            entries(7..=7),
        ] {
            tx.try_send(op).ok().unwrap();
        }
        let (mut entries, mut waiters) = batch(1..=2);
        let (next, merged) = take_queued_entries(&mut rx, &mut entries, &mut waiters);
        assert_eq!(merged, 2);
        assert_eq!(indexes(&entries), [1, 2, 3, 4, 5, 6]);
        let waiting: Vec<u64> = waiters.iter().map(|(i, _)| i.0).collect();
        assert_eq!(waiting, [1, 3, 5]);
        assert!(matches!(next, Some(ApplyOp::Read(_))));
        let Ok(ApplyOp::Entries { entries: left, .. }) = rx.try_recv() else {
            panic!("the entries behind the read stay queued, to run after it");
        };
        assert_eq!(indexes(&left), [7]);
    }

    #[test]
    fn an_empty_queue_leaves_the_batch_as_it_was() {
        let (_tx, mut rx) = mpsc::channel::<ApplyOp<()>>(1);
        let (mut entries, mut waiters) = batch(1..=2);
        let (next, merged) = take_queued_entries(&mut rx, &mut entries, &mut waiters);
        assert!(next.is_none());
        assert_eq!(merged, 0);
        assert_eq!(indexes(&entries), [1, 2]);
    }

    /// Records each command's first byte and the thread that applied it;
    /// commands from 100 up are slow, and 200 waits for `release`.
    struct Recorder {
        applied: Arc<Mutex<Vec<(u8, String)>>>,
        release: std::sync::mpsc::Receiver<()>,
    }

    impl StateMachine for Recorder {
        type Response = u8;

        fn apply(
            &mut self,
            commands: &[crate::state_machine::Command],
            _: LogIndex,
        ) -> Result<Vec<u8>, crate::error::StateMachineError> {
            let thread = std::thread::current().name().unwrap_or("").to_owned();
            for c in commands {
                if c.data[0] == 200 {
                    self.release.recv().unwrap();
                }
                self.applied
                    .lock()
                    .unwrap()
                    .push((c.data[0], thread.clone()));
            }
            Ok(commands.iter().map(|c| c.data[0]).collect())
        }

        fn applied_index(&self) -> LogIndex {
            LogIndex(0)
        }

        fn snapshot(
            &mut self,
        ) -> Result<Box<dyn std::io::Read + Send>, crate::error::StateMachineError> {
            Ok(Box::new(std::io::empty()))
        }

        fn restore(
            &mut self,
            _: LogIndex,
            _: &mut dyn std::io::Read,
        ) -> Result<(), crate::error::StateMachineError> {
            Ok(())
        }

        fn try_apply_quickly(
            &mut self,
            commands: &[crate::state_machine::Command],
            applied_through: LogIndex,
        ) -> Option<Result<Vec<u8>, crate::error::StateMachineError>> {
            commands
                .iter()
                .all(|c| c.data[0] < 100)
                .then(|| self.apply(commands, applied_through))
        }
    }

    struct Harness {
        queue: ApplyQueue<Recorder>,
        applied: Arc<Mutex<Vec<(u8, String)>>>,
        release: std::sync::mpsc::Sender<()>,
        thread: std::thread::JoinHandle<()>,
    }

    fn harness() -> Harness {
        let applied = Arc::new(Mutex::new(Vec::new()));
        let (release, released) = std::sync::mpsc::channel();
        let machine = Recorder {
            applied: applied.clone(),
            release: released,
        };
        let snapshot = keel_raft::SnapshotMeta {
            index: LogIndex(0),
            term: Term(0),
            membership: Default::default(),
        };
        let applier = crate::apply::Applier::new(machine, LogIndex(0), &snapshot, 1_000);
        let (events, _) = mpsc::unbounded_channel();
        let worker = SharedWorker::new(ApplyWorker::new(
            applier,
            events,
            Arc::new(keel_storage::MemSnapshotStore::new()),
            1,
            Arc::new(crate::applied::AppliedIndex::new(LogIndex(0))),
        ));
        let (ops, receiver) = mpsc::channel(8);
        let thread_worker = worker.clone();
        let thread = std::thread::Builder::new()
            .name("apply".into())
            .spawn(move || run(thread_worker, receiver))
            .unwrap();
        Harness {
            queue: ApplyQueue::new(ops, worker),
            applied,
            release,
            thread,
        }
    }

    /// One entry of `command`, at `index`, and the receiver of its answer.
    fn one(index: u64, command: u8) -> (ApplyOp<Recorder>, oneshot::Receiver<Result<u8, Error>>) {
        let (sender, answer) = oneshot::channel();
        let op = ApplyOp::Entries {
            entries: vec![Entry {
                term: Term(1),
                index: LogIndex(index),
                payload: Payload::Command(Bytes::from(vec![command])),
            }],
            waiters: vec![(LogIndex(index), Responder::Command(sender))],
        };
        (op, answer)
    }

    #[tokio::test]
    async fn quick_commands_apply_on_the_caller_and_slow_ones_on_the_thread() {
        let h = harness();
        let (op, answer) = one(1, 7);
        h.queue.push(op).await.ok().unwrap();
        // Applied and answered before `push` returned.
        assert_eq!(answer.await.unwrap().unwrap(), 7);
        let (op, answer) = one(2, 150);
        h.queue.push(op).await.ok().unwrap();
        assert_eq!(answer.await.unwrap().unwrap(), 150);
        let caller = std::thread::current().name().unwrap_or("").to_owned();
        assert_eq!(
            *h.applied.lock().unwrap(),
            [(7, caller), (150, "apply".to_owned())]
        );
        drop(h.queue);
        h.thread.join().unwrap();
    }

    #[tokio::test]
    async fn a_quick_batch_behind_unfinished_work_waits_its_turn_on_the_thread() {
        let h = harness();
        let (slow, slow_answer) = one(1, 200);
        h.queue.push(slow).await.ok().unwrap();
        let (quick, quick_answer) = one(2, 7);
        h.queue.push(quick).await.ok().unwrap();
        assert!(
            h.applied.lock().unwrap().is_empty(),
            "the quick batch must not overtake the one still applying"
        );
        h.release.send(()).unwrap();
        assert_eq!(slow_answer.await.unwrap().unwrap(), 200);
        assert_eq!(quick_answer.await.unwrap().unwrap(), 7);
        assert_eq!(
            *h.applied.lock().unwrap(),
            [(200, "apply".to_owned()), (7, "apply".to_owned())]
        );
        drop(h.queue);
        h.thread.join().unwrap();
    }
}
