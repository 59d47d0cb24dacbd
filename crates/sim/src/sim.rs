//! The event loop: one thread, virtual time, one seed.
//!
//! Everything that happens is an [`Event`] in a queue ordered by virtual
//! time and then by insertion, so a run is a pure function of its seed and
//! options. A run has a safety phase, in which faults are injected, and a
//! heal phase, in which faults stop and the cluster must recover and serve
//! its clients (liveness). Invariants are checked after every step; the
//! client history is checked for linearizability at the end.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use keel_raft::{Membership, Message, MessageBody, NodeId, Raft, ReadId};

use crate::client::Client;
use crate::disk::Disk;
use crate::faults::{FaultClass, FaultCounts, FaultKind, FaultPlan};
use crate::history::ClientHistory;
use crate::invariants::{Breach, Checker, Violation};
use crate::kv::{KvState, Tag};
use crate::network::{Network, NetworkProfile};
use crate::node::{Ctx, Liveness, NodeOutput, Reply, Request, SimNode};
use crate::options::{Profile, RunParams, SimOptions};
use crate::reconfig::Plan;
use crate::report::{Failure, RunReport};
use crate::rng::Rng;
use crate::route::{Route, Steering};
use crate::time::{Micros, TICK};
use crate::trace::{DropReason, MsgInfo, Trace, TraceEvent};
use crate::verdict::{Verdict, verdict};

/// Something addressed to one node.
#[derive(Clone, Debug)]
pub(crate) enum Input {
    Tick,
    /// A message, with the snapshot data the transport ships alongside an
    /// InstallSnapshot.
    Deliver(Message, Option<KvState>),
    /// The fsync of the node's in-flight Ready completed.
    Sync,
    Request(Request),
}

