//! The full-stack event loop: one thread, virtual time, one seed.
//!
//! Members (`member.rs`) run the runtime's node loop and Keel KV's state
//! machine; the world owns time, the network between members, the faults
//! and the clients. Every event is ordered by virtual time and then by
//! insertion, so a run is a pure function of its seed and options.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use bytes::Bytes;
use keel::node_loop::{Input, ReadFn, Request};
use keel::{Error, ReadConsistency};
use keel_kv::replica::is_retryable;
use keel_linearizability::OpKind;
use keel_raft::{Membership, Message, NodeId, Role, Term};
use keel_storage::CrashKeep;
use tokio::sync::oneshot;

use super::calls::{
    CallKind, Client, Operation, ReadKind, certainly_not_written, read_value, write_output,
};
use super::checks::Checks;
use super::member::{Disk, Member, MemberFailure, Outgoing};
use super::{StackOptions, StackProfile, StackReport};
use crate::history::{ClientHistory, verdict};
use crate::network::{Network, NetworkProfile};
use crate::node::Reply;
use crate::rng::Rng;
use crate::time::{Micros, TICK};

/// How long the KV layer retries a request before answering the client.
const REQUEST_TIMEOUT: Micros = Micros(100 * TICK.0);
/// The KV layer's backoff between attempts: first and largest.
const BACKOFF_MIN: Micros = Micros(TICK.0);
const BACKOFF_MAX: Micros = Micros(20 * TICK.0);
/// Client to member and back: a reliable, short hop.
const CLIENT_HOP: Micros = Micros(200);

#[derive(Debug)]
enum Event {
    Tick(NodeId, u64),
    Sync(NodeId, u64),
    Apply(NodeId, u64),
    Deliver(NodeId, Message),
    DeliverSnapshot(NodeId, Message, Bytes),
    SnapshotReport {
        from: NodeId,
        incarnation: u64,
        to: NodeId,
        ok: bool,
    },
    /// A client's call reaches its member.
    CallArrives(u64),
    /// A follower's forwarded command reaches the member it believes leads.
    Forward {
        call: u64,
        to: NodeId,
    },
    /// The leader's answer to a forward reaches the call's member.
    ForwardReply {
        call: u64,
        reply: ForwardReply,
    },
    CallRetry(u64),
    CallDeadline(u64),
    ClientWake(usize),
    Fault,
    Crash(NodeId),
    Restart(NodeId),
    Resume(NodeId),
    /// Links slowed in this epoch are fast again.
    LinksRecovered(u64),
    HealNetwork(u64),
    Heal,
}

#[derive(Debug)]
enum ForwardReply {
    Applied(Bytes),
    /// Not appended by the leader: retry.
    Refused,
    Failed(Error),
}

