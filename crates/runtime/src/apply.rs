//! Applying committed entries: [`Applier`] owns the state machine, applies
//! committed entries in order and in batches, answers their proposers,
//! serves reads, and says when a snapshot is due. [`run`] is the apply
//! thread of a running node; the simulator calls the same [`Applier`]
//! directly.

use std::io::Read;
use std::sync::Arc;

use keel_raft::{Entry, LogIndex, Membership, Payload, SnapshotMeta, Term};
use keel_storage::SnapshotStore;
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use crate::applied::AppliedIndex;
use crate::error::{Error, SnapshotError, StateMachineError, StopReason};
use crate::event::Event;
use crate::proposals::Responder;
use crate::snapshot::{self, SnapshotBytes};
use crate::state_machine::{Command, StateMachine};

/// A read to run against the state machine, or to fail.
pub type ReadFn<S> = Box<dyn FnOnce(Result<&S, Error>) + Send>;

/// Where the index of a snapshot asked for goes once it is stored.
pub type SnapshotReply = oneshot::Sender<Result<LogIndex, SnapshotError>>;

/// What the apply thread does next, in the order the node loop decided.
pub enum ApplyOp<S: StateMachine> {
    /// Committed entries, in order, with the proposers waiting for some.
    Entries {
        /// The entries, consecutive and in log order.
        entries: Vec<Entry>,
        /// The proposers of some of them, by the index of their entry.
        waiters: Vec<(LogIndex, Responder<S::Response>)>,
    },
    /// A snapshot from the leader is durable: replace the state with it.
    Restore(SnapshotMeta),
    /// Every write the read must observe is applied: run it now.
    Read(ReadFn<S>),
    /// Snapshot everything applied so far, now, whatever the policy says
    /// ([`crate::Node::trigger_snapshot`]).
    Snapshot(SnapshotReply),
}

impl<S: StateMachine> ApplyOp<S> {
    /// Answers whoever waits on this op with `error`: it will not run.
    pub fn fail(self, error: &Error) {
        match self {
            ApplyOp::Entries { waiters, .. } => {
                for (_, responder) in waiters {
                    responder.fail(error.clone());
                }
            }
            ApplyOp::Read(f) => f(Err(error.clone())),
            ApplyOp::Snapshot(reply) => {
                let _ = reply.send(Err(SnapshotError::Node(error.clone())));
            }
            ApplyOp::Restore(_) => {}
        }
    }
}

/// A snapshot of the state machine, ready to be written to the store.
pub struct SnapshotTaken {
    /// The last entry it covers and the configuration as of it.
    pub meta: SnapshotMeta,
    /// The state machine's serialised state, read on another thread.
    pub data: Box<dyn Read + Send>,
}

/// The state machine, where it stands, and when to snapshot it.
pub struct Applier<S> {
    sm: S,
    /// Entries through this index reached the machine before this process
    /// started (a persistent machine): they are not applied again.
    skip_through: LogIndex,
    /// The last entry applied (or covered by the snapshot restored).
    last_index: LogIndex,
    last_term: Term,
    /// The configuration as of `last_index`, for snapshot metadata.
    membership: Membership,
    last_snapshot_index: LogIndex,
    /// Snapshot once this many entries were applied since the last one.
    snapshot_entries: u64,
}

impl<S: StateMachine> Applier<S> {
    /// A machine that holds everything through `applied_through`, resuming
    /// after the log's snapshot `snapshot`.
    pub fn new(
        sm: S,
        applied_through: LogIndex,
        snapshot: &SnapshotMeta,
        snapshot_entries: u64,
    ) -> Applier<S> {
        Applier {
            sm,
            skip_through: applied_through,
            last_index: snapshot.index,
            last_term: snapshot.term,
            membership: snapshot.membership.clone(),
            last_snapshot_index: snapshot.index,
            snapshot_entries,
        }
    }

    /// The machine, for reads.
    pub fn state_machine(&self) -> &S {
        &self.sm
    }

