//! One simulated member of the full stack: the runtime's [`NodeLoop`]
//! over a crashable in-memory log, the runtime's [`Applier`] over the
//! application's state machine (Keel KV's MVCC store on an in-memory redb,
//! or an embedder's machine), and snapshots held in memory. The member executes the loop's local effects (writes, applies,
//! publishing snapshots) and hands the rest — messages, snapshot
//! transfers, syncs and applies to schedule — to the world, which owns
//! time and the network.

use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::time::Duration;

use bytes::Bytes;
use keel::node_loop::{
    Applier, ApplyOp, DurableWrite, Effect, Input, Moment, NodeLoop, SnapshotTaken, resume_from,
};
use keel::{Config, StateMachine};
use keel_raft::{LogIndex, Message, MessageBody, NodeId, Raft, SnapshotMeta, Term};
use keel_storage::{LogStore, MemLogStore};

use crate::time::Micros;

/// What survives a crash: the log, as its crash model leaves it, and the
/// published snapshots (a published snapshot is durable).
#[derive(Debug, Default)]
pub struct Disk {
    pub log: MemLogStore,
    pub snapshots: BTreeMap<LogIndex, (SnapshotMeta, Bytes)>,
}

impl Disk {
    /// Whether entry `(index, term)` survives any crash: synced to the
    /// log, or inside a published snapshot (which only holds committed
    /// entries, so its term needs no check).
    pub fn holds_durably(&self, index: LogIndex, term: Term) -> bool {
        self.log.durable_term(index) == Some(term)
            || self
                .snapshots
                .keys()
                .next_back()
                .is_some_and(|&s| s >= index)
    }
}

/// A write batch that is written but not yet durable: what to report to
/// the loop once it is.
struct Unsynced {
    seq: u64,
    up_to: Option<(LogIndex, Term)>,
    messages: Vec<Message>,
    must_sync: bool,
}

/// What a member asks of the world.
pub enum Outgoing {
    Message(Message),
    /// Stream this snapshot to the message's recipient; `None` when the
    /// snapshot the message names is not in the store.
    Snapshot(Message, Option<Bytes>),
    /// Writes are waiting and no sync is in flight: schedule one.
    SyncNeeded,
    /// Apply ops are waiting and none is scheduled: schedule one.
    ApplyNeeded,
}

