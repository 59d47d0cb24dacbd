//! The faults of a full-stack run: crashes that lose unsynced writes,
//! partitions, pauses, slow and failing disks at random moments (the
//! random profile), or the targeted rounds of the paused-leader and
//! restarted-reader profiles; and the heal that ends them all.

use std::collections::BTreeSet;

use keel::node_loop::Input;
use keel_raft::{NodeId, Role};

use super::StackProfile;
use super::app::App;
use super::events::Event;
use super::world::{Slot, World};
use crate::network::NetworkProfile;
use crate::time::{Micros, TICK};

impl<A: App> World<A> {
    pub(super) fn schedule_fault(&mut self) {
        let after = Micros::ticks(self.rng.between(10, 60));
        self.schedule(after, Event::Fault);
    }

    pub(super) fn fault(&mut self) {
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
        if self.config.raft.fast_failover {
            // Some cut links reset rather than go silent: the stream's
            // receiver hears of it, although the sender lives on.
            for &(from, to) in &cut {
                if self.rng.chance(300) {
                    self.report_disconnect(to, from);
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

    pub(super) fn resume(&mut self, id: NodeId) {
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

    pub(super) fn heal(&mut self) {
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
}
