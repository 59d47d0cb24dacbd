//! The node loop: the deterministic part of a running node.
//!
//! It owns the Raft core, the proposals waiting for their entries, the
//! reads waiting for the core, the tick clock and the sequencing of writes
//! and applies. It takes [`Input`]s that carry the time ([`Moment`]) and
//! leaves [`Effect`]s for whoever drives it to execute, in order. It reads
//! no clock, spawns nothing, touches no file or socket: the runtime's
//! driver task runs it over tokio, threads and the network, and the
//! simulator runs the very same loop over a simulated disk, network and
//! clock, so that what the simulator checks is what members run.
//!
//! The contract of the effects, in the order a [`Ready`] demands:
//!
//! 1. [`Effect::Send`] leaves at once — a leader's AppendEntries go out
//!    while its own write of the same entries is still in flight;
//! 2. [`Effect::Write`] batches are made durable in order; when batch `seq`
//!    (and every one before it) is durable, report [`Input::Persisted`]
//!    with what the batch made durable ([`DurableWrite::after_sync`], which
//!    takes the store's proof) and its `messages`, which the loop then
//!    sends (votes and acknowledgements wait for durability, §5.2) — or
//!    send them itself once the batch is durable and report none, as the
//!    runtime's storage thread does to spare them a trip through the
//!    driver;
//! 3. [`Effect::Apply`] ops run against the state machine in the order
//!    given; report [`Input::Applied`] as they complete;
//! 4. [`Effect::PublishSnapshot`] publishes the staged snapshot the core
//!    accepted, before the write batch that follows it compacts the log;
//! 5. [`Effect::SetPeers`] gives the transport the addresses of the
//!    configuration in force, before the messages that may need them.
//!
//! The loop does not wait for a write before taking the next Ready
//! (pipelining): several batches may be in flight.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use keel_raft::{
    HardState, LogIndex, Membership, MembershipChange, Message, MessageBody, NodeId, Proposal,
    ProposeError, Raft, ReadId, Ready, Role, SnapshotMeta, SoftState, Term,
};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

pub use crate::apply::{Applier, ApplyOp, ReadFn, SnapshotReply, SnapshotTaken};
pub use crate::clock::Moment;
pub use crate::proposals::Responder;
pub use crate::restore::resume_from;
pub use crate::write_batch::{DurableWrite, WriteBatch};
use lifecycle::LifecycleWaiters;
pub use lifecycle::{InitializeReply, PurgeReply};
pub use reads::IndexReply;
use reads::ReadWaiter;

use crate::clock::TickClock;
use crate::config::Config;
use crate::consistency::ReadConsistency;
use crate::error::Error;
use crate::metrics::{ElectionCounters, Metrics};
use crate::proposals::Proposals;
use crate::state_machine::StateMachine;

/// What an application asks of its node.
pub enum Request<S: StateMachine> {
    /// Append a command; `responder` gets the state machine's response.
    Propose {
        /// The command, as the state machine will receive it.
        data: Bytes,
        /// Where the response goes.
        responder: Responder<S::Response>,
    },
    /// Change the configuration; `responder` hears once it took effect.
    ChangeMembership {
        /// The change asked for.
        change: MembershipChange,
        /// Where the outcome goes.
        responder: Responder<S::Response>,
    },
    /// Run `read` against the state machine once `consistency` allows.
    Read {
        /// What the read must observe.
        consistency: ReadConsistency,
        /// The read, handed the machine or the reason it cannot run.
        read: ReadFn<S>,
    },
    /// Confirm the index a linearizable read must observe (ReadIndex,
    /// §6.4) and send it to `reply` once `wait` allows.
    ReadIndex {
        /// How long to wait before answering.
        wait: ReadIndexWait,
        /// Where the index goes.
        reply: IndexReply,
    },
    /// Hand leadership to `target` (§3.10); `reply` hears once it leads,
    /// or why not.
    TransferLeader {
        /// The member to take over.
        target: NodeId,
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<(), Error>>,
    },
    /// Snapshot the state machine after every apply already asked for,
    /// whatever the snapshot policy says; `reply` gets the index it covers
    /// once it is stored.
    Snapshot {
        /// Where the index goes.
        reply: SnapshotReply,
    },
    /// Found a cluster of `membership` on a node started without one
    /// ([`Raft::initialize`]); `reply` hears once the founding entry is
    /// durable, or why nothing was written.
    Initialize {
        /// The founding configuration.
        membership: Membership,
        /// Where the outcome goes.
        reply: InitializeReply,
    },
    /// Discard the log through `upto`, which a stored snapshot must cover;
    /// `reply` gets the index the log now starts after, once durable.
    PurgeLog {
        /// The last entry to discard.
        upto: LogIndex,
        /// Where the outcome goes.
        reply: PurgeReply,
    },
    /// Stop: finish the writes under way, answer what committed.
    Shutdown,
}