    /// Applies committed entries in order and answers their waiters.
    /// Returns the last index applied, `None` for no entries.
    pub fn apply(
        &mut self,
        entries: Vec<Entry>,
        waiters: Vec<(LogIndex, Responder<S::Response>)>,
    ) -> Result<Option<LogIndex>, StateMachineError> {
        let Some(last) = entries.last() else {
            return Ok(None);
        };
        let (last_index, last_term) = (last.index, last.term);
        let mut commands = Vec::new();
        for entry in entries {
            match entry.payload {
                Payload::Command(data) if entry.index > self.skip_through => {
                    commands.push(Command {
                        index: entry.index,
                        term: entry.term,
                        data,
                    });
                }
                Payload::Membership(m) => self.membership = m,
                Payload::Command(_) | Payload::Blank => {}
            }
        }
        let responses = if commands.is_empty() {
            Vec::new()
        } else {
            self.sm.apply(&commands, last_index)?
        };
        if responses.len() != commands.len() {
            return Err(format!(
                "StateMachine::apply returned {} responses for {} commands",
                responses.len(),
                commands.len()
            )
            .into());
        }
        let mut responses = commands.iter().map(|c| c.index).zip(responses).peekable();
        for (index, responder) in waiters {
            // Waiters and commands are both in index order; a waiter with no
            // command is a configuration change.
            while responses.next_if(|(i, _)| *i < index).is_some() {}
            let response = responses.next_if(|(i, _)| *i == index).map(|(_, r)| r);
            match (responder, response) {
                (Responder::Command(sender), Some(response)) => {
                    let _ = sender.send(Ok(response));
                }
                (Responder::Change(sender), None) => {
                    let _ = sender.send(Ok(()));
                }
                // The entry this proposal won is not what it proposed: the
                // tracker matched index and term, so this cannot be; say
                // so rather than answer something else.
                (responder, _) => responder.fail(Error::OutcomeUnknown { index }),
            }
        }
        self.last_index = last_index;
        self.last_term = last_term;
        Ok(Some(last_index))
    }

    /// Runs a read whose every write is applied.
    pub fn read(&self, f: ReadFn<S>) {
        f(Ok(&self.sm));
    }

    /// Whether `snapshot_entries` entries were applied since the last
    /// snapshot (and the machine holds what it reports).
    pub fn snapshot_due(&self) -> bool {
        self.last_index.0.saturating_sub(self.last_snapshot_index.0) >= self.snapshot_entries
            && self.last_index >= self.skip_through
    }

    /// A point-in-time snapshot of the machine as of the last entry applied.
    pub fn snapshot(&mut self) -> Result<SnapshotTaken, StateMachineError> {
        let meta = SnapshotMeta {
            index: self.last_index,
            term: self.last_term,
            membership: self.membership.clone(),
        };
        let data = self.sm.snapshot()?;
        self.last_snapshot_index = self.last_index;
        Ok(SnapshotTaken { meta, data })
    }

    /// Replaces the state with a leader's snapshot, durable in the log.
    pub fn restore(
        &mut self,
        meta: SnapshotMeta,
        data: &mut dyn Read,
    ) -> Result<(), StateMachineError> {
        self.sm.restore(meta.index, data)?;
        info!(index = %meta.index, "state machine restored from the leader's snapshot");
        self.skip_through = meta.index;
        self.last_index = meta.index;
        self.last_term = meta.term;
        self.last_snapshot_index = meta.index;
        self.membership = meta.membership;
        Ok(())
    }
}

/// The apply thread: runs until the driver drops its sender (every queued
/// op is done first) or the state machine fails. Snapshots are written to
/// the store on another thread while applying goes on.
pub(crate) fn run<S: StateMachine>(
    mut applier: Applier<S>,
    mut ops: mpsc::Receiver<ApplyOp<S>>,
    events: mpsc::UnboundedSender<Event>,
    snapshots: Arc<dyn SnapshotStore>,
    snapshots_kept: usize,
    applied: Arc<AppliedIndex>,
) {
    let mut writer = SnapshotWriter {
        store: snapshots.clone(),
        keep: snapshots_kept,
        events: events.clone(),
        thread: None,
    };
    // An op taken from the queue behind merged entries, to run next.
    let mut next = None;
    while let Some(op) = next.take().or_else(|| ops.blocking_recv()) {
        let outcome = match op {
            ApplyOp::Entries {
                mut entries,
                mut waiters,
            } => {
                next = take_queued_entries(&mut ops, &mut entries, &mut waiters);
                applier.apply(entries, waiters).and_then(|applied_through| {
                    if let Some(index) = applied_through {
                        applied.advance(index);
                        let _ = events.send(Event::Applied(index));
                    }
                    if !applier.snapshot_due() || writer.busy() {
                        return Ok(());
                    }
                    applier.snapshot().map(|taken| writer.start(taken, None))
                })
            }
            ApplyOp::Restore(meta) => {
                let index = meta.index;
                snapshots
                    .open_reader(index)
                    .map_err(StateMachineError::from)
                    .and_then(|reader| applier.restore(meta, &mut SnapshotBytes::new(reader, 0)))
                    .map(|()| applied.advance(index))
            }
            ApplyOp::Read(f) => {
                applier.read(f);
                Ok(())
            }
            ApplyOp::Snapshot(reply) => {
                // One snapshot is written at a time: applies pause while
                // the one under way finishes.
                writer.wait();
                applier
                    .snapshot()
                    .map(|taken| writer.start(taken, Some(reply)))
            }
        };
        if let Err(e) = outcome {
            error!(error = %e, "the state machine failed; stopping the node");
            let reason = StopReason::StateMachine(Arc::from(e));
            let _ = events.send(Event::Fatal(reason.clone()));
            let error = Error::Stopped(reason);
            if let Some(op) = next.take() {
                op.fail(&error);
            }
            fail_queued(&mut ops, &error);
            break;
        }
    }
    applied.end();
}