#[derive(Clone, Debug)]
pub(crate) enum Event {
    /// `incarnation` is set for inputs that belong to one life of the node
    /// (its clock, its disk); messages and requests reach whichever life
    /// is running.
    Node {
        node: NodeId,
        incarnation: Option<u64>,
        input: Input,
    },
    ClientWake(usize),
    ClientTimeout(usize, Tag),
    /// The transport learned whether a snapshot reached `to`.
    SnapshotReport {
        from: NodeId,
        to: NodeId,
        ok: bool,
    },
    Fault,
    Restart(NodeId, u64),
    Resume(NodeId, u64),
    DiskHealed(NodeId, u64),
    PartitionHealed(u64),
    Heal,
    /// The operator shuts down nodes no configuration names (removed
    /// nodes, and nodes whose addition was rolled back).
    Cleanup,
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
    /// Reversed, so that the max-heap pops the earliest event first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Ticks into the heal phase after which the cluster must be serving
/// every client without timeouts.
pub(crate) const SETTLE_TICKS: u64 = 100;
/// Ticks before the end during which clients start nothing new, so the
/// cluster can converge.
pub(crate) const DRAIN_TICKS: u64 = 40;

/// One run of the simulator.
pub struct Simulation {
    pub(crate) seed: u64,
    pub(crate) options: SimOptions,
    pub(crate) params: RunParams,
    pub(crate) now: Micros,
    queue: BinaryHeap<Scheduled>,
    seq: u64,
    pub(crate) nodes: BTreeMap<NodeId, SimNode>,
    /// Inputs that reached a paused node, replayed when it resumes.
    pub(crate) deferred: BTreeMap<NodeId, Vec<Input>>,
    /// Paused nodes whose clock ticked: they catch up on resume.
    pub(crate) tick_deferred: BTreeSet<NodeId>,
    pub(crate) base_sync_latency: BTreeMap<NodeId, Micros>,
    /// The configuration the cluster was bootstrapped with.
    initial_membership: Membership,
    pub(crate) network: Network,
    pub(crate) partition_epoch: u64,
    clients: Vec<Client>,
    history: ClientHistory,
    pub(crate) checker: Checker,
    pub(crate) trace: Trace,
    pub(crate) faults: FaultCounts,
    pub(crate) plan: FaultPlan,
    /// Set by the isolated-leader profile while its leader is cut off:
    /// where clients go until the heal phase.
    pub(crate) steering: Option<Steering>,
    pub(crate) reconfig: Plan,
    pub(crate) rng: Rng,
    client_rng: Rng,
    pub(crate) next_node_id: u64,
    next_read_id: u64,
    pub(crate) healing: bool,
    pub(crate) heal_at: Micros,
    end_at: Micros,
    steps: u64,
    /// Per client, when it last completed a write after healing.
    pub(crate) healed_writes: Vec<Option<Micros>>,
    /// Client timeouts after the cluster should have settled.
    pub(crate) late_timeouts: Vec<Tag>,
}

impl Simulation {
    /// A run of `seed`, and the stream its targeted profile draws from
    /// (none for the random schedule). The profile's parameter overrides
    /// are applied here, each at its place in the order the seed is
    /// forked, so that a seed replays the same schedule.
    pub(crate) fn new(seed: u64, options: SimOptions) -> (Simulation, Option<Rng>) {
        let mut root = Rng::new(seed);
        let mut params_rng = root.fork(1);
        let mut params = RunParams::draw(&mut params_rng, &options);
        // The newer profiles draw their overrides from the parameters'
        // stream, before the clients are made (the isolated-leader profile
        // sets their number); the older ones keep their forks of the root,
        // so that their seeds replay as before.
        let mut profile_rng = match options.profile {
            Profile::JointLag => {
                params.joint_lag(&options);
                Some(params_rng.fork(7))
            }
            Profile::IsolatedLeader => {
                let mut rng = params_rng.fork(8);
                params.isolated_leader(&mut rng, &options);
                Some(rng)
            }
            Profile::Random | Profile::Figure8 | Profile::VoteCrash => None,
        };
        let mut fault_rng = root.fork(2);
        // The targeted profiles make their partitions and crashes
        // themselves, and need the voters they started a round with: only
        // faults that leave both alone join in at random.
        let random_faults = match options.profile {
            Profile::Random => options.faults.clone(),
            Profile::Figure8 | Profile::VoteCrash | Profile::JointLag | Profile::IsolatedLeader => {
                options
                    .faults
                    .only(&[FaultClass::Network, FaultClass::Disk, FaultClass::Snapshot])
            }
        };
        let plan = FaultPlan::draw(&mut fault_rng, &random_faults);
        let profile = if options.faults.contains(FaultClass::Network) {
            NetworkProfile::draw(&mut fault_rng)
        } else {
            NetworkProfile::calm()
        };
        let network = Network::new(root.fork(3), profile);
        let mut client_rng = root.fork(4);
        let clients = (0..params.clients)
            .map(|c| Client::new(c as u32 + 1, client_rng.fork(c as u64), params.keys))
            .collect();
        match options.profile {
            Profile::Figure8 => {
                let mut rng = root.fork(5);
                params.figure8(&mut rng, &options);
                profile_rng = Some(rng);
            }
            Profile::VoteCrash => {
                params.vote_crash(&options);
                profile_rng = Some(root.fork(6));
            }
            Profile::Random | Profile::JointLag | Profile::IsolatedLeader => {}
        }
        let heal_at = Micros::ticks(options.safety_ticks);
        let end_at = heal_at.plus(Micros::ticks(options.heal_ticks));
        let sim = Simulation {
            seed,
            trace: Trace::new(options.trace_tail, options.echo_trace),
            healed_writes: vec![None; params.clients],
            params,
            options,
            now: Micros(0),
            queue: BinaryHeap::new(),
            seq: 0,
            nodes: BTreeMap::new(),
            deferred: BTreeMap::new(),
            tick_deferred: BTreeSet::new(),
            base_sync_latency: BTreeMap::new(),
            initial_membership: Membership::default(),
            network,
            partition_epoch: 0,
            clients,
            history: ClientHistory::default(),
            checker: Checker::default(),
            faults: FaultCounts::new(),
            plan,
            steering: None,
            reconfig: Plan::default(),
            rng: fault_rng,
            client_rng,
            next_node_id: 1,
            next_read_id: 1,
            healing: false,
            heal_at,
            end_at,
            steps: 0,
            late_timeouts: Vec::new(),
        };
        (sim, profile_rng)
    }