/// How long a [`Request::ReadIndex`] waits before it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadIndexWait {
    /// Until a heartbeat round confirmed the index: the caller waits for
    /// its state to reach it.
    Confirmed,
    /// Until this node's state machine has applied the confirmed index.
    Applied,
}

/// Everything that happens to a node, in the order it happened.
pub enum Input<S: StateMachine> {
    /// Time passed; the loop ticks the core for every interval elapsed.
    Tick,
    /// The application asks something.
    Request(Request<S>),
    /// Messages from peers.
    Messages(Vec<Message>),
    /// A leader's snapshot arrived whole and is staged (durable, not yet
    /// published): step its InstallSnapshot message in. If the core accepts
    /// it, the next effects hold [`Effect::PublishSnapshot`] for it; a
    /// staged snapshot not published by the end of [`NodeLoop::effects`]
    /// was refused and may be discarded.
    SnapshotStaged(Message),
    /// Write batch `seq` (and every one before it) is durable; `durable`
    /// is what it made durable, with the store's proof, if it held entries
    /// or a snapshot.
    Persisted {
        /// The batch's [`WriteBatch::seq`].
        seq: u64,
        /// What it made durable, with the proof.
        durable: Option<DurableWrite>,
        /// The batch's [`WriteBatch::messages`], free to leave now.
        messages: Vec<Message>,
    },
    /// The state machine applied every entry through this index.
    Applied(LogIndex),
    /// A snapshot of the state machine is published.
    SnapshotCreated(SnapshotMeta),
    /// A snapshot transfer to a peer ended.
    SnapshotSent {
        /// The peer it went to.
        to: NodeId,
        /// Whether the peer received it whole.
        ok: bool,
    },
    /// A message to this peer could not be sent: stop streaming
    /// AppendEntries into the void and probe until it answers.
    Unreachable(NodeId),
    /// The stream of messages from this peer ended: if it leads, it may be
    /// gone (fast failover, [`keel_raft::Config::fast_failover`]).
    Disconnected(NodeId),
}

/// What the loop asks its driver to do, in order.
pub enum Effect<S: StateMachine> {
    /// Send a message now.
    Send(Message),
    /// Stream the stored snapshot this InstallSnapshot names to its
    /// recipient, then report [`Input::SnapshotSent`]. At most one transfer
    /// per peer runs at a time.
    SendSnapshot(Message),
    /// Publish the staged snapshot with this metadata.
    PublishSnapshot(SnapshotMeta),
    /// Make this batch durable after every earlier one.
    Write(WriteBatch),
    /// A snapshot through `(index, term)` is published: the log it covers
    /// may be discarded. Taking a snapshot compacts the log to the one
    /// taken before it (see `NodeLoop::uncompacted`).
    Compact {
        /// The last entry the snapshot covers.
        index: LogIndex,
        /// Its term.
        term: Term,
    },
    /// Run this against the state machine after every earlier apply op.
    Apply(ApplyOp<S>),
    /// The configuration in force records these addresses, new or changed
    /// since the last `SetPeers` (or since the start): give each to the
    /// transport ([`crate::Transport::set_peer`]) before executing the
    /// effects after it. This node's own address is never among them.
    SetPeers(BTreeMap<NodeId, String>),
}