/// Why a member stops, as a fatal error stops a real one.
#[derive(Debug, thiserror::Error)]
pub enum MemberFailure {
    #[error("the log failed: {0}")]
    Log(#[from] keel_storage::StorageError),
    #[error("the state machine failed: {0}")]
    StateMachine(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the snapshot at {0} to restore is not in the store")]
    SnapshotMissing(LogIndex),
    #[error("no snapshot to start from, not even the bootstrap one")]
    NoSnapshot,
    #[error("cannot start: {0}")]
    Start(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// One life of a member, from start to crash.
pub struct Member<M: StateMachine> {
    pub id: NodeId,
    pub node: NodeLoop<M>,
    applier: Applier<M>,
    pub disk: Disk,
    /// When this life began, in world time.
    started_at: Micros,
    /// How much faster (positive) or slower this member's clock runs than
    /// the world's, in parts per million.
    drift_ppm: i64,
    unsynced: VecDeque<Unsynced>,
    sync_scheduled: bool,
    applies: VecDeque<ApplyOp<M>>,
    /// Snapshots received whole, awaiting the loop's decision.
    staged: Vec<(SnapshotMeta, Bytes)>,
    snapshots_kept: usize,
}

impl<M: StateMachine> Member<M> {
    /// Starts a life of member `id` from `disk` with a fresh `machine`, as
    /// `Node::start` does from a data directory: the newest snapshot
    /// restores the state machine and the log after it is replayed by the
    /// core.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        id: NodeId,
        mut disk: Disk,
        mut machine: M,
        config: &Config,
        raft_config: keel_raft::Config,
        now: Micros,
        drift_ppm: i64,
        read_id_origin: u64,
    ) -> Result<Member<M>, MemberFailure> {
        let (meta, data) = disk
            .snapshots
            .values()
            .next_back()
            .cloned()
            .ok_or(MemberFailure::NoSnapshot)?;
        let state =
            resume_from(&mut disk.log, meta.clone()).map_err(|e| MemberFailure::Start(e.into()))?;
        if meta.index > LogIndex(0) {
            machine
                .restore(meta.index, &mut data.as_ref())
                .map_err(MemberFailure::Start)?;
        }
        let raft = Raft::new(raft_config, state).map_err(|e| MemberFailure::Start(e.into()))?;
        let applier = Applier::new(machine, meta.index, &meta, config.snapshot_entries);
        Ok(Member {
            id,
            node: NodeLoop::new(raft, config.clone(), read_id_origin),
            applier,
            disk,
            started_at: now,
            drift_ppm,
            unsynced: VecDeque::new(),
            sync_scheduled: false,
            applies: VecDeque::new(),
            staged: Vec::new(),
            snapshots_kept: config.snapshots_kept,
        })
    }

    /// The state machine as this life has applied it.
    pub fn machine(&self) -> &M {
        self.applier.state_machine()
    }

    /// The machine's state as a snapshot's bytes, and the index it covers:
    /// what members that applied the same entries must agree on.
    pub fn state_bytes(&mut self) -> Result<(LogIndex, Vec<u8>), MemberFailure> {
        let SnapshotTaken { meta, mut data } = self
            .applier
            .snapshot()
            .map_err(MemberFailure::StateMachine)?;
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes)
            .map_err(|e| MemberFailure::StateMachine(e.into()))?;
        Ok((meta.index, bytes))
    }

    /// What a crash leaves: the disk, unsynced writes and all (the caller
    /// decides what of them survives).
    pub fn into_disk(self) -> Disk {
        self.disk
    }

    /// The disk's next sync fails with an I/O error.
    pub fn fail_next_sync(&mut self) {
        self.disk.log.fail_next_sync(std::io::ErrorKind::Other);
    }

    /// Whether entry `(index, term)` survives any crash of this member:
    /// synced to its log, or inside a published snapshot.
    pub fn holds_durably(&self, index: LogIndex, term: Term) -> bool {
        self.disk.holds_durably(index, term)
    }

    /// This member's monotonic clock at world time `now`.
    pub fn moment(&self, now: Micros) -> Moment {
        let elapsed = now.saturating_sub(self.started_at).0 as i128;
        let scaled = elapsed + elapsed * i128::from(self.drift_ppm) / 1_000_000;
        Moment::since_start(Duration::from_micros(scaled.max(0) as u64))
    }

    /// Feeds one input, then executes what the loop asks.
    pub fn input(&mut self, now: Micros, input: Input<M>, out: &mut Vec<Outgoing>) {
        let moment = self.moment(now);
        self.node.handle(moment, input);
        self.settle(now, out);
    }

    /// A snapshot arrived whole from `message`'s sender: stage it and let
    /// the loop decide.
    pub fn snapshot_arrived(
        &mut self,
        now: Micros,
        message: Message,
        data: Bytes,
        out: &mut Vec<Outgoing>,
    ) {
        if let MessageBody::InstallSnapshot { meta } = &message.body {
            self.staged.push((meta.clone(), data));
        }
        self.input(now, Input::SnapshotStaged(message), out);
    }

    /// The scheduled sync happens now: everything written so far becomes
    /// durable, and the loop hears of every batch it covers. As the
    /// runtime's storage thread does, a group of batches that only move
    /// the commit index is reported without a sync (and stays unsynced).
    pub fn sync(&mut self, now: Micros, out: &mut Vec<Outgoing>) -> Result<(), MemberFailure> {
        self.sync_scheduled = false;
        let mut proof = None;
        if self.unsynced.iter().any(|batch| batch.must_sync) {
            proof = Some(self.disk.log.sync()?);
        }
        let moment = self.moment(now);
        for batch in std::mem::take(&mut self.unsynced) {
            let input = Input::Persisted {
                seq: batch.seq,
                durable: DurableWrite::after_sync(batch.up_to, proof.as_ref()),
                messages: batch.messages,
            };
            self.node.handle(moment, input);
        }
        self.settle(now, out);
        Ok(())
    }

    /// Runs the oldest waiting apply op.
    pub fn apply_next(
        &mut self,
        now: Micros,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), MemberFailure> {
        let Some(op) = self.applies.pop_front() else {
            return Ok(());
        };
        let moment = self.moment(now);
        match op {
            ApplyOp::Entries { entries, waiters } => {
                let applied = self
                    .applier
                    .apply(entries, waiters)
                    .map_err(MemberFailure::StateMachine)?;
                if let Some(index) = applied {
                    self.node.handle(moment, Input::Applied(index));
                }
                if self.applier.snapshot_due() {
                    let meta = self.take_snapshot()?;
                    self.node.handle(moment, Input::SnapshotCreated(meta));
                }
            }
            ApplyOp::Restore(meta) => {
                let (_, data) = self
                    .disk
                    .snapshots
                    .get(&meta.index)
                    .cloned()
                    .ok_or(MemberFailure::SnapshotMissing(meta.index))?;
                self.applier
                    .restore(meta, &mut data.as_ref())
                    .map_err(MemberFailure::StateMachine)?;
            }
            ApplyOp::Read(f) => self.applier.read(f),
            ApplyOp::Snapshot(reply) => {
                let meta = self.take_snapshot()?;
                self.node
                    .handle(moment, Input::SnapshotCreated(meta.clone()));
                let _ = reply.send(Ok(meta.index));
            }
        }
        if !self.applies.is_empty() {
            out.push(Outgoing::ApplyNeeded);
        }
        self.settle(now, out);
        Ok(())
    }

    /// The state machine's snapshot, written whole and published.
    fn take_snapshot(&mut self) -> Result<SnapshotMeta, MemberFailure> {
        let SnapshotTaken { meta, mut data } = self
            .applier
            .snapshot()
            .map_err(MemberFailure::StateMachine)?;
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes)
            .map_err(|e| MemberFailure::StateMachine(e.into()))?;
        self.publish(meta.clone(), Bytes::from(bytes));
        Ok(meta)
    }

    /// Publishes a snapshot and prunes old ones, never the one the log is
    /// compacted to.
    fn publish(&mut self, meta: SnapshotMeta, data: Bytes) {
        self.disk.snapshots.insert(meta.index, (meta, data));
        let log_base = LogIndex(self.disk.log.first_index().0.saturating_sub(1));
        while self.disk.snapshots.len() > self.snapshots_kept {
            let (&oldest, _) = self
                .disk
                .snapshots
                .first_key_value()
                .expect("more than snapshots_kept");
            if oldest >= log_base {
                break;
            }
            self.disk.snapshots.remove(&oldest);
        }
    }

    /// Executes the loop's effects until it has none left.
    fn settle(&mut self, now: Micros, out: &mut Vec<Outgoing>) {
        loop {
            let effects = self.node.effects(self.moment(now));
            if effects.is_empty() {
                break;
            }
            for effect in effects {
                self.execute(effect, out);
            }
        }
        // Staged snapshots the loop did not publish were refused.
        self.staged.clear();
    }

    fn execute(&mut self, effect: Effect<M>, out: &mut Vec<Outgoing>) {
        match effect {
            Effect::Send(m) => out.push(Outgoing::Message(m)),
            Effect::SendSnapshot(m) => {
                let data = match &m.body {
                    MessageBody::InstallSnapshot { meta } => self
                        .disk
                        .snapshots
                        .get(&meta.index)
                        .map(|(_, data)| data.clone()),
                    _ => None,
                };
                out.push(Outgoing::Snapshot(m, data));
            }
            Effect::PublishSnapshot(meta) => {
                let at = self
                    .staged
                    .iter()
                    .position(|(staged, _)| *staged == meta)
                    .expect("the loop publishes only snapshots staged since its last effects");
                let (meta, data) = self.staged.swap_remove(at);
                self.publish(meta, data);
            }
            Effect::Write(batch) => {
                batch.write_to(&mut self.disk.log);
                self.unsynced.push_back(Unsynced {
                    seq: batch.seq,
                    up_to: batch.persisted_up_to,
                    messages: batch.messages,
                    must_sync: batch.must_sync,
                });
                if !self.sync_scheduled {
                    self.sync_scheduled = true;
                    out.push(Outgoing::SyncNeeded);
                }
            }
            Effect::Compact { index, term } => self.disk.log.compact(index, term),
            // The simulated network routes by id.
            Effect::SetPeers(_) => {}
            Effect::Apply(op) => {
                self.applies.push_back(op);
                if self.applies.len() == 1 {
                    out.push(Outgoing::ApplyNeeded);
                }
            }
        }
    }
}
