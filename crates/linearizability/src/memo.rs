//! The memo table of configurations already explored, with dominance.
//!
//! A configuration is (known operations placed, model state, unknown
//! operations used). Lowe's memoisation skips a configuration seen before.
//! This table skips more: a configuration is also skipped if one with the
//! same known set and state but a *subset* of its unknown operations was
//! seen, because using fewer unknown operations never removes options (an
//! unused unknown operation may simply never take effect). Without this,
//! every combination of indeterminate operations is a new configuration and
//! the search is exponential in their number.

use std::collections::HashMap;

use crate::bitset::Bitset;

#[derive(Debug, Default)]
pub(crate) struct Memo {
    /// For each (known set, state): the ⊆-minimal unknown sets seen.
    seen: HashMap<(Bitset, Option<u32>), Vec<Bitset>>,
}

impl Memo {
    /// Records the configuration and returns `true` if no configuration
    /// recorded earlier dominates it (so it is worth exploring).
    pub(crate) fn visit(&mut self, known: &Bitset, state: Option<u32>, unknown: &Bitset) -> bool {
        let minimal = self.seen.entry((known.clone(), state)).or_default();
        if minimal.iter().any(|seen| seen.is_subset(unknown)) {
            return false;
        }
        // Anything it dominates can no longer prune something it would not.
        minimal.retain(|seen| !unknown.is_subset(seen));
        minimal.push(unknown.clone());
        true
    }

    /// Whether a configuration recorded by [`Memo::visit`] is still
    /// minimal, i.e. no configuration with strictly fewer unknown
    /// operations has been recorded since. Deferred configurations that are
    /// no longer minimal need not be explored.
    pub(crate) fn is_minimal(&self, known: &Bitset, state: Option<u32>, unknown: &Bitset) -> bool {
        self.seen
            .get(&(known.clone(), state))
            .is_some_and(|minimal| minimal.contains(unknown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(len: usize, members: &[usize]) -> Bitset {
        let mut s = Bitset::new(len);
        for &m in members {
            s.insert(m);
        }
        s
    }

    #[test]
    fn exact_repeats_are_skipped() {
        let mut memo = Memo::default();
        let known = set(4, &[0, 2]);
        assert!(memo.visit(&known, Some(1), &set(0, &[])));
        assert!(!memo.visit(&known, Some(1), &set(0, &[])));
        assert!(memo.visit(&known, Some(2), &set(0, &[])));
        assert!(memo.visit(&set(4, &[0]), Some(1), &set(0, &[])));
    }

    #[test]
    fn more_unknown_operations_used_is_dominated() {
        let mut memo = Memo::default();
        let known = set(3, &[1]);
        assert!(memo.visit(&known, None, &set(5, &[0, 3])));
        assert!(!memo.visit(&known, None, &set(5, &[0, 3, 4])));
        assert!(memo.visit(&known, None, &set(5, &[1])));
        assert!(memo.visit(&known, None, &set(5, &[0])));
        // {0} replaced {0, 3}; {0, 1} is dominated by either minimal set.
        assert_eq!(memo.seen[&(known.clone(), None)].len(), 2);
        assert!(!memo.visit(&known, None, &set(5, &[0, 1])));
        assert!(memo.is_minimal(&known, None, &set(5, &[0])));
        assert!(!memo.is_minimal(&known, None, &set(5, &[0, 3])));
    }
}
