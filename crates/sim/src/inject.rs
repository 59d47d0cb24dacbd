//! Carrying faults out: the simulation loop's side of `faults` and
//! `reconfig`, and the switch to the heal phase that undoes them all.

use keel_raft::{MembershipChange, NodeId, Proposal, ProposeError};

use crate::disk::{CrashKeep, Disk, Write};
use crate::faults::{self, Action, FaultKind};
use crate::invariants::Violation;
use crate::network::NetworkProfile;
use crate::node::Liveness;
use crate::sim::{Event, Input, Simulation};
use crate::time::{Micros, TICK};
use crate::trace::{DropReason, TraceEvent};

impl Simulation {
    /// A fault decision point: inject one fault, schedule the next.
    pub(crate) fn fault(&mut self) -> Result<(), crate::invariants::Violation> {
        if self.healing {
            return Ok(());
        }
        let (low, high) = self.plan.interval_ticks;
        let next = Micros::ticks(self.rng.between(low, high));
        self.schedule(self.now.plus(next), Event::Fault);
        let Some(action) = self.plan.next(&mut self.rng) else {
            return Ok(());
        };
        match action {
            Action::Partition => self.partition(),
            Action::Crash => {
                let max_down = (self.live_count().saturating_sub(1)) / 2;
                let candidates = self.with_liveness(&[Liveness::Up, Liveness::Paused]);
                if self.live_count() - candidates.len() >= max_down || candidates.is_empty() {
                    return Ok(());
                }
                // Leaders crash more often than their share: their
                // crashes exercise the most recovery paths.
                let id = match self.leader() {
                    Some(leader) if self.rng.chance(400) => leader,
                    _ => *self.rng.pick(&candidates),
                };
                // Some restarts are immediate, to land inside an election
                // or a replication round the node took part in.
                let down = if self.rng.chance(200) {
                    Micros(self.rng.between(TICK.0 / 10, TICK.0))
                } else {
                    Micros::ticks(self.rng.between(1, 60))
                };
                self.crash(id, down)?;
            }
            Action::CrashAll => {
                self.count(FaultKind::CrashAll);
                for id in self.with_liveness(&[Liveness::Up, Liveness::Paused]) {
                    let down = Micros::ticks(self.rng.between(1, 30));
                    self.crash(id, down)?;
                }
            }
            Action::Pause => {
                let candidates = self.with_liveness(&[Liveness::Up]);
                if candidates.is_empty() {
                    return Ok(());
                }
                let id = *self.rng.pick(&candidates);
                let ticks = self.rng.between(1, 40);
                let node = self.nodes.get_mut(&id).expect("a candidate exists");
                node.liveness = Liveness::Paused;
                let incarnation = node.incarnation;
                self.count(FaultKind::Pause);
                self.trace
                    .record(self.now, TraceEvent::Pause { node: id, ticks });
                self.schedule(
                    self.now.plus(Micros::ticks(ticks)),
                    Event::Resume(id, incarnation),
                );
            }
            Action::SlowDisk => {
                let candidates = self.with_liveness(&[Liveness::Up]);
                if candidates.is_empty() {
                    return Ok(());
                }
                let id = *self.rng.pick(&candidates);
                let latency = Micros(self.rng.between(TICK.0 / 2, 6 * TICK.0));
                let lasts = Micros::ticks(self.rng.between(10, 80));
                let node = self.nodes.get_mut(&id).expect("a candidate exists");
                node.sync_latency = latency;
                let incarnation = node.incarnation;
                self.count(FaultKind::SlowDisk);
                self.trace
                    .record(self.now, TraceEvent::SlowDisk { node: id, latency });
                self.schedule(self.now.plus(lasts), Event::DiskHealed(id, incarnation));
            }
            Action::Membership => self.membership()?,
            Action::Transfer => self.transfer()?,
            Action::Snapshot => {
                let candidates = self.with_liveness(&[Liveness::Up]);
                if candidates.is_empty() {
                    return Ok(());
                }
                let id = *self.rng.pick(&candidates);
                if self.compact(id) {
                    self.count(FaultKind::Snapshot);
                }
            }
        }
        Ok(())
    }

