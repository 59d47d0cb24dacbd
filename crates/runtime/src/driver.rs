//! The driver task: the one owner of the Raft core. It feeds the core
//! ticks, peer messages and requests, and executes each [`Ready`] in the
//! order its contract demands:
//!
//! 1. `messages` go to the transport at once — a leader's AppendEntries
//!    leave while its own write of the same entries is still in flight;
//! 2. the snapshot, entries and hard state go to the storage thread as one
//!    write batch; batches are made durable in order, several per fsync;
//! 3. when the storage thread reports a batch durable, the driver tells the
//!    core (`persisted`) and only then sends that Ready's
//!    `persisted_messages` (votes, acknowledgements);
//! 4. committed entries go to the apply thread with their proposers'
//!    responders; it reports back what it applied;
//! 5. confirmed reads go to the apply thread, behind those entries.
//!
//! The driver does not wait for a write before taking the next Ready
//! (pipelining): requests arriving meanwhile are batched into the next
//! append.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use keel_raft::{
    LogIndex, MembershipChange, Message, MessageBody, NodeId, Raft, ReadId, ReadMode, ReadOutcome,
    Ready, Role, SnapshotMeta, SoftState, Term,
};
use keel_storage::{SnapshotStore, StagedSnapshot};
use keel_transport::Transport;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::clock::TickClock;
use tracing::{debug, info, trace, warn};

use crate::apply::{ApplyOp, ReadFn};
use crate::config::Config;
use crate::error::{Error, StopReason};
use crate::histogram::LogTimings;
use crate::inbound::Inbound;
use crate::metrics::Metrics;
use crate::node::ReadConsistency;
use crate::proposals::{Proposals, Responder};
use crate::snapshot;
use crate::state_machine::StateMachine;
use crate::storage::{StorageOp, WriteBatch};

/// What the storage thread, the apply thread and snapshot transfers report.
pub(crate) enum Event {
    /// Write batch `seq` (and every one before it) is durable.
    Persisted {
        seq: u64,
        up_to: Option<(LogIndex, Term)>,
        messages: Vec<Message>,
    },
    /// The state machine applied every entry through this index.
    Applied(LogIndex),
    /// A snapshot of the state machine is published.
    SnapshotCreated(SnapshotMeta),
    /// A snapshot transfer to `to` ended.
    SnapshotSent { to: NodeId, ok: bool },
    /// A thread hit an error the node cannot continue from.
    Fatal(StopReason),
}

