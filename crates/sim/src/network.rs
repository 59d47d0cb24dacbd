//! The simulated network: per-message loss, duplication, delay and hence
//! reordering, and partitions as a set of cut directed links.

use std::collections::BTreeSet;

use keel_raft::NodeId;

use crate::rng::Rng;
use crate::time::{Micros, TICK};

/// How badly the network behaves; drawn once per run from its seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkProfile {
    pub loss_per_mille: u64,
    pub duplicate_per_mille: u64,
    /// Every message takes a delay drawn from `[delay_min, delay_max]`;
    /// overlapping ranges reorder messages.
    pub delay_min: Micros,
    pub delay_max: Micros,
    /// Occasionally a message is held back far longer (a congested path).
    pub spike_per_mille: u64,
    pub spike_max: Micros,
}

impl NetworkProfile {
    /// A healthy network: no loss, short delays. The heal phase uses it.
    pub fn calm() -> NetworkProfile {
        NetworkProfile {
            loss_per_mille: 0,
            duplicate_per_mille: 0,
            delay_min: Micros(100),
            delay_max: Micros(1_000),
            spike_per_mille: 0,
            spike_max: Micros(0),
        }
    }

    /// A faulty network, its rates drawn from `rng`.
    pub fn draw(rng: &mut Rng) -> NetworkProfile {
        let delay_min = Micros(rng.between(50, 500));
        NetworkProfile {
            loss_per_mille: *rng.pick(&[0, 5, 20, 50, 100]),
            duplicate_per_mille: *rng.pick(&[0, 5, 20, 50]),
            delay_min,
            delay_max: Micros(delay_min.0 + rng.between(100, TICK.0 / 2)),
            spike_per_mille: *rng.pick(&[0, 2, 10, 30]),
            spike_max: Micros::ticks(rng.between(2, 15)),
        }
    }
}

/// What the network decided for one message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fate {
    /// After how long each copy arrives; empty when the message is lost.
    pub delays: Vec<Micros>,
    pub lost: bool,
    pub duplicated: bool,
    pub spiked: bool,
}

#[derive(Debug)]
pub struct Network {
    rng: Rng,
    profile: NetworkProfile,
    /// Directed links that drop everything: `(from, to)`.
    cut: BTreeSet<(NodeId, NodeId)>,
}

impl Network {
    pub fn new(rng: Rng, profile: NetworkProfile) -> Network {
        Network {
            rng,
            profile,
            cut: BTreeSet::new(),
        }
    }

    pub fn set_profile(&mut self, profile: NetworkProfile) {
        self.profile = profile;
    }

    /// Draws the fate of a message being sent now. Partitions are applied
    /// at delivery, so a message in flight when a link is cut is lost too.
    pub fn send(&mut self) -> Fate {
        let p = &self.profile;
        let mut fate = Fate::default();
        if self.rng.chance(p.loss_per_mille) {
            fate.lost = true;
            return fate;
        }
        let copies = if self.rng.chance(p.duplicate_per_mille) {
            fate.duplicated = true;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut delay = Micros(self.rng.between(p.delay_min.0, p.delay_max.0));
            if p.spike_per_mille > 0 && self.rng.chance(p.spike_per_mille) {
                fate.spiked = true;
                delay = delay.plus(Micros(self.rng.between(TICK.0, p.spike_max.0.max(TICK.0))));
            }
            fate.delays.push(delay);
        }
        fate
    }

    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cut.contains(&(from, to))
    }

    pub fn partition(&mut self, cut: BTreeSet<(NodeId, NodeId)>) {
        self.cut = cut;
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    pub fn is_partitioned(&self) -> bool {
        !self.cut.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calm_network_delivers_everything_once() {
        let mut net = Network::new(Rng::new(1), NetworkProfile::calm());
        for _ in 0..1000 {
            let fate = net.send();
            assert_eq!(fate.delays.len(), 1);
            assert!(fate.delays[0] <= Micros(1_000));
        }
    }
}