/// The deterministic core of a node; see the module documentation.
pub struct NodeLoop<S: StateMachine> {
    raft: Raft,
    config: Config,
    proposals: Proposals<S::Response>,
    /// Linearizable reads waiting for the core, with when they were asked.
    reads: BTreeMap<ReadId, (Moment, ReadWaiter<S>)>,
    /// Starts at a value no earlier incarnation of this node used, so that
    /// a late answer to a read forwarded before a restart cannot be taken
    /// for the answer to a new one.
    next_read_id: u64,
    /// How many ticks the core is owed: time, not timer firings.
    clock: TickClock,
    /// The last write batch handed out, and the last one durable.
    write_seq: u64,
    persisted_seq: u64,
    /// The term and vote of the last hard state handed to storage. A hard
    /// state that moves only the commit index needs no fsync: the commit
    /// index is volatile state (Raft §5, Figure 2) that a restarted node
    /// learns again from its leader, and the state machine's own applied
    /// index covers what it already holds.
    written_vote: (Term, Option<NodeId>),
    /// A hard state that moved only the commit index while no write was in
    /// flight, not yet handed to storage: it rides with the next write
    /// instead of waking the storage thread on its own (the commit index
    /// is volatile, so losing it in a crash is no worse than losing it
    /// unsynced).
    unwritten_commit: Option<HardState>,
    /// Apply ops that wait for a write: a leader's snapshot replaces the
    /// state machine only once the log records it (a crash in between
    /// must not leave the machine ahead of a log that cannot explain it),
    /// and everything after it waits behind it. Each op carries the write
    /// sequence that must be durable first (0: none).
    held: VecDeque<(u64, ApplyOp<S>)>,
    /// Peers a snapshot transfer is running to.
    snapshot_sends: BTreeSet<NodeId>,
    /// Leaders' snapshots staged since the last [`NodeLoop::effects`].
    staged: Vec<SnapshotMeta>,
    /// The newest snapshot this node took, to which the log is not yet
    /// compacted. The log is compacted one snapshot behind: a follower
    /// that fell behind by less than a snapshot interval (a restart, a
    /// pause, a slow disk) catches up from the log instead of receiving
    /// the whole state machine — which, for a large store under load, can
    /// take longer than the next snapshot interval, so that it never
    /// catches up. Only while the previous snapshot is kept on disk
    /// (`snapshots_kept` ≥ 2), since that is the one a lagging follower
    /// is then sent.
    uncompacted: Option<SnapshotMeta>,
    /// The store's log starts after this index: the core's snapshot, or
    /// further where [`Request::PurgeLog`] discarded more of the store.
    purged_through: LogIndex,
    /// Lifecycle requests waiting for their change to be durable.
    lifecycle: LifecycleWaiters,
    /// The peers' addresses last handed out in [`Effect::SetPeers`]: the
    /// transport follows the configuration in force, whichever way it
    /// changed (an entry appended or truncated, a snapshot installed).
    peers_announced: BTreeMap<NodeId, String>,
    /// Whether [`NodeLoop::effects`] ran once (and announced the peers of
    /// the configuration the node started with).
    started: bool,
    effects: Vec<Effect<S>>,
    leading: bool,
    snapshots_created: u64,
    snapshots_installed: u64,
    elections: ElectionCounters,
    metrics_stale: bool,
    stopping: bool,
}

impl<S: StateMachine> NodeLoop<S> {
    /// A loop over `raft`, started at [`Moment::ZERO`]. `read_id_origin`
    /// must exceed every read id an earlier incarnation of this node used.
    pub fn new(raft: Raft, config: Config, read_id_origin: u64) -> NodeLoop<S> {
        let restored = raft.status();
        let written_vote = (restored.term, restored.vote);
        let purged_through = restored.first_index.prev();
        NodeLoop {
            raft,
            proposals: Proposals::new(config.pending_proposals_max),
            reads: BTreeMap::new(),
            next_read_id: read_id_origin,
            clock: TickClock::new(config.tick_interval, config.raft.election_ticks),
            write_seq: 0,
            persisted_seq: 0,
            written_vote,
            unwritten_commit: None,
            held: VecDeque::new(),
            snapshot_sends: BTreeSet::new(),
            staged: Vec::new(),
            uncompacted: None,
            purged_through,
            lifecycle: LifecycleWaiters::default(),
            peers_announced: BTreeMap::new(),
            started: false,
            effects: Vec::new(),
            leading: false,
            snapshots_created: 0,
            snapshots_installed: 0,
            elections: ElectionCounters::default(),
            metrics_stale: true,
            stopping: false,
            config,
        }
    }