    /// Handles the next event; false once the queue is empty or the next
    /// event falls after the end of the run.
    pub(crate) fn step(&mut self) -> Result<bool, Violation> {
        let Some(Scheduled { at, event, .. }) = self.queue.pop() else {
            return Ok(false);
        };
        if at > self.end_at {
            return Ok(false);
        }
        self.now = at;
        self.steps += 1;
        self.handle(event)?;
        Ok(true)
    }

    /// Moves the clock to the end of the run, where liveness is judged.
    pub(crate) fn reach_end(&mut self) {
        self.now = self.end_at;
    }

    /// Bootstraps the cluster and schedules the clients, the first fault
    /// and the heal phase.
    pub(crate) fn start(&mut self) -> Result<(), Violation> {
        let ids: Vec<NodeId> = (1..=self.params.nodes as u64).map(NodeId).collect();
        let membership =
            Membership::new(ids.iter().copied(), []).expect("a fresh cluster is a valid config");
        for &id in &ids {
            self.spawn(id, Disk::new(membership.clone()))?;
        }
        self.initial_membership = membership;
        self.next_node_id = ids.len() as u64 + 1;
        for c in 0..self.clients.len() {
            let at = Micros(self.client_rng.below(Micros::ticks(20).0));
            self.schedule(at, Event::ClientWake(c));
        }
        let first_fault = Micros::ticks(self.rng.between(20, 40));
        self.schedule(first_fault, Event::Fault);
        self.schedule(self.heal_at, Event::Heal);
        Ok(())
    }

    /// Starts a node that never ran, on `disk`.
    pub(crate) fn spawn(&mut self, id: NodeId, disk: Disk) -> Result<(), Violation> {
        let config = self.params.config(id, self.seed, 0);
        let mut node = SimNode::start(config, disk, self.now)?;
        let latency = Micros(self.rng.between(20, 800));
        node.sync_latency = latency;
        node.next_tick = self.now.plus(Micros(self.rng.below(TICK.0)));
        self.base_sync_latency.insert(id, latency);
        let (at, incarnation) = (node.next_tick, node.incarnation);
        self.nodes.insert(id, node);
        self.schedule_tick(id, incarnation, at);
        Ok(())
    }

