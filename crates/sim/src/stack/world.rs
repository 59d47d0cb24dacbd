//! The full-stack event loop: one thread, virtual time, one seed.
//!
//! Members (`member.rs`) run the runtime's node loop and the application's
//! state machine (`app.rs`); the world owns time (`events.rs`), the network
//! between members, the faults (`nemesis.rs`) and the clients' request
//! path (`requests.rs`). Every event is ordered by virtual time and then by
//! insertion, so a run is a pure function of its seed and options.

use std::collections::BTreeMap;

use bytes::Bytes;
use keel::node_loop::Input;
use keel::{Error, StateMachine};
use keel_raft::{Membership, Message, NodeId, Role, Term};
use keel_storage::CrashKeep;
use tokio::sync::oneshot;

use super::app::{App, PinnedReaders, Response};
use super::call::Call;
use super::checks::Checks;
use super::events::{Event, Queue};
use super::member::{Disk, Member, MemberFailure, Outgoing};
use super::{StackOptions, StackProfile, StackReport};
use crate::network::{Network, NetworkProfile};
use crate::rng::Rng;
use crate::time::{Micros, TICK};
use crate::verdict::Verdict;

/// How long the client layer retries a request before answering the client.
pub(super) const REQUEST_TIMEOUT: Micros = Micros(100 * TICK.0);

/// A member's state in the world.
pub(super) enum Slot<M: StateMachine, R> {
    Up {
        member: Box<Member<M>>,
        /// Frozen: events wait in `deferred` until it resumes.
        paused: bool,
        deferred: Vec<Event<R>>,
    },
    Down(Disk),
}

/// Where the leader's answer to a forwarded call arrives.
type Answer<A> = oneshot::Receiver<Result<Response<A>, Error>>;

/// The application, its members and clients, the network and the faults.
pub(super) struct World<A: App> {
    pub(super) options: StackOptions,
    pub(super) app: A,
    pub(super) now: Micros,
    queue: Queue<Response<A>>,
    pub(super) slots: BTreeMap<NodeId, Slot<A::Machine, Response<A>>>,
    incarnations: BTreeMap<NodeId, u64>,
    drift_ppm: BTreeMap<NodeId, i64>,
    pub(super) sync_latency: BTreeMap<NodeId, Micros>,
    pub(super) config: keel::Config,
    pub(super) network: Network,
    pub(super) partition_epoch: u64,
    pub(super) rng: Rng,
    /// How many clients the application has.
    pub(super) clients: usize,
    pub(super) calls: BTreeMap<u64, Call<A::Op, Response<A>>>,
    /// A leader's proposals for forwarded calls, by call.
    pub(super) forwarded: BTreeMap<u64, (NodeId, Answer<A>)>,
    pub(super) next_call: u64,
    /// The member the pinned readers of the targeted profiles read from.
    pub(super) pinned: Option<NodeId>,
    /// Extra delay on a directed link: `(from, to)`.
    pub(super) slow_links: BTreeMap<(NodeId, NodeId), Micros>,
    pub(super) slow_epoch: u64,
    pub(super) checks: Checks,
    /// The highest committed index whose durability was checked.
    durable_checked: keel_raft::LogIndex,
    pub(super) healing: bool,
    /// A write was acknowledged after the cluster healed and settled.
    pub(super) served_after_heal: bool,
    pub(super) end_at: Micros,
    steps: u64,
    pub(super) restarts: u64,
    pub(super) disconnects: u64,
    pub(super) pauses: u64,
    pub(super) sync_failures: u64,
}

