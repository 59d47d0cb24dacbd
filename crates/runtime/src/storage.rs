//! The storage thread: the only writer of the log. It takes write batches
//! in the order the driver produced them, applies every batch waiting, and
//! makes them durable with one fsync (group commit); only then does it
//! release the messages that waited for that durability, and hand the
//! core the store's proof ([`Durable`]) with what each batch made durable
//! ([`DurableWrite`]). A group of
//! batches that only move the commit index is not synced at all
//! ([`WriteBatch::must_sync`]).
//!
//! It times every group commit that synced ([`LogTimings`]):
//! the whole write (`append`: buffering the batches, then `sync`) and
//! `sync` alone. With the file store the write syscalls happen inside
//! `sync`, so `append - sync` is the in-memory part only.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_raft::{Entry, HardState, LogIndex, Message, NodeId, SnapshotMeta, Term};
use keel_storage::{Durable, LogStore};
use tokio::sync::mpsc;
use tracing::{error, warn};

use crate::error::StopReason;
use crate::event::Event;
use crate::histogram::LogTimings;
use crate::peers;

/// One Ready's durable part.
#[derive(Debug)]
pub struct WriteBatch {
    /// Its position in the node loop's sequence of writes.
    pub seq: u64,
    /// A snapshot received from the leader (already published in the
    /// snapshot store): the log is compacted to it before `entries`.
    pub snapshot: Option<SnapshotMeta>,
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    /// What to report to the core once durable.
    pub persisted_up_to: Option<(LogIndex, Term)>,
    /// Messages that may leave only once this batch is durable.
    pub messages: Vec<Message>,
    /// Whether the batch must be fsynced before it counts as persisted:
    /// it holds entries, a snapshot, or a new term or vote. Not when it
    /// only moves the commit index, which may be lost in a crash (it rides
    /// along with the next sync), or only carries messages, whose grounds
    /// an earlier or the same group commit makes durable: a commit then
    /// costs no fsync on the path of the next proposal.
    pub must_sync: bool,
}

/// What one write batch made durable, with the proof: the core
/// acknowledges `up_to` only against the store's [`Durable`]
/// ([`keel_raft::Raft::persisted`]).
#[derive(Clone, Debug)]
pub struct DurableWrite {
    /// The batch's `persisted_up_to`: its last entry, or its snapshot.
    pub up_to: (LogIndex, Term),
    /// What the sync that covered the batch returned.
    pub proof: Durable,
}

impl DurableWrite {
    /// What a batch whose `persisted_up_to` is `up_to` made durable, once
    /// its group commit returned `proof` (`None` when the group needed no
    /// sync); `None` for a batch with no entries and no snapshot.
    ///
    /// # Panics
    /// If the batch holds entries or a snapshot and no sync covered it:
    /// such a batch is always [`WriteBatch::must_sync`].
    pub fn after_sync(
        up_to: Option<(LogIndex, Term)>,
        proof: Option<&Durable>,
    ) -> Option<DurableWrite> {
        let up_to = up_to?;
        let proof = proof.expect("a batch with entries or a snapshot is synced before it is done");
        Some(DurableWrite {
            up_to,
            proof: proof.clone(),
        })
    }
}

impl WriteBatch {
    /// Writes the batch to `log` (not yet durable): compaction to the
    /// leader's snapshot first, then the entries, then the hard state.
    pub fn write_to(&self, log: &mut dyn LogStore) {
        if let Some(meta) = &self.snapshot {
            log.compact(meta.index, meta.term);
        }
        if !self.entries.is_empty() {
            log.append(&self.entries);
        }
        if let Some(hs) = &self.hard_state {
            log.set_hard_state(hs.clone());
        }
    }
}

pub(crate) enum StorageOp {
    Write(WriteBatch),
    /// A snapshot through `(index, term)` is published: drop the log it covers.
    Compact {
        index: LogIndex,
        term: Term,
    },
    /// Persist the address book.
    SavePeers(BTreeMap<NodeId, String>),
}

/// Runs until the driver drops its sender or the log fails.
pub(crate) fn run(
    mut log: Box<dyn LogStore + Send>,
    mut ops: mpsc::Receiver<StorageOp>,
    events: mpsc::UnboundedSender<Event>,
    peers_file: Option<PathBuf>,
    timings: Arc<LogTimings>,
) {
    let mut done = Vec::new();
    while let Some(first) = ops.blocking_recv() {
        // Group commit: everything queued meanwhile shares this fsync.
        // `writing` excludes saving the address book, which is no log write.
        let mut writing = Duration::ZERO;
        let mut must_sync = false;
        let mut op = Some(first);
        while let Some(next) = op.take().or_else(|| ops.try_recv().ok()) {
            let started = Instant::now();
            match next {
                StorageOp::Write(batch) => {
                    batch.write_to(log.as_mut());
                    must_sync |= batch.must_sync;
                    done.push(batch);
                }
                StorageOp::Compact { index, term } => {
                    log.compact(index, term);
                    must_sync = true;
                }
                StorageOp::SavePeers(book) => {
                    if let Some(path) = &peers_file
                        && let Err(e) = peers::save(path, &book)
                    {
                        warn!(path = %path.display(), error = %e, "could not save the peer address book");
                    }
                    continue;
                }
            }
            writing += started.elapsed();
        }
        let mut proof = None;
        if must_sync {
            let syncing = Instant::now();
            // One proof covers the whole group; each batch reports what it
            // wrote (a later batch may have replaced an earlier one's
            // entries: the proof then does not cover them, and the core
            // ignores them).
            match log.sync() {
                Ok(durable) => proof = Some(durable),
                Err(e) => {
                    error!(error = %e, "log sync failed; stopping the node");
                    let _ = events.send(Event::Fatal(StopReason::Storage(Arc::new(e))));
                    return;
                }
            }
            let synced = syncing.elapsed();
            timings.sync.observe(synced);
            timings.append.observe(writing + synced);
        }
        for batch in done.drain(..) {
            let persisted = Event::Persisted {
                seq: batch.seq,
                durable: DurableWrite::after_sync(batch.persisted_up_to, proof.as_ref()),
                messages: batch.messages,
            };
            if events.send(persisted).is_err() {
                return;
            }
        }
    }
}