struct Scheduled {
    at: Micros,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Reversed: the max-heap pops the earliest event first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A member's state in the world.
enum Slot {
    Up {
        member: Box<Member>,
        /// Frozen: events wait in `deferred` until it resumes.
        paused: bool,
        deferred: Vec<Event>,
    },
    Down(Disk),
}

/// Where a node's answer to a proposal arrives.
type ProposalAnswer = oneshot::Receiver<Result<Bytes, Error>>;

/// What a call waits for.
enum Waiting {
    /// On its way to the member, or backing off.
    Nothing,
    Proposal(ProposalAnswer),
    Read(oneshot::Receiver<Result<(), Error>>),
    /// Forwarded to the leader; its reply travels back.
    Forwarded,
}

/// One request inside the KV layer of its member.
struct Call {
    client: usize,
    operation: Operation,
    member: NodeId,
    /// The member's life the call belongs to; a crash ends the call.
    incarnation: u64,
    deadline: Micros,
    backoff: Micros,
    waiting: Waiting,
    /// The most recent error, reported if the deadline passes.
    last_error: Option<Error>,
}

pub(super) struct World {
    options: StackOptions,
    now: Micros,
    queue: BinaryHeap<Scheduled>,
    seq: u64,
    slots: BTreeMap<NodeId, Slot>,
    incarnations: BTreeMap<NodeId, u64>,
    drift_ppm: BTreeMap<NodeId, i64>,
    sync_latency: BTreeMap<NodeId, Micros>,
    config: keel::Config,
    network: Network,
    partition_epoch: u64,
    rng: Rng,
    clients: Vec<Client>,
    calls: BTreeMap<u64, Call>,
    /// A leader's proposals for forwarded calls, by call.
    forwarded: BTreeMap<u64, (NodeId, ProposalAnswer)>,
    next_call: u64,
    /// The member the pinned readers of the targeted profiles read from.
    pinned: Option<NodeId>,
    /// Extra delay on a directed link: `(from, to)`.
    slow_links: BTreeMap<(NodeId, NodeId), Micros>,
    slow_epoch: u64,
    history: ClientHistory,
    checks: Checks,
    /// The highest committed index whose durability was checked.
    durable_checked: keel_raft::LogIndex,
    healing: bool,
    /// A write was acknowledged after the cluster healed and settled.
    served_after_heal: bool,
    end_at: Micros,
    steps: u64,
    restarts: u64,
    pauses: u64,
    sync_failures: u64,
}

impl World {
    pub(super) fn new(seed: u64, options: StackOptions) -> World {
        let mut root = Rng::new(seed);
        let mut params = root.fork(1);
        let members = if params.chance(500) { 3 } else { 5 };
        let ids: Vec<NodeId> = (1..=members).map(NodeId).collect();
        let membership =
            Membership::new(ids.iter().copied(), []).expect("founding voters are valid");
        let mut config =
            keel::Config::new(NodeId(1), 1, "127.0.0.1:0".parse().expect("an address"));
        config.tick_interval = std::time::Duration::from_micros(TICK.0);
        config.election_ticks = 15;
        config.heartbeat_ticks = 3;
        config.snapshot_entries = *params.pick(&[40, 150, 1000]);
        config.unknown_outcome_timeout = std::time::Duration::from_micros(200 * TICK.0);
        config.request_timeout = std::time::Duration::from_micros(REQUEST_TIMEOUT.0);
        #[cfg(feature = "core-bugs")]
        {
            config.bugs = options.bugs.runtime.clone();
        }
        let mut fault_rng = root.fork(2);
        let profile = if options.faults {
            NetworkProfile::draw(&mut fault_rng)
        } else {
            NetworkProfile::calm()
        };
        let network = Network::new(root.fork(3), profile);
        let mut client_rng = root.fork(4);
        let (pinned_readers, pinned_reads) = match options.profile {
            StackProfile::Random => (0, None),
            StackProfile::PausedLeader => (2, Some(ReadKind::Lease)),
            StackProfile::RestartedReader => (2, Some(ReadKind::Linearizable)),
        };
        let clients = (0..params.between(3, 6) as usize + pinned_readers)
            .map(|c| {
                let rng = client_rng.fork(c as u64);
                let reads = pinned_reads.filter(|_| c < pinned_readers);
                Client::new(c as u32 + 1, rng, 3, reads)
            })
            .collect();
        let end_at = Micros::ticks(options.safety_ticks + options.heal_ticks);
        let mut world = World {
            now: Micros(0),
            queue: BinaryHeap::new(),
            seq: 0,
            slots: BTreeMap::new(),
            incarnations: BTreeMap::new(),
            drift_ppm: BTreeMap::new(),
            sync_latency: BTreeMap::new(),
            config,
            network,
            partition_epoch: 0,
            rng: fault_rng,
            clients,
            calls: BTreeMap::new(),
            forwarded: BTreeMap::new(),
            next_call: 0,
            pinned: None,
            slow_links: BTreeMap::new(),
            slow_epoch: 0,
            history: ClientHistory::default(),
            checks: Checks::default(),
            durable_checked: keel_raft::LogIndex(0),
            healing: false,
            served_after_heal: false,
            end_at,
            steps: 0,
            restarts: 0,
            pauses: 0,
            sync_failures: 0,
            options,
        };
        for &id in &ids {
            let mut disk = Disk::default();
            let meta = keel_raft::SnapshotMeta {
                index: keel_raft::LogIndex(0),
                term: Term(0),
                membership: membership.clone(),
            };
            disk.snapshots.insert(meta.index, (meta, Bytes::new()));
            // Clocks drift apart by less than the lease's margin for drift.
            let drift = params.between(0, 2_000) as i64 - 1_000;
            world.drift_ppm.insert(id, drift);
            world
                .sync_latency
                .insert(id, Micros(params.between(100, 2_000)));
            world.slots.insert(id, Slot::Down(disk));
            world.start(id);
        }
        for c in 0..world.clients.len() {
            world.schedule(Micros(params.between(0, 5 * TICK.0)), Event::ClientWake(c));
        }
        if world.options.faults {
            world.schedule_fault();
        }
        let heal_at = Micros::ticks(world.options.safety_ticks);
        world.schedule_at(heal_at, Event::Heal);
        world
    }