/// What a [`crate::Node`] handle asks of the driver.
pub(crate) enum Request<S> {
    Propose {
        data: Bytes,
        responder: Responder,
    },
    ChangeMembership {
        change: MembershipChange,
        responder: Responder,
    },
    Read {
        consistency: ReadConsistency,
        read: ReadFn<S>,
    },
    TransferLeader {
        target: NodeId,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Shutdown,
}

/// The driver's connections to the rest of the node.
pub(crate) struct Wiring<S> {
    pub(crate) transport: Transport,
    pub(crate) snapshots: Arc<SnapshotStore>,
    pub(crate) requests: mpsc::Receiver<Request<S>>,
    pub(crate) inbox: mpsc::Receiver<Inbound>,
    pub(crate) events: mpsc::UnboundedReceiver<Event>,
    pub(crate) events_tx: mpsc::UnboundedSender<Event>,
    pub(crate) storage: mpsc::Sender<StorageOp>,
    pub(crate) apply: mpsc::Sender<ApplyOp<S>>,
    pub(crate) threads: Vec<std::thread::JoinHandle<()>>,
    pub(crate) metrics: watch::Sender<Metrics>,
    /// Written by the storage thread, read when publishing metrics.
    pub(crate) log_timings: Arc<LogTimings>,
    pub(crate) stop_server: oneshot::Sender<()>,
    /// Set once, when the node stops; handles report it.
    pub(crate) stop_reason: Arc<OnceLock<StopReason>>,
}

pub(crate) struct Driver<S> {
    raft: Raft,
    config: Config,
    io: Wiring<S>,
    proposals: Proposals,
    /// Linearizable reads waiting for the core, oldest first.
    reads: BTreeMap<ReadId, (Instant, ReadFn<S>)>,
    /// Starts at a value no earlier incarnation of this node used (see
    /// `Driver::new`), so that a late answer to a read forwarded before a
    /// restart cannot be taken for the answer to a new one.
    next_read_id: u64,
    /// How many ticks the core is owed: time, not timer firings.
    clock: TickClock,
    /// The last write batch handed to storage, and the last one durable.
    write_seq: u64,
    persisted_seq: u64,
    /// Peers a snapshot transfer is running to.
    snapshot_sends: BTreeSet<NodeId>,
    /// Leaders' snapshots received this turn, awaiting the core's decision.
    staged: Vec<StagedSnapshot>,
    leading: bool,
    peers_version_saved: u64,
    snapshots_created: u64,
    snapshots_installed: u64,
    metrics_stale: bool,
    stopping: bool,
}

impl<S: StateMachine> Driver<S> {
    pub(crate) fn new(raft: Raft, config: Config, io: Wiring<S>) -> Driver<S> {
        Driver {
            raft,
            proposals: Proposals::new(config.pending_proposals_max),
            reads: BTreeMap::new(),
            next_read_id: read_id_origin(),
            clock: TickClock::new(Instant::now(), config.tick_interval, config.election_ticks),
            write_seq: 0,
            persisted_seq: 0,
            snapshot_sends: BTreeSet::new(),
            staged: Vec::new(),
            leading: false,
            peers_version_saved: io.transport.peers_version(),
            snapshots_created: 0,
            snapshots_installed: 0,
            metrics_stale: true,
            stopping: false,
            config,
            io,
        }
    }

    /// Drives the node until shutdown or a fatal error, then stops it
    /// gracefully and returns why it stopped.
    pub(crate) async fn run(mut self) -> StopReason {
        let mut ticker = tokio::time::interval(self.config.tick_interval);
        // Missed firings need no burst: each firing gives the core every
        // tick of elapsed time (`TickClock`).
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let reason = loop {
            if let Err(reason) = self.turn(&mut ticker).await {
                break reason;
            }
            if self.stopping {
                break StopReason::Shutdown;
            }
        };
        self.stop(reason).await
    }

    /// One turn: wait for input, take everything else already waiting
    /// (that is the batching), then execute the core's output.
    async fn turn(&mut self, ticker: &mut Interval) -> Result<(), StopReason> {
        tokio::select! {
            biased;
            Some(event) = self.io.events.recv() => self.on_event(event).await?,
            Some(inbound) = self.io.inbox.recv() => self.on_inbound(inbound),
            _ = ticker.tick() => self.on_tick().await?,
            request = self.io.requests.recv() => match request {
                Some(request) => self.on_request(request).await?,
                // Every handle was dropped.
                None => self.stopping = true,
            },
        }
        self.drain_waiting().await?;
        while self.raft.has_ready() {
            let ready = self.raft.ready();
            self.handle_ready(ready).await?;
        }
        // The core accepts a snapshot in the Ready after the step that
        // delivered it; the ones it did not accept are discarded.
        self.staged.clear();
        if self.metrics_stale {
            self.publish_metrics(None);
        }
        Ok(())
    }

    async fn drain_waiting(&mut self) -> Result<(), StopReason> {
        while let Ok(event) = self.io.events.try_recv() {
            self.on_event(event).await?;
        }
        for _ in 0..self.config.inbox_batches_max {
            let Ok(inbound) = self.io.inbox.try_recv() else {
                break;
            };
            self.on_inbound(inbound);
        }
        for _ in 0..self.config.batch_requests_max {
            let Ok(request) = self.io.requests.try_recv() else {
                break;
            };
            self.on_request(request).await?;
        }
        Ok(())
    }