    /// Nodes that are not shut down.
    fn live_count(&self) -> usize {
        self.nodes
            .values()
            .filter(|n| n.liveness != Liveness::Stopped)
            .count()
    }

    fn with_liveness(&self, states: &[Liveness]) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| states.contains(&n.liveness))
            .map(|(&id, _)| id)
            .collect()
    }

    fn partition(&mut self) {
        if self.network.is_partitioned() {
            return;
        }
        let nodes = self.with_liveness(&[Liveness::Up, Liveness::Paused, Liveness::Down]);
        if nodes.len() < 2 {
            return;
        }
        let leader = self.leader();
        let (kind, cut) = faults::partition(&mut self.rng, &nodes, leader);
        self.count(kind);
        let shown = cut.iter().map(|&(a, b)| (a.0, b.0)).collect();
        self.trace.record(
            self.now,
            TraceEvent::Partition {
                kind: match kind {
                    FaultKind::PartitionSymmetric => "symmetric",
                    FaultKind::PartitionOneWay => "one-way",
                    FaultKind::PartitionMinority => "minority",
                    FaultKind::PartitionLeaderIsolated => "leader isolated",
                    _ => "bridge",
                },
                cut: shown,
            },
        );
        self.network.partition(cut);
        self.partition_epoch += 1;
        let lasts = Micros::ticks(self.rng.between(5, 60));
        self.schedule(
            self.now.plus(lasts),
            Event::PartitionHealed(self.partition_epoch),
        );
    }

    /// Crashes `id`, keeping a random prefix of its unsynced writes, and
    /// restarts it after `down`.
    pub(crate) fn crash(&mut self, id: NodeId, down: Micros) -> Result<(), Violation> {
        let node = self.nodes.get_mut(&id).expect("crashing an existing node");
        // A node has at most one Ready in flight, so the unsynced writes
        // are that Ready's.
        let pending = node.disk.pending();
        let keep = match self.rng.below(10) {
            k if self.options.atomic_ready_writes => CrashKeep {
                writes: if k < 5 { 0 } else { pending.len() },
                torn_entries: 0,
            },
            0..=4 => CrashKeep {
                writes: 0,
                torn_entries: 0,
            },
            5..=7 => CrashKeep {
                writes: self.rng.between(0, pending.len() as u64) as usize,
                torn_entries: 0,
            },
            _ => {
                let writes = self.rng.below(pending.len() as u64 + 1) as usize;
                let torn_entries = match pending.get(writes) {
                    Some(Write::Entries(e)) if e.len() > 1 => {
                        self.rng.between(1, e.len() as u64 - 1) as usize
                    }
                    _ => 0,
                };
                CrashKeep {
                    writes,
                    torn_entries,
                }
            }
        };
        self.crash_keeping(id, down, keep)
    }

    /// Crashes `id`, keeping what `keep` says of its unsynced writes, and
    /// restarts it after `down`.
    pub(crate) fn crash_keeping(
        &mut self,
        id: NodeId,
        down: Micros,
        keep: CrashKeep,
    ) -> Result<(), Violation> {
        let node = self.nodes.get_mut(&id).expect("crashing an existing node");
        let pending = node.disk.pending();
        let kept_writes = keep.writes.min(pending.len());
        let lost_writes = pending.len() - kept_writes;
        node.crash(keep);
        let incarnation = node.incarnation;
        self.discard_deferred(id);
        self.count(if keep.torn_entries > 0 {
            FaultKind::CrashTornTail
        } else {
            FaultKind::Crash
        });
        self.trace.record(
            self.now,
            TraceEvent::Crash {
                node: id,
                kept_writes,
                torn_entries: keep.torn_entries,
                lost_writes,
            },
        );
        self.schedule(self.now.plus(down), Event::Restart(id, incarnation));
        let nodes = &self.nodes;
        self.checker
            .after_crash(|n| nodes.get(&n).map(|node| node.disk.durable()))
    }

    pub(crate) fn restart_if(&mut self, id: NodeId, incarnation: u64) -> Result<(), Violation> {
        let node = &self.nodes[&id];
        if node.liveness != Liveness::Down || node.incarnation != incarnation {
            return Ok(());
        }
        self.restart(id)
    }

    /// Starts a down or stopped node again from its durable state.
    pub(crate) fn restart(&mut self, id: NodeId) -> Result<(), Violation> {
        let incarnation = self.nodes[&id].incarnation + 1;
        let config = self.params.config(id, self.seed, incarnation);
        self.checker.restarted(id);
        let phase = Micros(self.rng.below(TICK.0));
        let latency = self.base_sync_latency[&id];
        let node = self
            .nodes
            .get_mut(&id)
            .expect("restarting an existing node");
        node.sync_latency = latency;
        node.next_tick = self.now.plus(phase);
        let at = node.next_tick;
        // `with_node` only calls running nodes, so the restart itself
        // marks the node up inside the call.
        node.liveness = Liveness::Up;
        self.with_node(id, |n, ctx| n.restart(config, ctx))?;
        self.schedule_tick(id, incarnation, at);
        Ok(())
    }

    pub(crate) fn resume_if(&mut self, id: NodeId, incarnation: u64) -> Result<(), Violation> {
        let node = &self.nodes[&id];
        if node.liveness != Liveness::Paused || node.incarnation != incarnation {
            return Ok(());
        }
        self.resume(id)
    }

    /// Unfreezes a paused node: its clock catches up first, as a monotonic
    /// clock would, then the inputs that waited are handled in order.
    fn resume(&mut self, id: NodeId) -> Result<(), Violation> {
        self.nodes
            .get_mut(&id)
            .expect("resuming an existing node")
            .liveness = Liveness::Up;
        self.trace.record(self.now, TraceEvent::Resume(id));
        if self.tick_deferred.remove(&id) {
            self.tick(id)?;
        }
        for input in self.deferred.remove(&id).unwrap_or_default() {
            match input {
                input if self.nodes[&id].is_up() => self.input(id, input)?,
                Input::Deliver(m, _) => self.dropped(&m, DropReason::NodeDown),
                _ => {}
            }
        }
        Ok(())
    }

    /// Forgets what waited for a paused node that is now down. Messages
    /// among it are lost as if they had reached a dead process: the
    /// transport reports an undelivered snapshot, or its sender would wait
    /// for the report forever.
    fn discard_deferred(&mut self, id: NodeId) {
        self.tick_deferred.remove(&id);
        for input in self.deferred.remove(&id).unwrap_or_default() {
            if let Input::Deliver(m, _) = input {
                self.dropped(&m, DropReason::NodeDown);
            }
        }
    }

    pub(crate) fn disk_healed(&mut self, id: NodeId, incarnation: u64) {
        let latency = self.base_sync_latency[&id];
        let node = self.nodes.get_mut(&id).expect("an existing node");
        if node.incarnation == incarnation {
            node.sync_latency = latency;
        }
    }

    /// Takes a snapshot on `id` if it is between Readies.
    pub(crate) fn compact(&mut self, id: NodeId) -> bool {
        let Some(index) = self.nodes.get_mut(&id).and_then(|n| n.compact()) else {
            return false;
        };
        self.trace
            .record(self.now, TraceEvent::Snapshot { node: id, index });
        true
    }

    /// Compacts a node whose log outgrew its bound.
    pub(crate) fn maybe_compact(&mut self, id: NodeId) {
        if self.nodes[&id].log_len() > self.params.compact_after_entries {
            self.compact(id);
        }
    }

    fn membership(&mut self) -> Result<(), Violation> {
        self.stop_unreferenced();
        self.revive_referenced()?;
        let Some(leader) = self.leader() else {
            return Ok(());
        };
        if self.reconfig.next_step().is_none() {
            let membership = self.nodes[&leader]
                .raft()
                .expect("the leader runs")
                .membership()
                .clone();
            let next_id = &mut self.next_node_id;
            let mut fresh = || {
                let id = NodeId(*next_id);
                *next_id += 1;
                id
            };
            match self.reconfig.draw(&mut self.rng, &membership, &mut fresh) {
                Some(kind) => self.count(kind),
                None => return Ok(()),
            }
        }
        let change = self
            .reconfig
            .next_step()
            .expect("a plan was just drawn or is pending")
            .clone();
        for id in new_nodes(&change) {
            if !self.nodes.contains_key(&id) {
                self.spawn(id, Disk::new(keel_raft::Membership::default()))?;
            }
        }
        match self.propose_membership(leader, change)? {
            Ok(_) => self.reconfig.advance(),
            Err(e) => self
                .reconfig
                .failed(matches!(e, ProposeError::Membership(_))),
        }
        Ok(())
    }

    /// Has `leader` propose `change`, and traces the attempt.
    pub(crate) fn propose_membership(
        &mut self,
        leader: NodeId,
        change: MembershipChange,
    ) -> Result<Result<Proposal, ProposeError>, Violation> {
        let described = format!("{change:?}");
        let result = self
            .with_node(leader, |n, ctx| {
                n.call(|r| r.propose_membership(change), ctx)
            })?
            .expect("the leader runs");
        self.trace.record(
            self.now,
            TraceEvent::Membership {
                leader,
                change: described,
                result: match &result {
                    Ok(p) => format!("appended at {}", p.index),
                    Err(e) => e.to_string(),
                },
            },
        );
        Ok(result)
    }

    /// Shuts down nodes no configuration names any more.
    pub(crate) fn stop_unreferenced(&mut self) {
        for id in self.node_ids() {
            if self.nodes[&id].liveness != Liveness::Stopped && !self.referenced(id) {
                self.nodes.get_mut(&id).expect("listed").stop();
                self.discard_deferred(id);
                self.trace.record(self.now, TraceEvent::Stop(id));
            }
        }
    }

    /// Brings back shut-down nodes that a configuration names again (a
    /// removal that was overwritten before it committed).
    pub(crate) fn revive_referenced(&mut self) -> Result<(), Violation> {
        for id in self.node_ids() {
            if self.nodes[&id].liveness == Liveness::Stopped && self.referenced(id) {
                self.restart(id)?;
            }
        }
        Ok(())
    }

    fn transfer(&mut self) -> Result<(), Violation> {
        let Some(leader) = self.leader() else {
            return Ok(());
        };
        let voters: Vec<NodeId> = self.nodes[&leader]
            .raft()
            .expect("the leader runs")
            .membership()
            .voters()
            .iter()
            .copied()
            .filter(|&v| v != leader)
            .collect();
        if voters.is_empty() {
            return Ok(());
        }
        let target = *self.rng.pick(&voters);
        self.count(FaultKind::Transfer);
        self.trace
            .record(self.now, TraceEvent::Transfer { leader, target });
        self.with_node(leader, |n, ctx| {
            n.call(|r| r.transfer_leader(target).map(drop), ctx)
        })?;
        Ok(())
    }

    /// The heal phase: every fault stops, every needed node runs again.
    pub(crate) fn heal(&mut self) -> Result<(), Violation> {
        self.healing = true;
        self.trace.record(self.now, TraceEvent::Phase("heal"));
        self.network.heal();
        self.network.set_profile(NetworkProfile::calm());
        self.reconfig.clear();
        for id in self.node_ids() {
            match self.nodes[&id].liveness {
                Liveness::Paused => self.resume(id)?,
                Liveness::Down => self.restart(id)?,
                Liveness::Up | Liveness::Stopped => {}
            }
            let latency = self.base_sync_latency[&id];
            self.nodes.get_mut(&id).expect("listed").sync_latency = latency;
        }
        self.stop_unreferenced();
        // A configuration change that was in flight may still be rolled
        // back while the cluster settles, orphaning the node it added.
        for k in 1..=crate::sim::SETTLE_TICKS / 10 {
            self.schedule(self.now.plus(Micros::ticks(10 * k)), Event::Cleanup);
        }
        self.revive_referenced()
    }
}

/// Nodes a change adds that may not exist yet.
fn new_nodes(change: &MembershipChange) -> Vec<NodeId> {
    match change {
        MembershipChange::AddLearner { id, .. } | MembershipChange::AddVoter { id, .. } => {
            vec![*id]
        }
        MembershipChange::Joint {
            voters, learners, ..
        } => voters.iter().chain(learners).copied().collect(),
        _ => Vec::new(),
    }
}