impl<A: App> World<A> {
    pub(super) fn new(seed: u64, options: StackOptions, mut app: A) -> World<A> {
        let mut root = Rng::new(seed);
        let mut params = root.fork(1);
        let members = if params.chance(500) { 3 } else { 5 };
        let ids: Vec<NodeId> = (1..=members).map(NodeId).collect();
        let membership =
            Membership::new(ids.iter().copied(), []).expect("founding voters are valid");
        let mut config =
            keel::Config::new(NodeId(1), 1, "127.0.0.1:0".parse().expect("an address"));
        config.tick_interval = std::time::Duration::from_micros(TICK.0);
        config.raft.election_ticks = 15;
        config.raft.heartbeat_ticks = 3;
        config.snapshot_entries = *params.pick(&[40, 150, 1000]);
        config.unknown_outcome_timeout = std::time::Duration::from_micros(200 * TICK.0);
        config.request_timeout = std::time::Duration::from_micros(REQUEST_TIMEOUT.0);
        // Half the random runs hear of closed connections; the targeted
        // profiles test leases, which fast failover gives up.
        config.raft.fast_failover =
            options.profile == StackProfile::Random && root.fork(5).chance(500);
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
        let pinned = match options.profile {
            StackProfile::Random => PinnedReaders {
                count: 0,
                consistency: None,
            },
            StackProfile::PausedLeader => PinnedReaders {
                count: 2,
                consistency: Some(keel::ReadConsistency::Lease),
            },
            StackProfile::RestartedReader => PinnedReaders {
                count: 2,
                consistency: Some(keel::ReadConsistency::Linearizable),
            },
        };
        let clients = params.between(3, 6) as usize + pinned.count;
        app.add_clients(clients, pinned, &mut client_rng);
        let end_at = Micros::ticks(options.safety_ticks + options.heal_ticks);
        let mut world = World {
            app,
            now: Micros(0),
            queue: Queue::default(),
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
            checks: Checks::default(),
            durable_checked: keel_raft::LogIndex(0),
            healing: false,
            served_after_heal: false,
            end_at,
            steps: 0,
            restarts: 0,
            disconnects: 0,
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
        for c in 0..world.clients {
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
        while let Some((at, event)) = self.queue.pop() {
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

    pub(super) fn schedule(&mut self, after: Micros, event: Event<Response<A>>) {
        self.schedule_at(self.now.plus(after), event);
    }

    pub(super) fn schedule_at(&mut self, at: Micros, event: Event<Response<A>>) {
        self.queue.push(at, event);
    }

    pub(super) fn incarnation(&self, id: NodeId) -> u64 {
        self.incarnations.get(&id).copied().unwrap_or(0)
    }

    /// Starts a life of `id` from its disk.
    pub(super) fn start(&mut self, id: NodeId) {
        let Some(Slot::Down(_)) = self.slots.get(&id) else {
            return;
        };
        let Some(Slot::Down(disk)) = self.slots.remove(&id) else {
            unreachable!("checked above")
        };
        let incarnation = self.incarnation(id) + 1;
        self.incarnations.insert(id, incarnation);
        let mut config = self.config.clone();
        config.raft.id = id;
        config.raft.seed = id.0 ^ (incarnation << 32);
        let raft_config = config.raft.clone();
        let read_id_origin = if self.options.bugs.read_ids_from_zero {
            0
        } else {
            incarnation << 40
        };
        let drift = self.drift_ppm[&id];
        let machine = match self.app.machine(id) {
            Ok(machine) => machine,
            Err(e) => return self.checks.fail(format!("member {id} cannot restart: {e}")),
        };
        match Member::start(
            id,
            disk,
            machine,
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
    pub(super) fn crash(&mut self, id: NodeId) {
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
        if self.config.raft.fast_failover {
            // The dead process's sockets close: every member still linked
            // to it sees its stream end, a network delay later.
            let linked: Vec<NodeId> = self
                .slots
                .keys()
                .copied()
                .filter(|&to| !self.network.is_cut(id, to))
                .collect();
            for to in linked {
                self.report_disconnect(to, id);
            }
        }
    }

    /// `to`'s stream from `from` ends, as its transport sees it a network
    /// delay later.
    pub(super) fn report_disconnect(&mut self, to: NodeId, from: NodeId) {
        let after = Micros(self.rng.between(50, 2_000));
        self.schedule(after, Event::Disconnected { to, from });
    }

    pub(super) fn on_event(&mut self, event: Event<Response<A>>) {
        let target = match &event {
            Event::Tick(id, _)
            | Event::Sync(id, _)
            | Event::Apply(id, _)
            | Event::Deliver(id, _)
            | Event::DeliverSnapshot(id, _, _)
            | Event::Disconnected { to: id, .. }
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
            Event::Disconnected { to, from } => {
                if self.is_up(to) {
                    self.disconnects += 1;
                    self.member_input(to, Input::Disconnected(from));
                }
            }
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

    pub(super) fn is_up(&self, id: NodeId) -> bool {
        matches!(self.slots.get(&id), Some(Slot::Up { .. }))
    }

    pub(super) fn member_input(&mut self, id: NodeId, input: Input<A::Machine>) {
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
        f: impl FnOnce(&mut Member<A::Machine>, Micros, &mut Vec<Outgoing>) -> Result<(), MemberFailure>,
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

    fn finish(mut self) -> StackReport {
        // Calls still open are unknown; the history records them as such.
        let (verdict, ops) = self.app.verdict(self.now);
        let mut failure = self.checks.failure.take();
        let mut members: Vec<&mut Member<A::Machine>> = self
            .slots
            .values_mut()
            .filter_map(|s| match s {
                Slot::Up { member, .. } => Some(member.as_mut()),
                Slot::Down(_) => None,
            })
            .collect();
        if failure.is_none() {
            failure = self.app.at_end(&mut members).err();
        }
        if failure.is_none() && !self.served_after_heal {
            failure = Some("no write was acknowledged after the cluster healed".into());
        }
        if failure.is_none()
            && let Verdict::Violated(refutation) = &verdict
        {
            failure = Some(format!(
                "not linearizable on {}: {}",
                refutation.key, refutation.explanation
            ));
        }
        let fingerprint = self.checks.fingerprint() ^ self.app.fingerprint(&mut members);
        StackReport {
            failure,
            verdict,
            ops,
            steps: self.steps,
            restarts: self.restarts,
            disconnects: self.disconnects,
            pauses: self.pauses,
            sync_failures: self.sync_failures,
            fingerprint,
            notes: std::mem::take(&mut self.checks.notes),
        }
    }
}
