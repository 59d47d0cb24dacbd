//! The moves the targeted profiles share: finding the leaders through the
//! public `Raft` API, as an operator's nemesis would, and cutting and
//! healing the network around them. A profile's partition replaces any
//! random one and outlives it: the epoch bump voids pending random heals.

use std::collections::BTreeSet;

use keel_raft::{NodeId, Role, Status};

use crate::sim::Simulation;
use crate::trace::TraceEvent;

impl Simulation {
    /// The status of a running leader that satisfies `pred`, the one of
    /// the highest term if several do.
    pub(crate) fn leader_status(&self, pred: impl Fn(&Status) -> bool) -> Option<Status> {
        self.nodes
            .values()
            .filter(|n| n.is_up())
            .filter_map(|n| n.raft())
            .filter(|r| r.role() == Role::Leader)
            .map(|r| r.status())
            .filter(|s| pred(s))
            .max_by_key(|s| s.term)
    }

    /// Every link between `group` and the other nodes, both ways.
    pub(crate) fn cut_off(&self, group: &[NodeId]) -> BTreeSet<(NodeId, NodeId)> {
        let mut cut = BTreeSet::new();
        for other in self.node_ids().into_iter().filter(|n| !group.contains(n)) {
            for &member in group {
                cut.insert((member, other));
                cut.insert((other, member));
            }
        }
        cut
    }

    /// Replaces the network's partition with `cut`, traced as `kind`.
    pub(crate) fn steer_partition(&mut self, kind: &'static str, cut: BTreeSet<(NodeId, NodeId)>) {
        let shown = cut.iter().map(|&(a, b)| (a.0, b.0)).collect();
        self.trace
            .record(self.now, TraceEvent::Partition { kind, cut: shown });
        self.network.partition(cut);
        self.partition_epoch += 1;
    }

    /// Heals whatever partition is in place.
    pub(crate) fn steer_heal(&mut self) {
        if self.network.is_partitioned() {
            self.network.heal();
            self.partition_epoch += 1;
            self.trace.record(self.now, TraceEvent::HealPartition);
        }
    }
}