    /// The Raft core, for inspection (the simulator's invariants).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// A [`Request::Shutdown`] arrived.
    pub fn stopping(&self) -> bool {
        self.stopping
    }

    /// Takes one input that happened at `now`.
    pub fn handle(&mut self, now: Moment, input: Input<S>) {
        match input {
            Input::Tick => self.on_tick(now),
            Input::Request(request) => self.on_request(now, request),
            Input::Messages(messages) => {
                for m in messages {
                    self.step(m);
                }
            }
            Input::SnapshotStaged(m) => {
                if let MessageBody::InstallSnapshot { meta } = &m.body {
                    self.staged.push(meta.clone());
                }
                self.step(m);
            }
            Input::Persisted {
                seq,
                durable,
                messages,
            } => self.on_persisted(seq, durable, messages),
            Input::Applied(index) => {
                self.raft.applied(index);
                self.metrics_stale = true;
            }
            Input::SnapshotCreated(meta) => {
                self.snapshots_created += 1;
                self.metrics_stale = true;
                let compact_to = if self.config.snapshots_kept >= 2 {
                    self.uncompacted.replace(meta)
                } else {
                    Some(meta)
                };
                if let Some(meta) = compact_to {
                    self.compact(meta);
                }
            }
            Input::SnapshotSent { to, ok } => {
                self.snapshot_sends.remove(&to);
                self.raft.report_snapshot(to, ok);
            }
            Input::Unreachable(to) => self.raft.report_unreachable(to),
            Input::Disconnected(peer) => self.raft.peer_disconnected(peer),
        }
        self.elections.observe(self.raft.role(), self.raft.term());
    }

    /// Everything the inputs so far call for, in the order to execute it.
    /// Staged snapshots the core did not accept are forgotten.
    pub fn effects(&mut self, now: Moment) -> Vec<Effect<S>> {
        if !self.started {
            // The configuration restored at start, announced once.
            self.started = true;
            self.announce_peers();
        }
        while self.raft.has_ready() {
            let ready = self.raft.ready();
            self.on_ready(now, ready);
        }
        // The core accepts a snapshot in the Ready after the step that
        // delivered it.
        self.staged.clear();
        std::mem::take(&mut self.effects)
    }

    /// Whether something a metrics reader sees changed since the last
    /// [`NodeLoop::metrics`].
    pub fn metrics_stale(&self) -> bool {
        self.metrics_stale
    }

    /// The node's state, less what only the driver knows (transport and
    /// log timings).
    pub fn metrics(&mut self) -> Metrics {
        self.metrics_stale = false;
        let mut m = Metrics::from_status(self.raft.status());
        m.pending_proposals = self.proposals.len();
        m.proposals_committed = self.proposals.committed();
        m.proposals_failed = self.proposals.failed();
        m.snapshots_created = self.snapshots_created;
        m.snapshots_installed = self.snapshots_installed;
        m.elections = self.elections;
        m
    }

    /// Fails every proposal and read still waiting: the node stops.
    pub fn fail_all(&mut self, error: &Error) {
        self.proposals.fail_all(error);
        for (_, (_, waiter)) in std::mem::take(&mut self.reads) {
            waiter.fail(error.clone());
        }
        for (_, op) in std::mem::take(&mut self.held) {
            op.fail(error);
        }
        self.lifecycle.fail_all(error);
    }