    pub(crate) fn schedule(&mut self, at: Micros, event: Event) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            event,
        });
    }

    pub(crate) fn schedule_tick(&mut self, node: NodeId, incarnation: u64, at: Micros) {
        let event = Event::Node {
            node,
            incarnation: Some(incarnation),
            input: Input::Tick,
        };
        self.schedule(at, event);
    }

    fn handle(&mut self, event: Event) -> Result<(), Violation> {
        match event {
            Event::Node {
                node,
                incarnation,
                input,
            } => self.node_event(node, incarnation, input),
            Event::ClientWake(c) => {
                self.client_wake(c);
                Ok(())
            }
            Event::ClientTimeout(c, tag) => {
                self.client_timeout(c, tag);
                Ok(())
            }
            Event::SnapshotReport { from, to, ok } => self
                .with_node(from, |n, ctx| n.call(|r| r.report_snapshot(to, ok), ctx))
                .map(drop),
            Event::Fault => self.fault(),
            Event::Restart(id, incarnation) => self.restart_if(id, incarnation),
            Event::Resume(id, incarnation) => self.resume_if(id, incarnation),
            Event::DiskHealed(id, incarnation) => {
                self.disk_healed(id, incarnation);
                Ok(())
            }
            Event::PartitionHealed(epoch) => {
                if epoch == self.partition_epoch && self.network.is_partitioned() {
                    self.network.heal();
                    self.trace.record(self.now, TraceEvent::HealPartition);
                }
                Ok(())
            }
            Event::Heal => self.heal(),
            Event::Cleanup => {
                self.stop_unreferenced();
                self.revive_referenced()
            }
        }
    }

    fn node_event(
        &mut self,
        id: NodeId,
        incarnation: Option<u64>,
        input: Input,
    ) -> Result<(), Violation> {
        let Some(node) = self.nodes.get(&id) else {
            return Ok(());
        };
        if incarnation.is_some_and(|i| i != node.incarnation) {
            return Ok(());
        }
        match node.liveness {
            Liveness::Up => self.input(id, input),
            Liveness::Paused => {
                match input {
                    Input::Tick => {
                        self.tick_deferred.insert(id);
                    }
                    other => self.deferred.entry(id).or_default().push(other),
                }
                Ok(())
            }
            Liveness::Down | Liveness::Stopped => {
                if let Input::Deliver(m, _) = input {
                    self.dropped(&m, DropReason::NodeDown);
                }
                Ok(())
            }
        }
    }

    /// Hands an input to a running node.
    pub(crate) fn input(&mut self, id: NodeId, input: Input) -> Result<(), Violation> {
        match input {
            Input::Tick => self.tick(id),
            Input::Deliver(m, data) => self.deliver(m, data),
            Input::Sync => {
                self.with_node(id, |n, ctx| n.sync_done(ctx))?;
                self.maybe_compact(id);
                Ok(())
            }
            Input::Request(request) => {
                let read_id = ReadId(self.next_read_id);
                self.next_read_id += 1;
                self.with_node(id, |n, ctx| n.request(request, read_id, ctx))
                    .map(drop)
            }
        }
    }

    /// Runs the node's clock up to now (catching up after a pause) and
    /// schedules its next tick.
    pub(crate) fn tick(&mut self, id: NodeId) -> Result<(), Violation> {
        loop {
            let Some(node) = self.nodes.get_mut(&id) else {
                return Ok(());
            };
            if node.next_tick > self.now || !node.is_up() {
                break;
            }
            node.next_tick = node.next_tick.plus(TICK);
            self.with_node(id, |n, ctx| n.tick(ctx))?;
        }
        let node = &self.nodes[&id];
        if node.is_up() {
            let (at, incarnation) = (node.next_tick, node.incarnation);
            self.schedule_tick(id, incarnation, at);
        }
        Ok(())
    }

    fn deliver(&mut self, m: Message, data: Option<KvState>) -> Result<(), Violation> {
        let (from, to) = (m.from, m.to);
        if self.network.is_cut(from, to) {
            self.dropped(&m, DropReason::Partitioned);
            if matches!(m.body, MessageBody::AppendEntries { .. }) {
                // The transport sees the connection fail.
                self.with_node(from, |n, ctx| n.call(|r| r.report_unreachable(to), ctx))?;
            }
            return Ok(());
        }
        self.trace
            .record(self.now, TraceEvent::Deliver(MsgInfo::of(&m)));
        let snapshot = match &m.body {
            MessageBody::InstallSnapshot { meta } => Some(meta.index),
            _ => None,
        };
        if let (Some(index), Some(data)) = (snapshot, data) {
            self.nodes
                .get_mut(&to)
                .expect("delivered to an existing node")
                .stage_snapshot(index, data);
        }
        self.with_node(to, |n, ctx| n.step(m, ctx))?;
        if snapshot.is_some() {
            self.schedule(self.now, Event::SnapshotReport { from, to, ok: true });
        }
        Ok(())
    }

    pub(crate) fn dropped(&mut self, m: &Message, reason: DropReason) {
        self.trace
            .record(self.now, TraceEvent::Drop(MsgInfo::of(m), reason));
        if matches!(m.body, MessageBody::InstallSnapshot { .. }) {
            let (from, to) = (m.from, m.to);
            self.schedule(
                self.now,
                Event::SnapshotReport {
                    from,
                    to,
                    ok: false,
                },
            );
        }
    }

    /// Calls into a node, then routes what it produced and runs the checks
    /// that follow any step.
    pub(crate) fn with_node<T>(
        &mut self,
        id: NodeId,
        f: impl FnOnce(&mut SimNode, &mut Ctx<'_>) -> Result<T, Violation>,
    ) -> Result<Option<T>, Violation> {
        let Some(node) = self.nodes.get_mut(&id).filter(|n| n.is_up()) else {
            return Ok(None);
        };
        let mut out = NodeOutput::default();
        let mut ctx = Ctx {
            now: self.now,
            checker: &mut self.checker,
            trace: &mut self.trace,
            out: &mut out,
            bugs: &self.options.caller_bugs,
        };
        let result = f(node, &mut ctx)?;
        if let Some(raft) = node.raft() {
            self.checker.observe(raft)?;
        }
        let incarnation = node.incarnation;
        self.route(id, incarnation, out)?;
        let nodes = &self.nodes;
        self.checker.after_commit(
            |n| nodes.get(&n).map(|node| node.disk.durable()),
            nodes.values().filter_map(SimNode::raft),
        )?;
        Ok(Some(result))
    }

    fn route(&mut self, id: NodeId, incarnation: u64, out: NodeOutput) -> Result<(), Violation> {
        if let Some(at) = out.sync_at {
            let event = Event::Node {
                node: id,
                incarnation: Some(incarnation),
                input: Input::Sync,
            };
            self.schedule(at, event);
        }
        for m in out.messages {
            self.send(m)?;
        }
        for response in out.responses {
            self.reply(id, response.tag, response.reply);
        }
        Ok(())
    }

    fn send(&mut self, m: Message) -> Result<(), Violation> {
        let fate = self.network.send();
        if fate.lost {
            self.count(FaultKind::MessageLost);
            self.dropped(&m, DropReason::Lost);
            return Ok(());
        }
        if fate.duplicated {
            self.count(FaultKind::MessageDuplicated);
        }
        if fate.spiked {
            self.count(FaultKind::MessageDelayed);
        }
        let data = match &m.body {
            MessageBody::InstallSnapshot { meta } => {
                let data = self.nodes[&m.from].snapshot_data(meta.index).ok_or(
                    Breach::SnapshotNotHeld {
                        node: m.from,
                        index: meta.index,
                    },
                )?;
                Some(data)
            }
            _ => None,
        };
        for delay in fate.delays {
            let event = Event::Node {
                node: m.to,
                incarnation: None,
                input: Input::Deliver(m.clone(), data.clone()),
            };
            self.schedule(self.now.plus(delay), event);
        }
        Ok(())
    }

    pub(crate) fn count(&mut self, kind: FaultKind) {
        *self.faults.entry(kind).or_default() += 1;
    }

    fn client_wake(&mut self, c: usize) {
        if self.clients[c].is_waiting() {
            return;
        }
        if self.healing && self.now >= self.end_at.saturating_sub(Micros::ticks(DRAIN_TICKS)) {
            return;
        }
        let up: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.is_up() || n.liveness == Liveness::Paused)
            .map(|(&id, _)| id)
            .collect();
        if up.is_empty() {
            self.schedule(self.now.plus(TICK), Event::ClientWake(c));
            return;
        }
        let steering = self.steering.filter(|_| !self.healing);
        let route = Route::for_client(steering, c, self.params.clients, up);
        let invocation = self.clients[c].invoke(&route.nodes, route.read_only);
        let tag = invocation.tag;
        self.trace.record(
            self.now,
            TraceEvent::Invoke {
                client: tag.client,
                request: tag.request,
                node: invocation.node,
                op: invocation.op.to_string(),
            },
        );
        self.history.invoke(tag, invocation.op, self.now);
        let arrive = self.now.plus(Micros(self.client_rng.between(50, 300)));
        let event = Event::Node {
            node: invocation.node,
            incarnation: None,
            input: Input::Request(invocation.request),
        };
        self.schedule(arrive, event);
        let timeout = Micros::ticks(self.params.client_timeout_ticks);
        self.schedule(self.now.plus(timeout), Event::ClientTimeout(c, tag));
    }

    fn reply(&mut self, node: NodeId, tag: Tag, reply: Reply) {
        let Some(op) = self.history.complete(tag, &reply, self.now) else {
            return;
        };
        self.trace.record(
            self.now,
            TraceEvent::Complete {
                client: tag.client,
                request: tag.request,
                outcome: format!("{reply:?}"),
            },
        );
        let c = (tag.client - 1) as usize;
        if self.healing && matches!(reply, Reply::Written(_)) {
            self.healed_writes[c] = Some(self.now);
        }
        if self.clients[c].on_reply(tag, node, &op, &reply) {
            let think = Micros(self.client_rng.below(Micros::ticks(2).0));
            self.schedule(self.now.plus(think), Event::ClientWake(c));
        }
    }

    fn client_timeout(&mut self, c: usize, tag: Tag) {
        if !self.clients[c].on_timeout(tag) {
            return;
        }
        self.trace.record(
            self.now,
            TraceEvent::Complete {
                client: tag.client,
                request: tag.request,
                outcome: "timed out".to_owned(),
            },
        );
        let invoked_at = self
            .now
            .saturating_sub(Micros::ticks(self.params.client_timeout_ticks));
        if self.healing && invoked_at >= self.heal_at.plus(Micros::ticks(SETTLE_TICKS)) {
            self.late_timeouts.push(tag);
        }
        self.schedule(self.now, Event::ClientWake(c));
    }

    /// Whether `id` belongs to the cluster: the newest committed
    /// configuration names it, or a newer configuration that some other
    /// node holds (and might yet commit) does, or a pending membership step
    /// will add it. A removed node that never learned of its removal names
    /// itself in an outdated configuration, which does not count.
    pub(crate) fn referenced(&self, id: NodeId) -> bool {
        let (committed_at, committed) = self
            .checker
            .committed()
            .config()
            .cloned()
            .unwrap_or_else(|| (keel_raft::LogIndex(0), self.initial_membership.clone()));
        self.reconfig.mentions(id)
            || committed.contains(id)
            || self.nodes.values().any(|n| {
                let image = match n.liveness {
                    Liveness::Stopped => return false,
                    Liveness::Down => n.disk.durable(),
                    Liveness::Up | Liveness::Paused => n.disk.latest(),
                };
                let (at, membership) = image.latest_membership();
                n.id != id && at > committed_at && membership.contains(id)
            })
    }

    /// The running leader of the highest term, if any.
    pub(crate) fn leader(&self) -> Option<NodeId> {
        self.nodes
            .values()
            .filter(|n| n.is_up())
            .filter_map(|n| n.raft())
            .filter(|r| r.role() == keel_raft::Role::Leader)
            .max_by_key(|r| r.term())
            .map(Raft::id)
    }

    pub(crate) fn end_at(&self) -> Micros {
        self.end_at
    }

    pub(crate) fn node_ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// The run's report: the violation it stopped at, or the verdict on
    /// its client history.
    pub(crate) fn report(self, violation: Option<Violation>) -> RunReport {
        let failure = violation.map(|violation| Failure {
            violation,
            at: self.now,
            trace_tail: self.trace.tail(),
        });
        let committed = self.checker.committed();
        let tags: Option<BTreeSet<Tag>> = (0..committed.last_index().0)
            .map(|i| committed.get(keel_raft::LogIndex(i + 1)))
            .try_fold(BTreeSet::new(), |mut tags, entry| {
                let entry = entry?;
                entry.digest?;
                tags.extend(entry.tag);
                Some(tags)
            });
        let (history, ops) = self.history.finish(tags.as_ref(), self.now);
        let (verdict, failure) = match failure {
            Some(f) => (None, Some(f)),
            None => {
                let v = verdict(&history);
                let failure = match &v {
                    Verdict::Violated(refutation) => Some(Failure {
                        violation: Breach::NotLinearizable(refutation.clone()).into(),
                        at: self.now,
                        trace_tail: self.trace.tail(),
                    }),
                    _ => None,
                };
                (Some(v), failure)
            }
        };
        RunReport {
            seed: self.seed,
            nodes: self.params.nodes,
            steps: self.steps,
            virtual_time: self.now,
            faults: self.faults,
            ops,
            verdict,
            failure,
            fingerprint: self.trace.fingerprint(),
        }
    }
}