/// Writes snapshots to the store, one at a time, each on a thread of its
/// own so that applying goes on meanwhile.
struct SnapshotWriter {
    store: Arc<dyn SnapshotStore>,
    /// Published snapshots the store keeps ([`crate::Config::snapshots_kept`]).
    keep: usize,
    events: mpsc::UnboundedSender<Event>,
    /// The thread writing the latest snapshot, if it may still run.
    thread: Option<JoinHandle<()>>,
}

impl SnapshotWriter {
    /// Whether a snapshot is being written.
    fn busy(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Waits until no snapshot is being written.
    fn wait(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Writes `taken` on a new thread, and tells `reply` how it went.
    fn start(&mut self, taken: SnapshotTaken, reply: Option<SnapshotReply>) {
        self.wait();
        let SnapshotTaken { meta, mut data } = taken;
        let (store, events, keep) = (self.store.clone(), self.events.clone(), self.keep);
        let spawned = std::thread::Builder::new()
            .name("keel-snapshot".into())
            .spawn(move || {
                let index = meta.index;
                let written = snapshot::write_local(store.as_ref(), meta.clone(), &mut data, keep);
                match &written {
                    Ok(info) => {
                        info!(%index, bytes = info.data_bytes, "snapshot created");
                        let _ = events.send(Event::SnapshotCreated(meta));
                    }
                    Err(e) => {
                        warn!(%index, error = %e, "creating a snapshot failed; will retry later")
                    }
                }
                if let Some(reply) = reply {
                    let _ = reply.send(written.map(|_| index).map_err(SnapshotError::from));
                }
            });
        match spawned {
            Ok(thread) => self.thread = Some(thread),
            Err(e) => warn!(error = %e, "could not start the snapshot thread"),
        }
    }
}

/// The apply thread ends only once the snapshot it started is written:
/// the writing thread holds the snapshot store, and with it the lock on
/// its directory, so a node restarted in the same process right after
/// [`crate::Node::shutdown`] would find the directory locked.
impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        self.wait();
    }
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
/// Returns the first queued op of another kind, which must run next.
fn take_queued_entries<S: StateMachine>(
    ops: &mut mpsc::Receiver<ApplyOp<S>>,
    entries: &mut Vec<Entry>,
    waiters: &mut Vec<(LogIndex, Responder<S::Response>)>,
) -> Option<ApplyOp<S>> {
    while entries.len() < MERGED_ENTRIES_MAX {
        match ops.try_recv() {
            Ok(ApplyOp::Entries {
                entries: more,
                waiters: more_waiters,
            }) => {
                entries.extend(more);
                waiters.extend(more_waiters);
            }
            Ok(other) => return Some(other),
            Err(_) => return None,
        }
    }
    None
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
    use keel_raft::Term;

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
        let ApplyOp::Entries {
            mut entries,
            mut waiters,
        } = super::tests::entries(1..=2)
        else {
            unreachable!()
        };
        let next = take_queued_entries(&mut rx, &mut entries, &mut waiters);
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
        let ApplyOp::Entries {
            mut entries,
            mut waiters,
        } = super::tests::entries(1..=2)
        else {
            unreachable!()
        };
        assert!(take_queued_entries(&mut rx, &mut entries, &mut waiters).is_none());
        assert_eq!(indexes(&entries), [1, 2]);
    }
}