    fn on_ready(&mut self, now: Moment, ready: Ready) {
        if let Some(soft) = &ready.soft_state {
            self.on_soft_state(now, soft);
        }
        let persisted_up_to = ready.persisted_up_to();
        // Only a Ready that changed the log (or installed a snapshot) can
        // have changed the configuration, which takes effect when
        // appended; its messages may go to a member just added.
        if ready.snapshot.is_some() || !ready.entries.is_empty() {
            self.announce_peers();
        }
        for m in ready.messages {
            self.send(m);
        }
        let install = ready.snapshot.clone();
        if let Some(meta) = &install {
            let at = self
                .staged
                .iter()
                .position(|s| s == meta)
                .expect("the core installs only snapshots stepped in since the last effects");
            self.staged.swap_remove(at);
            // Published before the write that compacts the log to it.
            self.effects.push(Effect::PublishSnapshot(meta.clone()));
        }
        let must_write = ready.snapshot.is_some()
            || !ready.entries.is_empty()
            || ready.hard_state.is_some()
            || !ready.persisted_messages.is_empty();
        if must_write {
            // Messages with nothing of their own to write go through the
            // write queue while an earlier write is in flight: they may
            // vouch for its entries.
            let vote_changed = ready
                .hard_state
                .as_ref()
                .is_some_and(|hs| (hs.term, hs.vote) != self.written_vote);
            if let Some(hs) = &ready.hard_state {
                self.written_vote = (hs.term, hs.vote);
            }
            // Messages alone need no sync: what they vouch for (entries, a
            // snapshot, a vote) was written by this batch or an earlier
            // one, which is synced before they leave.
            let must_sync = vote_changed || ready.snapshot.is_some() || !ready.entries.is_empty();
            if !must_sync && self.persisted_seq == self.write_seq {
                // Nothing to sync and every earlier write is durable: what
                // the messages vouch for is on disk already, so they leave
                // now, and the commit index waits for the next write.
                self.unwritten_commit = ready.hard_state.or(self.unwritten_commit.take());
                for m in ready.persisted_messages {
                    self.send(m);
                }
            } else {
                self.write(WriteBatch {
                    seq: 0,
                    must_sync,
                    snapshot: ready.snapshot,
                    entries: ready.entries,
                    hard_state: ready.hard_state,
                    persisted_up_to,
                    messages: ready.persisted_messages,
                });
            }
        }
        if let Some(meta) = install {
            self.proposals.covered_by_snapshot(meta.index);
            self.purged_through = self.purged_through.max(meta.index);
            self.snapshots_installed += 1;
            // Published with this turn: a reader that saw the restored
            // state must not find the count behind it.
            self.metrics_stale = true;
            info!(index = %meta.index, term = %meta.term, "installing the leader's snapshot");
            self.apply_after(self.write_seq, ApplyOp::Restore(meta));
        }
        if !ready.committed_entries.is_empty() {
            let waiters = ready
                .committed_entries
                .iter()
                .filter_map(|e| Some((e.index, self.proposals.take_committed(e.index, e.term)?)))
                .collect();
            self.apply(ApplyOp::Entries {
                entries: ready.committed_entries,
                waiters,
            });
        }
        for read in ready.reads {
            self.release_read(read);
        }
    }

    /// Hands `batch` to storage as the next write, with the commit index
    /// left unwritten before it unless the batch records a newer one.
    fn write(&mut self, mut batch: WriteBatch) {
        let unwritten = self.unwritten_commit.take();
        batch.hard_state = batch.hard_state.or(unwritten);
        self.write_seq += 1;
        batch.seq = self.write_seq;
        #[cfg(feature = "fault-injection")]
        let batch = self.acknowledge_early(batch);
        self.effects.push(Effect::Write(batch));
    }

    /// Hands the transport the configuration's addresses that changed
    /// since the last announcement.
    fn announce_peers(&mut self) {
        let addresses = self.raft.membership().addresses();
        if *addresses == self.peers_announced {
            return;
        }
        let me = self.raft.id();
        let changed: BTreeMap<NodeId, String> = addresses
            .iter()
            .filter(|&(&id, addr)| id != me && self.peers_announced.get(&id) != Some(addr))
            .map(|(&id, addr)| (id, addr.clone()))
            .collect();
        self.peers_announced = addresses.clone();
        if !changed.is_empty() {
            debug!(?changed, "the configuration's peer addresses changed");
            self.effects.push(Effect::SetPeers(changed));
        }
    }

    fn on_persisted(&mut self, seq: u64, durable: Option<DurableWrite>, messages: Vec<Message>) {
        assert_eq!(seq, self.persisted_seq + 1, "writes complete in order");
        self.persisted_seq = seq;
        if let Some(write) = durable {
            self.raft.persisted(write.up_to, &write.proof);
        }
        for m in messages {
            self.send(m);
        }
        while self
            .held
            .front()
            .is_some_and(|(after, _)| *after <= self.persisted_seq)
        {
            let (_, op) = self.held.pop_front().expect("checked above");
            self.effects.push(Effect::Apply(op));
        }
        self.answer_durable_lifecycle();
    }

