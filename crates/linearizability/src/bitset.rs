//! A fixed-size bitset used as the "which operations are linearized" part
//! of the search's memoisation key.
//!
//! The search hashes and clones this set once per attempted step, so it is
//! a plain `Vec<u64>`: one word per 64 operations, cheap to hash and copy.

/// A set of operation indices in `0..len`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    /// An empty set able to hold indices `0..len`.
    pub(crate) fn new(len: usize) -> Self {
        Bitset {
            words: vec![0; len.div_ceil(64)],
        }
    }

    pub(crate) fn insert(&mut self, index: usize) {
        self.words[index / 64] |= 1 << (index % 64);
    }

    pub(crate) fn remove(&mut self, index: usize) {
        self.words[index / 64] &= !(1 << (index % 64));
    }

    pub(crate) fn contains(&self, index: usize) -> bool {
        self.words[index / 64] & (1 << (index % 64)) != 0
    }

    /// The smallest index `>= from` that is not a member; may be past the
    /// end of the universe (callers clamp it).
    pub(crate) fn next_absent(&self, from: usize) -> usize {
        let mut word = from / 64;
        if word >= self.words.len() {
            return from;
        }
        // Treat bits below `from` in the first word as members.
        let mut bits = self.words[word] | ((1u64 << (from % 64)) - 1);
        loop {
            if bits != u64::MAX {
                return word * 64 + bits.trailing_ones() as usize;
            }
            word += 1;
            match self.words.get(word) {
                Some(&w) => bits = w,
                None => return word * 64,
            }
        }
    }

    /// Whether every member of `self` is a member of `other` (both sized
    /// for the same universe).
    pub(crate) fn is_subset(&self, other: &Bitset) -> bool {
        self.words
            .iter()
            .zip(&other.words)
            .all(|(mine, theirs)| mine & !theirs == 0)
    }

    /// Number of members.
    pub(crate) fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_contains_across_word_boundaries() {
        let mut set = Bitset::new(130);
        for i in [0, 63, 64, 129] {
            assert!(!set.contains(i));
            set.insert(i);
            assert!(set.contains(i));
        }
        assert_eq!(set.count(), 4);
        set.remove(64);
        assert!(!set.contains(64));
        assert!(set.contains(63));
        assert_eq!(set.count(), 3);
    }

    #[test]
    fn next_absent_skips_members() {
        let mut set = Bitset::new(200);
        assert_eq!(set.next_absent(0), 0);
        for i in 0..130 {
            set.insert(i);
        }
        set.remove(5);
        assert_eq!(set.next_absent(0), 5);
        assert_eq!(set.next_absent(6), 130);
        assert_eq!(set.next_absent(64), 130);
        assert_eq!(set.next_absent(150), 150);
        assert_eq!(set.next_absent(500), 500);
        let mut full = Bitset::new(64);
        for i in 0..64 {
            full.insert(i);
        }
        assert_eq!(full.next_absent(3), 64);
    }

    #[test]
    fn subset_is_word_wise() {
        let mut small = Bitset::new(100);
        let mut big = Bitset::new(100);
        assert!(small.is_subset(&big));
        small.insert(70);
        assert!(!small.is_subset(&big));
        big.insert(70);
        big.insert(3);
        assert!(small.is_subset(&big));
        assert!(!big.is_subset(&small));
    }

    #[test]
    fn equal_sets_are_equal_regardless_of_history() {
        let mut a = Bitset::new(70);
        let mut b = Bitset::new(70);
        a.insert(5);
        a.insert(69);
        a.remove(5);
        b.insert(69);
        assert_eq!(a, b);
    }
}
