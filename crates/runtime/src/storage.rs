//! The storage thread: the only writer of the log. It takes write batches
//! in the order the driver produced them, applies every batch waiting, and
//! makes them durable with one fsync (group commit); only then does it
//! send the messages that waited for that durability (votes and
//! acknowledgements, §5.2), and hand the core the store's proof
//! ([`keel_storage::Durable`]) with what each batch made durable
//! ([`DurableWrite`]). It sends them itself, through the transport, rather
//! than hand them to the driver to send: a follower's acknowledgement is
//! on every write's critical path, and the trip through the driver's task
//! cost it one more wake-up of another thread. A group of
//! batches that only move the commit index is not synced at all
//! ([`WriteBatch::must_sync`]).
//!
//! It times every group commit that synced ([`LogTimings`]):
//! the whole write (`append`: buffering the batches, then `sync`) and
//! `sync` alone. With the file store the write syscalls happen inside
//! `sync`, so `append - sync` is the in-memory part only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_raft::{LogIndex, Term};
use keel_storage::LogStore;
use tokio::sync::mpsc;
use tracing::{error, trace};

use crate::error::StopReason;
use crate::event::Event;
use crate::histogram::LogTimings;
use crate::transport::Transport;
use crate::write_batch::{DurableWrite, WriteBatch};

/// Nearly every op is a `Write`: boxing it to shrink the rare `Compact`
/// would cost an allocation per write batch on the hot path.
#[allow(clippy::large_enum_variant)]
pub(crate) enum StorageOp {
    Write(WriteBatch),
    /// A snapshot through `(index, term)` is published: drop the log it covers.
    Compact {
        index: LogIndex,
        term: Term,
    },
}

/// Runs until the driver drops its sender or the log fails.
pub(crate) fn run<T: Transport>(
    mut log: Box<dyn LogStore + Send>,
    transport: &T,
    mut ops: mpsc::Receiver<StorageOp>,
    events: mpsc::UnboundedSender<Event>,
    timings: Arc<LogTimings>,
) {
    let mut done = Vec::new();
    while let Some(first) = ops.blocking_recv() {
        // Group commit: everything queued meanwhile shares this fsync.
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
            // Votes and acknowledgements only: no AppendEntries waits for
            // durability, so a refused message needs no report (Raft
            // resends what matters).
            for message in batch.messages {
                if let Err(e) = transport.send(message) {
                    trace!(error = %e, "message dropped");
                }
            }
            let persisted = Event::Persisted {
                seq: batch.seq,
                durable: DurableWrite::after_sync(batch.persisted_up_to, proof.as_ref()),
            };
            if events.send(persisted).is_err() {
                return;
            }
        }
    }
}