    async fn handle_ready(&mut self, ready: Ready) -> Result<(), StopReason> {
        if let Some(soft) = &ready.soft_state {
            self.on_soft_state(soft);
        }
        let persisted_up_to = ready.persisted_up_to();
        for m in ready.messages {
            self.send(m);
        }
        let install = ready.snapshot.clone();
        if let Some(meta) = &install {
            // Published before the storage thread compacts the log to it.
            self.publish_staged(meta).await?;
        }
        let must_write = ready.snapshot.is_some()
            || !ready.entries.is_empty()
            || ready.hard_state.is_some()
            || !ready.persisted_messages.is_empty();
        if must_write {
            // Messages with nothing of their own to write still go through
            // the storage queue: they may vouch for entries of an earlier
            // write that is still in flight.
            self.write_seq += 1;
            let batch = WriteBatch {
                seq: self.write_seq,
                snapshot: ready.snapshot,
                entries: ready.entries,
                hard_state: ready.hard_state,
                persisted_up_to,
                messages: ready.persisted_messages,
            };
            self.queue_storage(StorageOp::Write(batch)).await?;
        }
        if let Some(meta) = install {
            self.install_snapshot(meta).await?;
        }
        if !ready.committed_entries.is_empty() {
            let waiters = ready
                .committed_entries
                .iter()
                .filter_map(|e| Some((e.index, self.proposals.take_committed(e.index, e.term)?)))
                .collect();
            let op = ApplyOp::Entries {
                entries: ready.committed_entries,
                waiters,
            };
            self.queue_apply(op).await?;
        }
        for read in ready.reads {
            self.release_read(read).await?;
        }
        Ok(())
    }

    /// Publishes the staged snapshot the core accepted.
    async fn publish_staged(&mut self, meta: &SnapshotMeta) -> Result<(), StopReason> {
        let at = self
            .staged
            .iter()
            .position(|s| s.meta() == meta)
            .expect("the core installs only snapshots stepped in this turn, each staged");
        let staged = self.staged.swap_remove(at);
        tokio::task::spawn_blocking(move || staged.publish())
            .await
            .map_err(|_| StopReason::ThreadEnded("snapshot publishing"))?
            .map_err(|e| StopReason::Storage(Arc::new(e)))?;
        Ok(())
    }

    /// A snapshot from the leader replaces the state machine, but only once
    /// the log records it: a crash in between must not leave the machine
    /// ahead of a log that cannot explain it.
    async fn install_snapshot(&mut self, meta: SnapshotMeta) -> Result<(), StopReason> {
        while self.persisted_seq < self.write_seq {
            let event = self
                .io
                .events
                .recv()
                .await
                .expect("the driver holds a sender");
            self.on_event(event).await?;
        }
        self.proposals.covered_by_snapshot(meta.index);
        self.snapshots_installed += 1;
        info!(index = %meta.index, term = %meta.term, "installing the leader's snapshot");
        self.queue_apply(ApplyOp::Restore(meta)).await
    }

    async fn on_event(&mut self, event: Event) -> Result<(), StopReason> {
        match event {
            Event::Persisted {
                seq,
                up_to,
                messages,
            } => {
                assert_eq!(seq, self.persisted_seq + 1, "writes complete in order");
                self.persisted_seq = seq;
                if let Some((index, term)) = up_to {
                    self.raft.persisted(index, term);
                }
                for m in messages {
                    self.send(m);
                }
            }
            Event::Applied(index) => {
                self.raft.applied(index);
                self.metrics_stale = true;
            }
            Event::SnapshotCreated(meta) => {
                let (index, term) = (meta.index, meta.term);
                self.raft.snapshot_created(meta);
                self.snapshots_created += 1;
                self.queue_storage(StorageOp::Compact { index, term })
                    .await?;
            }
            Event::SnapshotSent { to, ok } => {
                self.snapshot_sends.remove(&to);
                self.raft.report_snapshot(to, ok);
            }
            Event::Fatal(reason) => return Err(reason),
        }
        Ok(())
    }

    fn on_inbound(&mut self, inbound: Inbound) {
        match inbound {
            Inbound::Messages(messages) => {
                for m in messages {
                    self.step(m);
                }
            }
            Inbound::SnapshotReady(ready) => {
                let (m, staged) = *ready;
                self.staged.push(staged);
                self.step(m);
            }
        }
    }

