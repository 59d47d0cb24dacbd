//! The node loop's lifecycle requests: founding a cluster on a node
//! started uninitialized ([`Request::Initialize`]) and discarding the log
//! a stored snapshot covers ([`Request::PurgeLog`]). Both answer only once
//! what they changed is durable, so that a caller who heard "done" finds
//! it done after a crash.
//!
//! [`Request::Initialize`]: super::Request::Initialize
//! [`Request::PurgeLog`]: super::Request::PurgeLog

use std::collections::VecDeque;

use keel_raft::{LogIndex, Membership};
use tokio::sync::oneshot;
use tracing::info;

use super::{Effect, NodeLoop};
use crate::error::{Error, InitializeError, PurgeError};
use crate::state_machine::StateMachine;
use crate::write_batch::WriteBatch;

/// Where the outcome of founding a cluster goes.
pub type InitializeReply = oneshot::Sender<Result<(), InitializeError>>;

/// Where the index a purged log starts after goes.
pub type PurgeReply = oneshot::Sender<Result<LogIndex, PurgeError>>;

/// Callers waiting for a lifecycle change to become durable.
#[derive(Default)]
pub(super) struct LifecycleWaiters {
    /// Founders waiting for the founding entry (index 1) to be durable.
    founding: Vec<InitializeReply>,
    /// Purges waiting for write batch `seq`, queued behind their
    /// compaction, with the index the log now starts after.
    purges: VecDeque<(u64, LogIndex, PurgeReply)>,
}

impl LifecycleWaiters {
    /// Answers every waiter with `error`: the node stops.
    pub(super) fn fail_all(&mut self, error: &Error) {
        for reply in self.founding.drain(..) {
            let _ = reply.send(Err(error.clone().into()));
        }
        for (_, _, reply) in self.purges.drain(..) {
            let _ = reply.send(Err(error.clone().into()));
        }
    }
}

impl<S: StateMachine> NodeLoop<S> {
    /// Founds a cluster of `membership` (see [`keel_raft::Raft::initialize`]).
    /// The founding entry leaves in the next Ready's write batch; the
    /// caller hears once the core counts it durable. A repeated call while
    /// it is not yet durable waits for the same write.
    pub(super) fn initialize(&mut self, membership: Membership, reply: InitializeReply) {
        match self.raft.initialize(membership) {
            Ok(true) => {
                info!(membership = ?self.raft.membership(), "founding a new cluster");
                self.lifecycle.founding.push(reply);
            }
            Ok(false) if !self.lifecycle.founding.is_empty() => {
                self.lifecycle.founding.push(reply);
            }
            Ok(false) => {
                let _ = reply.send(Ok(()));
            }
            Err(refused) => {
                let _ = reply.send(Err(refused.into()));
            }
        }
    }

    /// Discards the log through `upto`, which must not pass the newest
    /// snapshot this node stored: the log is the only record of what
    /// follows it. Reaching that snapshot compacts the core too (which
    /// otherwise keeps one snapshot interval of log for followers that
    /// fell a little behind, see [`NodeLoop::uncompacted`]); short of it,
    /// only the store's copy goes, which the core no longer reads.
    pub(super) fn purge_log(&mut self, upto: LogIndex, reply: PurgeReply) {
        let core_snapshot = self.raft.status().first_index.prev();
        let newest = self.uncompacted.as_ref().map_or(core_snapshot, |m| m.index);
        if upto > newest {
            let _ = reply.send(Err(PurgeError::NotCovered {
                upto,
                snapshot: newest,
            }));
            return;
        }
        if upto <= self.purged_through {
            let _ = reply.send(Ok(self.purged_through));
            return;
        }
        if let Some(meta) = self.uncompacted.take_if(|m| m.index <= upto) {
            self.compact(meta);
        }
        if upto > self.purged_through {
            let term = self
                .raft
                .term_at(upto)
                .expect("the core holds its log from its snapshot on, and upto is past it");
            self.effects.push(Effect::Compact { index: upto, term });
            self.purged_through = upto;
        }
        // An empty batch behind the compaction: the storage thread reports
        // it only after a sync that covers the compaction.
        self.write_seq += 1;
        self.effects
            .push(Effect::Write(WriteBatch::barrier(self.write_seq)));
        self.lifecycle
            .purges
            .push_back((self.write_seq, self.purged_through, reply));
    }

    /// Answers the lifecycle waiters whose change is now durable.
    pub(super) fn answer_durable_lifecycle(&mut self) {
        if !self.lifecycle.founding.is_empty() && self.raft.status().persisted >= LogIndex(1) {
            for reply in self.lifecycle.founding.drain(..) {
                let _ = reply.send(Ok(()));
            }
        }
        while self
            .lifecycle
            .purges
            .front()
            .is_some_and(|(seq, _, _)| *seq <= self.persisted_seq)
        {
            let (_, purged, reply) = self.lifecycle.purges.pop_front().expect("checked above");
            let _ = reply.send(Ok(purged));
        }
    }
}
