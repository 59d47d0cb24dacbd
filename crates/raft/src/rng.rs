//! The node's only source of randomness.
//!
//! A hand-written SplitMix64 rather than a crate's generator: the sequence for
//! a seed must never change between crate versions, or a simulator seed that
//! failed last month would no longer reproduce.

/// A small, seeded, deterministic generator (Steele, Lea & Flood, 2014).
#[derive(Clone, Debug)]
pub(crate) struct Rng {
    state: u64,
}

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `[low, high)`. Precondition: `low < high`.
    pub(crate) fn in_range(&mut self, low: u32, high: u32) -> u32 {
        assert!(low < high, "empty range {low}..{high}");
        let span = u64::from(high - low);
        low + (self.next_u64() % span) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn range_is_half_open() {
        let mut rng = Rng::new(1);
        let draws: Vec<u32> = (0..1000).map(|_| rng.in_range(10, 20)).collect();
        assert!(draws.iter().all(|&d| (10..20).contains(&d)));
        assert!(draws.contains(&10) && draws.contains(&19));
    }
}