    fn step(&mut self, m: Message) {
        if let Err(e) = self.raft.step(m) {
            warn!(error = %e, "dropped a message");
        }
    }

    /// Gives the core every tick of monotonic time elapsed since the last.
    fn tick_core(&mut self, now: Instant) {
        for _ in 0..self.clock.due(now) {
            self.raft.tick();
        }
    }

    async fn on_tick(&mut self) -> Result<(), StopReason> {
        let now = Instant::now();
        self.tick_core(now);
        self.proposals
            .expire(now, self.config.unknown_outcome_timeout);
        while let Some(entry) = self.reads.first_entry() {
            if now.duration_since(entry.get().0) < self.config.request_timeout {
                break;
            }
            let (_, read) = entry.remove();
            read(Err(Error::Timeout));
        }
        let version = self.io.transport.peers_version();
        if version != self.peers_version_saved {
            self.peers_version_saved = version;
            let book = self.io.transport.peers();
            self.queue_storage(StorageOp::SavePeers(book)).await?;
        }
        self.metrics_stale = true;
        Ok(())
    }

    async fn on_request(&mut self, request: Request<S>) -> Result<(), StopReason> {
        match request {
            Request::Propose { data, responder } => {
                self.propose(responder, |raft| raft.propose(data));
            }
            Request::ChangeMembership { change, responder } => {
                self.propose(responder, |raft| raft.propose_membership(change));
            }
            Request::Read { consistency, read } => {
                let mode = match consistency {
                    ReadConsistency::Stale => return self.queue_apply(ApplyOp::Read(read)).await,
                    ReadConsistency::Linearizable => ReadMode::ReadIndex,
                    ReadConsistency::Lease => ReadMode::Lease,
                };
                if self.reads.len() >= self.config.pending_proposals_max {
                    read(Err(Error::Overloaded));
                    return Ok(());
                }
                let id = ReadId(self.next_read_id);
                self.next_read_id += 1;
                let now = Instant::now();
                if mode == ReadMode::Lease {
                    // The lease is judged in ticks: bring them up to now.
                    self.tick_core(now);
                }
                self.reads.insert(id, (now, read));
                self.raft.read(id, mode);
            }
            Request::TransferLeader { target, reply } => {
                let _ = reply.send(self.raft.transfer_leader(target).map_err(Error::from));
            }
            Request::Shutdown => self.stopping = true,
        }
        Ok(())
    }

    fn propose(
        &mut self,
        responder: Responder,
        append: impl FnOnce(&mut Raft) -> Result<keel_raft::Proposal, keel_raft::ProposeError>,
    ) {
        if self.proposals.is_full() {
            let _ = responder.send(Err(Error::Overloaded));
            return;
        }
        match append(&mut self.raft) {
            Ok(proposal) => self.proposals.insert(proposal, responder),
            Err(e) => {
                let _ = responder.send(Err(e.into()));
            }
        }
    }

    async fn release_read(&mut self, outcome: ReadOutcome) -> Result<(), StopReason> {
        let Some((_, read)) = self.reads.remove(&outcome.id) else {
            return Ok(()); // timed out meanwhile
        };
        match outcome.result {
            // The apply queue runs it after every entry queued before it,
            // which covers everything the read must observe.
            Ok(_) => self.queue_apply(ApplyOp::Read(read)).await,
            Err(e) => {
                read(Err(e.into()));
                Ok(())
            }
        }
    }

    fn on_soft_state(&mut self, soft: &SoftState) {
        let leading = soft.role == Role::Leader;
        if self.leading && !leading {
            // Entries this node appended may yet commit under the next
            // leader, or be replaced: wait a while for their fate.
            self.proposals.orphan_all(Instant::now());
        }
        if leading != self.leading {
            info!(term = %soft.term, role = %soft.role, leader = ?soft.leader, "role changed");
        } else {
            debug!(term = %soft.term, role = %soft.role, leader = ?soft.leader, "soft state changed");
        }
        self.leading = leading;
        self.metrics_stale = true;
    }

