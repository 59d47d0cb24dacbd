//! The apply thread: owns the state machine, applies committed entries in
//! order and in batches, answers their proposers, serves reads, and takes
//! snapshots when the policy says so.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use keel_raft::{Entry, LogIndex, Membership, Payload, SnapshotMeta, Term};
use keel_storage::SnapshotStore;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::driver::Event;
use crate::error::{Error, StateMachineError, StopReason};
use crate::proposals::Responder;
use crate::snapshot::{self, SnapshotBytes};
use crate::state_machine::{Command, StateMachine};

/// A read to run against the state machine, or to fail.
pub(crate) type ReadFn<S> = Box<dyn FnOnce(Result<&S, Error>) + Send>;

pub(crate) enum ApplyOp<S> {
    /// Committed entries, in order, with the proposers waiting for some.
    Entries {
        entries: Vec<Entry>,
        waiters: Vec<(LogIndex, Responder)>,
    },
    /// A snapshot from the leader is durable: replace the state with it.
    Restore(SnapshotMeta),
    /// Every write the read must observe is applied: run it now.
    Read(ReadFn<S>),
}

/// Where the state machine stands, and when to snapshot it.
pub(crate) struct Applier<S> {
    pub(crate) sm: S,
    pub(crate) snapshots: Arc<SnapshotStore>,
    pub(crate) events: mpsc::UnboundedSender<Event>,
    /// Entries through this index reached the machine before this process
    /// started (a persistent machine): they are not applied again.
    pub(crate) skip_through: LogIndex,
    /// The last entry applied (or covered by the snapshot restored).
    pub(crate) last_index: LogIndex,
    pub(crate) last_term: Term,
    /// The configuration as of `last_index`, for snapshot metadata.
    pub(crate) membership: Membership,
    pub(crate) last_snapshot_index: LogIndex,
    pub(crate) snapshot_entries: u64,
    /// A snapshot is being written in the background.
    pub(crate) snapshot_running: Arc<AtomicBool>,
}

impl<S: StateMachine> Applier<S> {
    /// Runs until the driver drops its sender (every queued op is done
    /// first) or the state machine fails.
    pub(crate) fn run(mut self, mut ops: mpsc::Receiver<ApplyOp<S>>) {
        while let Some(op) = ops.blocking_recv() {
            let outcome = match op {
                ApplyOp::Entries { entries, waiters } => self.apply(entries, waiters),
                ApplyOp::Restore(meta) => self.restore(meta),
                ApplyOp::Read(f) => {
                    f(Ok(&self.sm));
                    Ok(())
                }
            };
            if let Err(e) = outcome {
                error!(error = %e, "the state machine failed; stopping the node");
                let reason = StopReason::StateMachine(e.to_string().into());
                let _ = self.events.send(Event::Fatal(reason.clone()));
                fail_queued(&mut ops, &Error::Stopped(reason));
                return;
            }
        }
    }

    fn apply(
        &mut self,
        entries: Vec<Entry>,
        waiters: Vec<(LogIndex, Responder)>,
    ) -> Result<(), StateMachineError> {
        let Some(last) = entries.last() else {
            return Ok(());
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
            // command is a configuration change, answered with no data.
            while responses.next_if(|(i, _)| *i < index).is_some() {}
            let response = responses
                .next_if(|(i, _)| *i == index)
                .map_or_else(Bytes::new, |(_, r)| r);
            let _ = responder.send(Ok(response));
        }
        self.last_index = last_index;
        self.last_term = last_term;
        let _ = self.events.send(Event::Applied(last_index));
        self.maybe_snapshot()
    }

    /// Snapshots once `snapshot_entries` entries were applied since the last
    /// one. The machine hands over a point-in-time stream; writing it to the
    /// store happens on another thread while applying goes on.
    fn maybe_snapshot(&mut self) -> Result<(), StateMachineError> {
        let due =
            self.last_index.0.saturating_sub(self.last_snapshot_index.0) >= self.snapshot_entries;
        if !due
            || self.last_index < self.skip_through
            || self.snapshot_running.swap(true, Ordering::AcqRel)
        {
            return Ok(());
        }
        let meta = SnapshotMeta {
            index: self.last_index,
            term: self.last_term,
            membership: self.membership.clone(),
        };
        let data = self.sm.snapshot()?;
        self.last_snapshot_index = self.last_index;
        let store = self.snapshots.clone();
        let events = self.events.clone();
        let running = self.snapshot_running.clone();
        let spawned = std::thread::Builder::new()
            .name("keel-snapshot".into())
            .spawn(move || {
                let index = meta.index;
                match snapshot::write_local(&store, meta.clone(), data) {
                    Ok(info) => {
                        info!(%index, bytes = info.data_bytes, "snapshot created");
                        let _ = events.send(Event::SnapshotCreated(meta));
                    }
                    Err(e) => {
                        warn!(%index, error = %e, "creating a snapshot failed; will retry later")
                    }
                }
                running.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            self.snapshot_running.store(false, Ordering::Release);
            warn!(error = %e, "could not start the snapshot thread");
        }
        Ok(())
    }

    fn restore(&mut self, meta: SnapshotMeta) -> Result<(), StateMachineError> {
        let reader = self.snapshots.open_reader(meta.index)?;
        self.sm
            .restore(meta.index, &mut SnapshotBytes::new(reader, 0))?;
        info!(index = %meta.index, "state machine restored from the leader's snapshot");
        self.skip_through = meta.index;
        self.last_index = meta.index;
        self.last_term = meta.term;
        self.last_snapshot_index = meta.index;
        self.membership = meta.membership;
        Ok(())
    }
}

/// Fails every op still queued once the machine cannot run them.
fn fail_queued<S>(ops: &mut mpsc::Receiver<ApplyOp<S>>, error: &Error) {
    ops.close();
    while let Ok(op) = ops.try_recv() {
        match op {
            ApplyOp::Entries { waiters, .. } => {
                for (_, responder) in waiters {
                    let _ = responder.send(Err(error.clone()));
                }
            }
            ApplyOp::Read(f) => f(Err(error.clone())),
            ApplyOp::Restore(_) => {}
        }
    }
}