    pub(super) fn run(mut self) -> StackReport {
        while let Some(Scheduled { at, event, .. }) = self.queue.pop() {
            if at > self.end_at || self.checks.failure.is_some() {
                break;
            }
            self.now = at;
            self.steps += 1;
            self.on_event(event);
            self.poll_calls();
            self.check_leaders();
        }
        self.finish()
    }

    fn schedule(&mut self, after: Micros, event: Event) {
        self.schedule_at(self.now.plus(after), event);
    }

    fn schedule_at(&mut self, at: Micros, event: Event) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            event,
        });
    }

    fn incarnation(&self, id: NodeId) -> u64 {
        self.incarnations.get(&id).copied().unwrap_or(0)
    }

    /// Starts a life of `id` from its disk.
    fn start(&mut self, id: NodeId) {
        let Some(Slot::Down(_)) = self.slots.get(&id) else {
            return;
        };
        let Some(Slot::Down(disk)) = self.slots.remove(&id) else {
            unreachable!("checked above")
        };
        let incarnation = self.incarnation(id) + 1;
        self.incarnations.insert(id, incarnation);
        let mut config = self.config.clone();
        config.id = id;
        config.seed = id.0 ^ (incarnation << 32);
        let raft_config = config.raft();
        let read_id_origin = if self.options.bugs.read_ids_from_zero {
            0
        } else {
            incarnation << 40
        };
        let drift = self.drift_ppm[&id];
        match Member::start(
            id,
            disk,
            &config,
            raft_config,
            self.now,
            drift,
            read_id_origin,
        ) {
            Ok(member) => {
                self.slots.insert(
                    id,
                    Slot::Up {
                        member: Box::new(member),
                        paused: false,
                        deferred: Vec::new(),
                    },
                );
                self.schedule(TICK, Event::Tick(id, incarnation));
            }
            Err(e) => self.checks.fail(format!("member {id} cannot restart: {e}")),
        }
    }

    /// Kills `id`: its unsynced writes survive only as a prefix, possibly
    /// torn, and every call it held ends without an answer.
    fn crash(&mut self, id: NodeId) {
        if !self.is_up(id) {
            return;
        }
        let Some(Slot::Up { member, .. }) = self.slots.remove(&id) else {
            unreachable!("checked above")
        };
        let mut disk = member.into_disk();
        let unsynced = disk.log.unsynced_writes();
        let writes = self.rng.below(unsynced as u64 + 1) as usize;
        let torn_entries = disk
            .log
            .unsynced_append_len(writes)
            .filter(|&len| len > 1 && self.rng.chance(300))
            .map_or(0, |len| self.rng.between(1, len as u64 - 1) as usize);
        disk.log.crash_keeping(CrashKeep {
            writes,
            torn_entries,
        });
        self.slots.insert(id, Slot::Down(disk));
        self.restarts += 1;
    }

    fn on_event(&mut self, event: Event) {
        let target = match &event {
            Event::Tick(id, _)
            | Event::Sync(id, _)
            | Event::Apply(id, _)
            | Event::Deliver(id, _)
            | Event::DeliverSnapshot(id, _, _)
            | Event::Forward { to: id, .. } => Some(*id),
            Event::SnapshotReport { from, .. } => Some(*from),
            Event::CallArrives(call) | Event::ForwardReply { call, .. } => {
                self.calls.get(call).map(|c| c.member)
            }
            _ => None,
        };
        if let Some(id) = target
            && let Some(Slot::Up {
                paused: true,
                deferred,
                ..
            }) = self.slots.get_mut(&id)
        {
            // A frozen process takes nothing in; its timer fires once
            // when it resumes.
            if !matches!(event, Event::Tick(..)) {
                deferred.push(event);
            }
            return;
        }
        match event {
            Event::Tick(id, inc) => {
                if self.incarnation(id) == inc && self.is_up(id) {
                    self.member_input(id, Input::Tick);
                    self.schedule(TICK, Event::Tick(id, inc));
                }
            }
            Event::Sync(id, inc) => {
                if self.incarnation(id) == inc {
                    self.with_member(id, |m, now, out| m.sync(now, out));
                }
            }
            Event::Apply(id, inc) => {
                if self.incarnation(id) == inc {
                    self.with_member(id, |m, now, out| m.apply_next(now, out));
                }
            }
            Event::Deliver(to, message) => self.member_input(to, Input::Messages(vec![message])),
            Event::DeliverSnapshot(to, message, data) => {
                self.with_member(to, |m, now, out| {
                    m.snapshot_arrived(now, message, data, out);
                    Ok(())
                });
            }
            Event::SnapshotReport {
                from,
                incarnation,
                to,
                ok,
            } => {
                if self.incarnation(from) == incarnation {
                    self.member_input(from, Input::SnapshotSent { to, ok });
                }
            }
            Event::CallArrives(call) => self.submit(call),
            Event::Forward { call, to } => self.forward_arrives(call, to),
            Event::ForwardReply { call, reply } => self.forward_reply(call, reply),
            Event::CallRetry(call) => self.submit(call),
            Event::CallDeadline(call) => self.deadline(call),
            Event::ClientWake(c) => self.client_wake(c),
            Event::Fault => self.fault(),
            Event::Crash(id) => self.crash(id),
            Event::Restart(id) => self.start(id),
            Event::LinksRecovered(epoch) => {
                if epoch == self.slow_epoch {
                    self.slow_links.clear();
                    self.pinned = None;
                }
            }
            Event::Resume(id) => self.resume(id),
            Event::HealNetwork(epoch) => {
                if epoch == self.partition_epoch {
                    self.network.heal();
                    self.pinned = None;
                }
            }
            Event::Heal => self.heal(),
        }
    }

    fn is_up(&self, id: NodeId) -> bool {
        matches!(self.slots.get(&id), Some(Slot::Up { .. }))
    }

    fn member_input(&mut self, id: NodeId, input: Input<keel_kv::replica::RaftMachine>) {
        self.with_member(id, |m, now, out| {
            m.input(now, input, out);
            Ok(())
        });
    }

    /// Runs `f` on member `id` if it is up, then carries out what it asks;
    /// a failure stops the member as a fatal error stops a real one.
    fn with_member(
        &mut self,
        id: NodeId,
        f: impl FnOnce(&mut Member, Micros, &mut Vec<Outgoing>) -> Result<(), MemberFailure>,
    ) {
        let now = self.now;
        let Some(Slot::Up { member, .. }) = self.slots.get_mut(&id) else {
            return;
        };
        let mut out = Vec::new();
        let result = f(member, now, &mut out);
        self.carry_out(id, out);
        if let Err(e) = result {
            // A real member stops and is restarted by its supervisor.
            self.checks.note(format!("member {id} stopped: {e}"));
            self.crash(id);
            self.schedule(Micros::ticks(5), Event::Restart(id));
        }
    }

    fn carry_out(&mut self, id: NodeId, out: Vec<Outgoing>) {
        let inc = self.incarnation(id);
        for o in out {
            match o {
                Outgoing::Message(m) => self.send(m),
                Outgoing::Snapshot(m, data) => self.send_snapshot(id, inc, m, data),
                Outgoing::SyncNeeded => {
                    let latency = self.sync_latency[&id];
                    self.schedule(latency, Event::Sync(id, inc));
                }
                Outgoing::ApplyNeeded => {
                    let delay = Micros(self.rng.between(10, 300));
                    self.schedule(delay, Event::Apply(id, inc));
                }
            }
        }
    }

    fn send(&mut self, m: Message) {
        let (from, to) = (m.from, m.to);
        if self.network.is_cut(from, to) {
            return;
        }
        let fate = self.network.send();
        let slow = self
            .slow_links
            .get(&(from, to))
            .copied()
            .unwrap_or_default();
        for delay in fate.delays {
            self.schedule(delay.plus(slow), Event::Deliver(to, m.clone()));
        }
    }

    fn send_snapshot(&mut self, from: NodeId, incarnation: u64, m: Message, data: Option<Bytes>) {
        let to = m.to;
        let delivered =
            data.is_some() && !self.network.is_cut(from, to) && !self.network.send().lost;
        let delay = Micros(self.rng.between(TICK.0, 5 * TICK.0));
        if let (true, Some(data)) = (delivered, data) {
            self.schedule(delay, Event::DeliverSnapshot(to, m, data));
        }
        let report = Event::SnapshotReport {
            from,
            incarnation,
            to,
            ok: delivered,
        };
        self.schedule(delay.plus(Micros(500)), report);
    }

    /// Election Safety (§5.2), over every member's view after every step;
    /// and every entry a leader counts as committed is durable on a
    /// majority (what makes an acknowledged write survive crashes).
    fn check_leaders(&mut self) {
        let mut committed = Vec::new();
        for slot in self.slots.values() {
            if let Slot::Up { member, .. } = slot {
                let raft = member.node.raft();
                if raft.role() == Role::Leader {
                    self.checks.leader(raft.term(), raft.id());
                    let index = raft.commit_index();
                    if index > self.durable_checked
                        && let Some(term) = raft.term_at(index)
                    {
                        committed.push((raft.id(), index, term));
                    }
                }
            }
        }
        for (leader, index, term) in committed {
            self.durable_checked = index;
            let holders = self
                .slots
                .values()
                .filter(|slot| match slot {
                    Slot::Up { member, .. } => member.holds_durably(index, term),
                    Slot::Down(disk) => disk.holds_durably(index, term),
                })
                .count();
            if holders * 2 <= self.slots.len() {
                self.checks.fail(format!(
                    "leader {leader} counts entry {index} (term {term}) committed, \
                     but only {holders} of {} members hold it durably",
                    self.slots.len()
                ));
            }
        }
    }

    // ----- clients and the KV layer -----

    fn up_members(&self) -> Vec<NodeId> {
        self.slots
            .iter()
            .filter(|(_, s)| matches!(s, Slot::Up { paused: false, .. }))
            .map(|(&id, _)| id)
            .collect()
    }

    fn client_wake(&mut self, c: usize) {
        if self.now.plus(Micros::ticks(40)) > self.end_at {
            return; // the end nears: let the cluster converge
        }
        let mut up = self.up_members();
        if up.is_empty() {
            up = self.slots.keys().copied().collect();
        }
        let pinned = self.pinned;
        let (member, operation) = self.clients[c].next(&up, pinned);
        self.history
            .invoke(operation.tag, operation.op.clone(), self.now);
        self.next_call += 1;
        let id = self.next_call;
        self.calls.insert(
            id,
            Call {
                client: c,
                operation,
                member,
                incarnation: self.incarnation(member),
                deadline: self.now.plus(CLIENT_HOP).plus(REQUEST_TIMEOUT),
                backoff: BACKOFF_MIN,
                waiting: Waiting::Nothing,
                last_error: None,
            },
        );
        self.schedule(CLIENT_HOP, Event::CallArrives(id));
        self.schedule(CLIENT_HOP.plus(REQUEST_TIMEOUT), Event::CallDeadline(id));
    }

    /// The call's member takes it (again): proposes or reads.
    fn submit(&mut self, id: u64) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let member = call.member;
        if self.incarnation(member) != call.incarnation || !self.is_up(member) {
            return; // the connection died with the member: the client times out
        }
        let kind = call.operation.kind.clone();
        let waiting = match kind {
            CallKind::Write(command) => {
                let (responder, rx) = oneshot::channel();
                self.member_input(
                    member,
                    Input::Request(Request::Propose {
                        data: command,
                        responder,
                    }),
                );
                Waiting::Proposal(rx)
            }
            CallKind::Read { kind, .. } => {
                let (tx, rx) = oneshot::channel();
                let read: ReadFn<_> = Box::new(move |r: Result<&_, Error>| {
                    let _ = tx.send(r.map(|_| ()));
                });
                let consistency = match kind {
                    ReadKind::Linearizable => ReadConsistency::Linearizable,
                    ReadKind::Lease => ReadConsistency::Lease,
                };
                self.member_input(member, Input::Request(Request::Read { consistency, read }));
                Waiting::Read(rx)
            }
        };
        if let Some(call) = self.calls.get_mut(&id) {
            call.waiting = waiting;
        }
    }

    /// Looks at every answer that came in during this step.
    fn poll_calls(&mut self) {
        let ids: Vec<u64> = self.calls.keys().copied().collect();
        for id in ids {
            let call = self.calls.get_mut(&id).expect("listed above");
            match &mut call.waiting {
                Waiting::Proposal(rx) => match rx.try_recv() {
                    Ok(result) => {
                        call.waiting = Waiting::Nothing;
                        self.on_proposal(id, result);
                    }
                    Err(oneshot::error::TryRecvError::Empty) => {}
                    // The member crashed: the client's connection broke
                    // with the proposal perhaps appended.
                    Err(oneshot::error::TryRecvError::Closed) => self.abandon(id),
                },
                Waiting::Read(rx) => match rx.try_recv() {
                    Ok(result) => {
                        call.waiting = Waiting::Nothing;
                        self.on_read(id, result);
                    }
                    Err(oneshot::error::TryRecvError::Empty) => {}
                    Err(oneshot::error::TryRecvError::Closed) => self.abandon(id),
                },
                Waiting::Nothing | Waiting::Forwarded => {}
            }
        }
        let forwarded: Vec<u64> = self.forwarded.keys().copied().collect();
        for id in forwarded {
            let (leader, rx) = self.forwarded.get_mut(&id).expect("listed above");
            let leader = *leader;
            let reply = match rx.try_recv() {
                Ok(Ok(result)) => ForwardReply::Applied(result),
                Ok(Err(e)) if matches!(e, Error::NotLeader { .. }) || is_retryable(&e) => {
                    ForwardReply::Refused
                }
                Ok(Err(e)) => ForwardReply::Failed(e),
                Err(oneshot::error::TryRecvError::Empty) => continue,
                Err(oneshot::error::TryRecvError::Closed) => {
                    self.forwarded.remove(&id);
                    continue;
                }
            };
            self.forwarded.remove(&id);
            let Some(call) = self.calls.get(&id) else {
                continue;
            };
            let member = call.member;
            if self.network.is_cut(leader, member) || self.network.send().lost {
                continue; // the follower's deadline answers the client
            }
            let delay = Micros(self.rng.between(100, 1_000));
            self.schedule(delay, Event::ForwardReply { call: id, reply });
        }
    }

    fn on_proposal(&mut self, id: u64, result: Result<Bytes, Error>) {
        match result {
            Ok(bytes) => self.write_done(id, &bytes),
            Err(Error::NotLeader {
                leader: Some(leader),
            }) if Some(leader) != self.calls.get(&id).map(|c| c.member) => {
                self.forward(id, leader);
            }
            Err(e) if is_retryable(&e) || matches!(e, Error::NotLeader { .. }) => {
                self.retry(id, e);
            }
            Err(e) => self.call_failed(id, e),
        }
    }

    fn on_read(&mut self, id: u64, result: Result<(), Error>) {
        match result {
            Ok(()) => {
                let call = &self.calls[&id];
                let CallKind::Read { key, .. } = &call.operation.kind else {
                    unreachable!("only reads wait for a read")
                };
                let Some(Slot::Up { member, .. }) = self.slots.get(&call.member) else {
                    return;
                };
                match read_value(&member.kv, key) {
                    Ok(value) => self.answer(id, Reply::Read(value)),
                    Err(e) => self.checks.fail(format!("a range read failed: {e}")),
                }
            }
            Err(e) if is_retryable(&e) || matches!(e, Error::NotLeader { .. }) => {
                self.retry(id, e);
            }
            Err(e) => self.call_failed(id, e),
        }
    }

    /// A follower's KV layer forwards the command to `leader`.
    fn forward(&mut self, id: u64, leader: NodeId) {
        let call = self.calls.get_mut(&id).expect("the caller holds the call");
        call.waiting = Waiting::Forwarded;
        let member = call.member;
        if self.network.is_cut(member, leader) || self.network.send().lost {
            // The connection fails: nothing was sent; retried.
            return self.retry(id, Error::NotLeader { leader: None });
        }
        let delay = Micros(self.rng.between(100, 1_000));
        self.schedule(
            delay,
            Event::Forward {
                call: id,
                to: leader,
            },
        );
    }

    fn forward_arrives(&mut self, id: u64, to: NodeId) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let CallKind::Write(command) = call.operation.kind.clone() else {
            return;
        };
        if !self.is_up(to) {
            return;
        }
        let (responder, rx) = oneshot::channel();
        self.member_input(
            to,
            Input::Request(Request::Propose {
                data: command,
                responder,
            }),
        );
        self.forwarded.insert(id, (to, rx));
    }

    fn forward_reply(&mut self, id: u64, reply: ForwardReply) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if self.incarnation(call.member) != call.incarnation || !self.is_up(call.member) {
            return;
        }
        match reply {
            ForwardReply::Applied(bytes) => self.write_done(id, &bytes),
            ForwardReply::Refused => self.retry(id, Error::NotLeader { leader: None }),
            ForwardReply::Failed(e) => self.call_failed(id, e),
        }
    }

    /// Backs off and tries again, unless the deadline is too near.
    fn retry(&mut self, id: u64, error: Error) {
        let call = self.calls.get_mut(&id).expect("the caller holds the call");
        call.waiting = Waiting::Nothing;
        let wake = self.now.plus(call.backoff);
        call.last_error = Some(error.clone());
        if wake >= call.deadline {
            return self.call_failed(id, error);
        }
        call.backoff = Micros((call.backoff.0 * 2).min(BACKOFF_MAX.0));
        let backoff = call.backoff;
        self.schedule(backoff, Event::CallRetry(id));
    }

    fn write_done(&mut self, id: u64, result: &[u8]) {
        let op = self.calls[&id].operation.op.clone();
        match write_output(&op, result) {
            Ok(output) => self.answer(id, Reply::Written(output)),
            Err(e) => self.checks.fail(format!(
                "the store refused a well-formed {}: {e}",
                op.name()
            )),
        }
    }

    /// The KV layer gives up with `error`.
    fn call_failed(&mut self, id: u64, error: Error) {
        let is_read = matches!(self.calls[&id].operation.op, OpKind::Get { .. });
        if is_read || certainly_not_written(&error) {
            self.answer(id, Reply::Failed { leader_hint: None });
        } else {
            self.abandon(id);
        }
    }

    fn deadline(&mut self, id: u64) {
        if self.calls.contains_key(&id) {
            let error = self.calls[&id].last_error.clone();
            // A deadline after a definite refusal is still definite only if
            // nothing is in flight; a forward or proposal in flight is not.
            match (error, &self.calls[&id].waiting) {
                (Some(e), Waiting::Nothing) => self.call_failed(id, e),
                _ => self.abandon(id),
            }
        }
    }

    /// The client gets an answer; the call ends.
    fn answer(&mut self, id: u64, reply: Reply) {
        let Some(call) = self.calls.remove(&id) else {
            return;
        };
        self.history.complete(call.operation.tag, &reply, self.now);
        if self.healing && matches!(reply, Reply::Written(_)) {
            self.served_after_heal = true;
        }
        self.clients[call.client].answered(&call.operation.op, &reply);
        self.wake_client(call.client);
    }

    /// The client stops waiting without an answer: the outcome is unknown.
    fn abandon(&mut self, id: u64) {
        let Some(call) = self.calls.remove(&id) else {
            return;
        };
        self.clients[call.client].waiting = None;
        self.wake_client(call.client);
    }

    fn wake_client(&mut self, c: usize) {
        let think = Micros(self.rng.between(100, 3 * TICK.0));
        self.schedule(think, Event::ClientWake(c));
    }

    // ----- faults -----

    fn schedule_fault(&mut self) {
        let after = Micros::ticks(self.rng.between(10, 60));
        self.schedule(after, Event::Fault);
    }

    fn fault(&mut self) {
        if self.healing {
            return;
        }
        match self.options.profile {
            StackProfile::Random => self.random_fault(),
            StackProfile::PausedLeader => self.pause_leader(),
            StackProfile::RestartedReader => self.restart_reader(),
        }
        self.schedule_fault();
    }

    fn random_fault(&mut self) {
        let ids: Vec<NodeId> = self.slots.keys().copied().collect();
        let id = *self.rng.pick(&ids);
        match self.rng.weighted(&[30, 30, 20, 15, 5]) {
            0 => {
                self.crash(id);
                let down = Micros::ticks(self.rng.between(1, 60));
                self.schedule(down, Event::Restart(id));
            }
            1 => {
                let mut side: BTreeSet<NodeId> = BTreeSet::new();
                for &n in &ids {
                    if self.rng.chance(400) {
                        side.insert(n);
                    }
                }
                let length = Micros::ticks(self.rng.between(10, 80));
                self.partition(&side, length);
            }
            2 => {
                let length = Micros::ticks(self.rng.between(5, 60));
                self.pause(id, length);
            }
            3 => {
                // A slow disk for a while.
                let slow = Micros(self.rng.between(5_000, 60_000));
                self.sync_latency.insert(id, slow);
            }
            _ => {
                // The next fdatasync fails: the member stops, as a real
                // one does, and its supervisor restarts it.
                if let Some(Slot::Up { member, .. }) = self.slots.get_mut(&id) {
                    member.fail_next_sync();
                    self.sync_failures += 1;
                }
            }
        }
    }

    /// Cuts every link between `side` and the rest, for `length`.
    fn partition(&mut self, side: &BTreeSet<NodeId>, length: Micros) {
        let ids: Vec<NodeId> = self.slots.keys().copied().collect();
        let mut cut = BTreeSet::new();
        for &a in &ids {
            for &b in &ids {
                if side.contains(&a) != side.contains(&b) {
                    cut.insert((a, b));
                }
            }
        }
        self.network.partition(cut);
        self.partition_epoch += 1;
        let epoch = self.partition_epoch;
        self.schedule(length, Event::HealNetwork(epoch));
    }

    fn pause(&mut self, id: NodeId, length: Micros) {
        if let Some(Slot::Up { paused, .. }) = self.slots.get_mut(&id)
            && !*paused
        {
            *paused = true;
            self.pauses += 1;
            self.schedule(length, Event::Resume(id));
        }
    }

    fn resume(&mut self, id: NodeId) {
        let Some(Slot::Up {
            paused, deferred, ..
        }) = self.slots.get_mut(&id)
        else {
            return;
        };
        if !*paused {
            return;
        }
        *paused = false;
        let waiting = std::mem::take(deferred);
        // The timer fires at once (tokio's Delay), then everything that
        // arrived meanwhile is taken in order.
        let inc = self.incarnation(id);
        self.member_input(id, Input::Tick);
        for event in waiting {
            self.on_event(event);
        }
        self.schedule(TICK, Event::Tick(id, inc));
    }

    /// The paused-leader profile: the leader is cut off from the other
    /// members (clients still reach it) and frozen for several election
    /// timeouts; the others elect a new leader and take writes; lease
    /// readers keep reading from the old one, which must not answer from
    /// a lease that expired while it slept.
    fn pause_leader(&mut self) {
        let leader = self.slots.iter().find_map(|(&id, slot)| match slot {
            Slot::Up {
                member,
                paused: false,
                ..
            } if member.node.raft().role() == Role::Leader => Some(id),
            _ => None,
        });
        let Some(leader) = leader else {
            return;
        };
        let side = BTreeSet::from([leader]);
        let frozen = Micros::ticks(self.rng.between(35, 70));
        let cut_off = frozen.plus(Micros::ticks(self.rng.between(5, 20)));
        self.partition(&side, cut_off);
        self.pause(leader, frozen);
        self.pinned = Some(leader);
    }

    /// The restarted-reader profile: a follower hears from the leader
    /// only after a long delay, its readers' ReadIndex answers with it;
    /// it crashes and restarts at once, and its new life issues reads
    /// while answers to the old life's are still on their way. They must
    /// not be taken for answers to the new ones.
    fn restart_reader(&mut self) {
        let leader = self.slots.iter().find_map(|(&id, slot)| match slot {
            Slot::Up {
                member,
                paused: false,
                ..
            } if member.node.raft().role() == Role::Leader => Some(id),
            _ => None,
        });
        let Some(leader) = leader else {
            return;
        };
        let followers: Vec<NodeId> = self
            .slots
            .keys()
            .copied()
            .filter(|&id| id != leader && self.is_up(id))
            .collect();
        if followers.is_empty() {
            return;
        }
        let reader = *self.rng.pick(&followers);
        let slow = Micros::ticks(self.rng.between(15, 40));
        self.slow_links.clear();
        self.slow_links.insert((leader, reader), slow);
        self.slow_epoch += 1;
        self.pinned = Some(reader);
        let crash_at = Micros::ticks(self.rng.between(3, 12));
        let restart_at = crash_at.plus(Micros(self.rng.between(100, 2 * TICK.0)));
        self.schedule(crash_at, Event::Crash(reader));
        self.schedule(restart_at, Event::Restart(reader));
        let epoch = self.slow_epoch;
        self.schedule(Micros::ticks(80), Event::LinksRecovered(epoch));
    }

    fn heal(&mut self) {
        self.healing = true;
        self.network.heal();
        self.network.set_profile(NetworkProfile::calm());
        self.pinned = None;
        self.slow_links.clear();
        let ids: Vec<NodeId> = self.slots.keys().copied().collect();
        for id in ids {
            self.sync_latency.insert(id, Micros(500));
            match self.slots.get(&id) {
                Some(Slot::Down(_)) => self.start(id),
                Some(Slot::Up { paused: true, .. }) => self.resume(id),
                _ => {}
            }
        }
    }

    fn finish(mut self) -> StackReport {
        // Calls still open are unknown; the history records them as such.
        let now = self.now;
        let (history, ops) = std::mem::take(&mut self.history).finish(None, now);
        let mut failure = self.checks.failure.take();
        let members: Vec<&Member> = self
            .slots
            .values()
            .filter_map(|s| match s {
                Slot::Up { member, .. } => Some(member.as_ref()),
                Slot::Down(_) => None,
            })
            .collect();
        if failure.is_none() {
            failure = self.checks.at_end(&members).err();
        }
        if failure.is_none() && !self.served_after_heal {
            failure = Some("no write was acknowledged after the cluster healed".into());
        }
        let verdict = verdict(&history);
        if failure.is_none()
            && let crate::history::Verdict::Violated { key, explanation } = &verdict
        {
            failure = Some(format!("not linearizable on {key}: {explanation}"));
        }
        StackReport {
            failure,
            verdict,
            ops,
            steps: self.steps,
            restarts: self.restarts,
            pauses: self.pauses,
            sync_failures: self.sync_failures,
            fingerprint: self.checks.fingerprint(&members),
            notes: std::mem::take(&mut self.checks.notes),
        }
    }
}