    fn send(&mut self, m: Message) {
        if matches!(m.body, MessageBody::InstallSnapshot { .. }) {
            // One transfer per peer at a time; the core waits for its report.
            if self.snapshot_sends.insert(m.to) {
                let io = &self.io;
                let task = snapshot::send(
                    io.transport.clone(),
                    io.snapshots.clone(),
                    m,
                    io.events_tx.clone(),
                );
                tokio::spawn(task);
            }
            return;
        }
        let to = m.to;
        let replicating = matches!(m.body, MessageBody::AppendEntries { .. });
        if let Err(e) = self.io.transport.send(m) {
            trace!(error = %e, "message dropped");
            if replicating {
                // Stop streaming into the void: probe until the peer answers.
                self.raft.report_unreachable(to);
            }
        }
    }

    async fn queue_storage(&mut self, op: StorageOp) -> Result<(), StopReason> {
        if self.io.storage.send(op).await.is_err() {
            return Err(self.reason_thread_ended("storage"));
        }
        Ok(())
    }

    async fn queue_apply(&mut self, op: ApplyOp<S>) -> Result<(), StopReason> {
        if self.io.apply.send(op).await.is_err() {
            return Err(self.reason_thread_ended("apply"));
        }
        Ok(())
    }

    /// A thread that ended on its own reported why first; find it.
    fn reason_thread_ended(&mut self, thread: &'static str) -> StopReason {
        while let Ok(event) = self.io.events.try_recv() {
            if let Event::Fatal(reason) = event {
                return reason;
            }
        }
        StopReason::ThreadEnded(thread)
    }

    fn publish_metrics(&mut self, stopped: Option<&StopReason>) {
        let mut m = Metrics::from_status(self.raft.status());
        m.pending_proposals = self.proposals.len();
        m.proposals_committed = self.proposals.committed();
        m.proposals_failed = self.proposals.failed();
        m.snapshots_created = self.snapshots_created;
        m.snapshots_installed = self.snapshots_installed;
        m.transport = self.io.transport.metrics();
        m.log_append = self.io.log_timings.append.snapshot();
        m.log_sync = self.io.log_timings.sync.snapshot();
        m.stopped = stopped.map(ToString::to_string);
        self.io.metrics.send_if_modified(|current| {
            let changed = *current != m;
            if changed {
                *current = m;
            }
            changed
        });
        self.metrics_stale = false;
    }

    /// Graceful stop: refuse peers, let the storage thread finish every
    /// write already handed to it (so nothing acknowledged is lost), let the
    /// apply thread finish its queue (so committed proposals get their
    /// answers), and fail everything else.
    async fn stop(mut self, reason: StopReason) -> StopReason {
        info!(id = %self.raft.id(), %reason, "node stopping");
        let _ = self.io.stop_reason.set(reason.clone());
        let error = Error::Stopped(reason.clone());
        self.proposals.fail_all(&error);
        for (_, (_, read)) in std::mem::take(&mut self.reads) {
            read(Err(error.clone()));
        }
        self.publish_metrics(Some(&reason));
        let Wiring {
            transport,
            storage,
            apply,
            threads,
            metrics,
            stop_server,
            ..
        } = self.io;
        let _ = stop_server.send(());
        transport.clear_peers();
        drop(storage);
        drop(apply);
        let joined =
            tokio::task::spawn_blocking(move || threads.into_iter().all(|t| t.join().is_ok()))
                .await;
        if !matches!(joined, Ok(true)) {
            warn!("a node thread panicked while stopping");
        }
        metrics.send_modify(|m| m.stopped = Some(reason.to_string()));
        reason
    }
}

/// The first read id of this incarnation: the wall clock in nanoseconds.
/// It grows between restarts faster than any node issues reads (less than
/// one per nanosecond), so no incarnation reuses an id of an earlier one
/// unless the wall clock is set back by more than the node's uptime.
fn read_id_origin() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX / 2)
        })
}
