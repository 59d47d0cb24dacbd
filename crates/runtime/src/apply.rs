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

/// How an attempt to apply entries at once ended.
pub enum Quick<S: StateMachine> {
    /// Applied; the last index, `None` for no entries.
    Applied(Option<LogIndex>),
    /// The machine could not apply them at once: nothing changed.
    NotNow {
        entries: Vec<Entry>,
        waiters: Vec<(LogIndex, Responder<S::Response>)>,
    },
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
        let commands = self.commands(&entries);
        let responses = if commands.is_empty() {
            Vec::new()
        } else {
            self.sm.apply(&commands, last.index)?
        };
        self.answer(entries, &commands, responses, waiters)
            .map(Some)
    }

    /// [`Applier::apply`] if the machine can apply the commands at once
    /// ([`StateMachine::try_apply_quickly`]); otherwise nothing changes
    /// and the entries and waiters come back, to be applied as usual.
    pub fn try_apply_quickly(
        &mut self,
        entries: Vec<Entry>,
        waiters: Vec<(LogIndex, Responder<S::Response>)>,
    ) -> Result<Quick<S>, StateMachineError> {
        let Some(last) = entries.last() else {
            return Ok(Quick::Applied(None));
        };
        let commands = self.commands(&entries);
        let responses = if commands.is_empty() {
            Vec::new()
        } else {
            match self.sm.try_apply_quickly(&commands, last.index) {
                Some(responses) => responses?,
                None => return Ok(Quick::NotNow { entries, waiters }),
            }
        };
        self.answer(entries, &commands, responses, waiters)
            .map(|last| Quick::Applied(Some(last)))
    }

    /// The commands among `entries` that the machine does not hold yet.
    fn commands(&self, entries: &[Entry]) -> Vec<Command> {
        entries
            .iter()
            .filter(|e| e.index > self.skip_through)
            .filter_map(|e| match &e.payload {
                Payload::Command(data) => Some(Command {
                    index: e.index,
                    term: e.term,
                    data: data.clone(),
                }),
                Payload::Membership(_) | Payload::Blank => None,
            })
            .collect()
    }

    /// Records what applying `entries` changed (the configuration, the last
    /// entry) and answers each waiter with its command's response. Returns
    /// the last index applied.
    fn answer(
        &mut self,
        entries: Vec<Entry>,
        commands: &[Command],
        responses: Vec<S::Response>,
        waiters: Vec<(LogIndex, Responder<S::Response>)>,
    ) -> Result<LogIndex, StateMachineError> {
        if responses.len() != commands.len() {
            return Err(format!(
                "StateMachine::apply returned {} responses for {} commands",
                responses.len(),
                commands.len()
            )
            .into());
        }
        let last = entries.last().expect("callers apply at least one entry");
        let (last_index, last_term) = (last.index, last.term);
        for entry in entries {
            if let Payload::Membership(m) = entry.payload {
                self.membership = m;
            }
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
        Ok(last_index)
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

/// Everything applying needs besides the queue: the machine, the snapshot
/// writer, and whom to tell what was applied. The apply thread holds it
/// while it runs an op; the driver holds it while it applies a quick batch
/// itself (`apply_queue.rs`), only when the thread has nothing to do.
pub(crate) struct ApplyWorker<S> {
    applier: Applier<S>,
    writer: SnapshotWriter,
    snapshots: Arc<dyn SnapshotStore>,
    events: mpsc::UnboundedSender<Event>,
    applied: Arc<AppliedIndex>,
}

impl<S: StateMachine> ApplyWorker<S> {
    pub(crate) fn new(
        applier: Applier<S>,
        events: mpsc::UnboundedSender<Event>,
        snapshots: Arc<dyn SnapshotStore>,
        snapshots_kept: usize,
        applied: Arc<AppliedIndex>,
    ) -> ApplyWorker<S> {
        ApplyWorker {
            writer: SnapshotWriter {
                store: snapshots.clone(),
                keep: snapshots_kept,
                events: events.clone(),
                thread: None,
            },
            applier,
            snapshots,
            events,
            applied,
        }
    }

    /// Applies `entries` if they are few, no snapshot is due after them
    /// (taking one flushes the machine, which may block) and the machine
    /// can apply them at once, and tells whoever waits; otherwise hands
    /// them back untouched, as the op to queue.
    pub(crate) fn try_apply_quickly(
        &mut self,
        entries: Vec<Entry>,
        waiters: Vec<(LogIndex, Responder<S::Response>)>,
    ) -> Result<Option<ApplyOp<S>>, StateMachineError> {
        let small = entries.len() <= QUICK_ENTRIES_MAX
            && entries.last().is_none_or(|last| {
                last.index
                    .0
                    .saturating_sub(self.applier.last_snapshot_index.0)
                    < self.applier.snapshot_entries
            });
        if !small {
            return Ok(Some(ApplyOp::Entries { entries, waiters }));
        }
        match self.applier.try_apply_quickly(entries, waiters)? {
            Quick::Applied(last) => {
                self.applied(last);
                Ok(None)
            }
            Quick::NotNow { entries, waiters } => Ok(Some(ApplyOp::Entries { entries, waiters })),
        }
    }

    /// Applies committed entries, answers their proposers and whoever
    /// waits for the index, and starts a snapshot if one is due.
    pub(crate) fn apply(
        &mut self,
        entries: Vec<Entry>,
        waiters: Vec<(LogIndex, Responder<S::Response>)>,
    ) -> Result<(), StateMachineError> {
        let last = self.applier.apply(entries, waiters)?;
        self.applied(last);
        if !self.applier.snapshot_due() || self.writer.busy() {
            return Ok(());
        }
        let taken = self.applier.snapshot()?;
        self.writer.start(taken, None);
        Ok(())
    }

    /// Tells the waiters for the index and the driver what was applied.
    fn applied(&self, last: Option<LogIndex>) {
        if let Some(index) = last {
            self.applied.advance(index);
            let _ = self.events.send(Event::Applied(index));
        }
    }

    /// Runs one op.
    pub(crate) fn run(&mut self, op: ApplyOp<S>) -> Result<(), StateMachineError> {
        match op {
            ApplyOp::Entries { entries, waiters } => self.apply(entries, waiters),
            ApplyOp::Restore(meta) => {
                let index = meta.index;
                let reader = self.snapshots.open_reader(index)?;
                self.applier
                    .restore(meta, &mut SnapshotBytes::new(reader, 0))?;
                self.applied.advance(index);
                Ok(())
            }
            ApplyOp::Read(f) => {
                self.applier.read(f);
                Ok(())
            }
            ApplyOp::Snapshot(reply) => {
                // One snapshot is written at a time: applies pause while
                // the one under way finishes.
                self.writer.wait();
                let taken = self.applier.snapshot()?;
                self.writer.start(taken, Some(reply));
                Ok(())
            }
        }
    }

    /// A failed machine stops the node: the driver learns why.
    pub(crate) fn fail(&self, e: StateMachineError) -> StopReason {
        error!(error = %e, "the state machine failed; stopping the node");
        let reason = StopReason::StateMachine(Arc::from(e));
        let _ = self.events.send(Event::Fatal(reason.clone()));
        reason
    }

    /// No more entries will be applied here.
    pub(crate) fn end(&self) {
        self.applied.end();
    }
}

/// The most entries the driver tries to apply itself.
const QUICK_ENTRIES_MAX: usize = 16;

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