    /// Queues `op` behind every apply op before it.
    fn apply(&mut self, op: ApplyOp<S>) {
        self.apply_after(0, op);
    }

    /// Queues `op` behind every apply op before it, once write batch
    /// `write_seq` is durable.
    fn apply_after(&mut self, write_seq: u64, op: ApplyOp<S>) {
        if self.held.is_empty() && write_seq <= self.persisted_seq {
            self.effects.push(Effect::Apply(op));
        } else {
            self.held.push_back((write_seq, op));
        }
    }

    /// Forgets the log that the snapshot `meta` covers, unless the core
    /// already holds a later snapshot (one installed from a leader).
    fn compact(&mut self, meta: SnapshotMeta) {
        if meta.index < self.raft.status().first_index {
            return;
        }
        let (index, term) = (meta.index, meta.term);
        self.raft.snapshot_created(meta);
        self.effects.push(Effect::Compact { index, term });
        self.purged_through = self.purged_through.max(index);
    }

    fn step(&mut self, m: Message) {
        if let Err(e) = self.raft.step(m) {
            warn!(error = %e, "dropped a message");
        }
    }

    /// Gives the core every tick of time elapsed since the last.
    fn tick_core(&mut self, now: Moment) {
        for _ in 0..self.clock.due(now) {
            self.raft.tick();
        }
    }

    fn on_tick(&mut self, now: Moment) {
        if self.ticks_follow_time() {
            self.tick_core(now);
        } else {
            self.raft.tick();
        }
        self.proposals
            .expire(now, self.config.unknown_outcome_timeout);
        self.expire_reads(now);
        self.metrics_stale = true;
    }

    fn on_request(&mut self, now: Moment, request: Request<S>) {
        match request {
            Request::Propose { data, responder } => {
                self.propose(responder, |raft| raft.propose(data));
            }
            Request::ChangeMembership { change, responder } => {
                self.propose(responder, |raft| raft.propose_membership(change));
            }
            Request::Read { consistency, read } => self.read(now, consistency, read),
            Request::ReadIndex { wait, reply } => self.read_index(now, wait, reply),
            Request::TransferLeader { target, reply } => {
                let _ = reply.send(self.raft.transfer_leader(target).map_err(Error::from));
            }
            Request::Snapshot { reply } => self.apply(ApplyOp::Snapshot(reply)),
            Request::Initialize { membership, reply } => self.initialize(membership, reply),
            Request::PurgeLog { upto, reply } => self.purge_log(upto, reply),
            Request::Shutdown => self.stopping = true,
        }
    }

    fn propose(
        &mut self,
        responder: Responder<S::Response>,
        append: impl FnOnce(&mut Raft) -> Result<Proposal, ProposeError>,
    ) {
        if self.proposals.is_full() {
            responder.fail(Error::Overloaded);
            return;
        }
        match append(&mut self.raft) {
            Ok(proposal) => self.proposals.insert(proposal, responder),
            Err(e) => {
                responder.fail(e.into());
            }
        }
    }

    fn on_soft_state(&mut self, now: Moment, soft: &SoftState) {
        let leading = soft.role == Role::Leader;
        if self.leading && !leading {
            // Entries this node appended may yet commit under the next
            // leader, or be replaced: wait a while for their fate.
            self.proposals.orphan_all(now);
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
                self.effects.push(Effect::SendSnapshot(m));
            }
            return;
        }
        self.effects.push(Effect::Send(m));
    }

    /// Whether the core's ticks follow elapsed time (always, unless the
    /// `tick_per_timer` bug is switched on).
    fn ticks_follow_time(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        return !self.config.bugs.tick_per_timer;
        #[cfg(not(feature = "fault-injection"))]
        true
    }

    /// The `ack_before_fsync` bug: sends the batch's votes and
    /// acknowledgements before it is durable.
    #[cfg(feature = "fault-injection")]
    fn acknowledge_early(&mut self, mut batch: WriteBatch) -> WriteBatch {
        if self.config.bugs.ack_before_fsync {
            for m in std::mem::take(&mut batch.messages) {
                self.send(m);
            }
        }
        batch
    }
}

mod lifecycle;
mod reads;
#[cfg(test)]
mod tests;
