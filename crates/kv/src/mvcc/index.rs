//! The in-memory key index: for every key, the revisions at which it was
//! written or deleted, oldest first.
//!
//! Values live in redb under their revision; the index answers "which
//! revision of key K is visible at revision R" without touching disk. It is
//! rebuilt from the `kv` table on open, so it is never persisted itself.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;

/// A point in the store's history: `main` is the store revision (one per
/// write transaction), `sub` orders the changes inside that transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    /// The redb key of this revision. Revisions are never negative.
    pub fn to_db(self) -> (u64, u64) {
        debug_assert!(self.main >= 0 && self.sub >= 0);
        (self.main as u64, self.sub as u64)
    }

    pub fn from_db((main, sub): (u64, u64)) -> Revision {
        Revision {
            main: main as i64,
            sub: sub as i64,
        }
    }
}

/// One change of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Change {
    rev: Revision,
    tombstone: bool,
}

/// What a live key's latest row says about the key itself, kept here so
/// that a put learns its predecessor's create revision, version and lease
/// without reading the predecessor's row from redb (etcd's key index keeps
/// generations for the same reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Generation {
    pub create_revision: i64,
    pub version: i64,
    pub lease: i64,
}

/// One key's changes, oldest first, and its generation while it is alive.
#[derive(Default, Debug)]
struct History {
    changes: Vec<Change>,
    /// `Some` exactly when the last change is a put.
    live: Option<Generation>,
}

/// A key range `[start, end)` in etcd's encoding: an empty `end` means the
/// single key `start`, and `end == [0]` means "every key >= start".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    pub start: Bytes,
    pub end: Bytes,
}

impl KeyRange {
    pub fn new(start: impl Into<Bytes>, end: impl Into<Bytes>) -> KeyRange {
        KeyRange {
            start: start.into(),
            end: end.into(),
        }
    }

    /// Whether `key` falls in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        if self.end.is_empty() {
            key == self.start.as_ref()
        } else if self.end.as_ref() == [0] {
            key >= self.start.as_ref()
        } else {
            key >= self.start.as_ref() && key < self.end.as_ref()
        }
    }

    /// Whether no key can fall in the range (an end at or before a start
    /// that is not one of etcd's special ends).
    pub fn is_empty(&self) -> bool {
        !self.end.is_empty() && self.end.as_ref() != [0] && self.end.as_ref() <= self.start.as_ref()
    }

    fn bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        let start = Bound::Included(self.start.as_ref());
        if self.end.is_empty() {
            (start, Bound::Included(self.start.as_ref()))
        } else if self.end.as_ref() == [0] {
            (start, Bound::Unbounded)
        } else if self.end.as_ref() <= self.start.as_ref() {
            // An empty range; callers filter it out, but BTreeMap panics on
            // inverted bounds, so never hand it one.
            (start, Bound::Excluded(self.start.as_ref()))
        } else {
            (start, Bound::Excluded(self.end.as_ref()))
        }
    }
}

/// Every key's change history.
#[derive(Default, Debug)]
pub struct KeyIndex {
    keys: BTreeMap<Bytes, History>,
}

impl KeyIndex {
    /// Records a put of `key` at `rev` that leaves the key as `generation`
    /// says.
    /// Invariant: `rev` is greater than every revision recorded for `key`.
    pub fn put(&mut self, key: Bytes, rev: Revision, generation: Generation) {
        self.push(key, rev, Some(generation));
    }

    /// Records a deletion of `key` at `rev`.
    pub fn tombstone(&mut self, key: Bytes, rev: Revision) {
        self.push(key, rev, None);
    }

    fn push(&mut self, key: Bytes, rev: Revision, live: Option<Generation>) {
        let history = self.keys.entry(key).or_default();
        assert!(
            history.changes.last().is_none_or(|last| last.rev < rev),
            "key index revisions must grow"
        );
        history.changes.push(Change {
            rev,
            tombstone: live.is_none(),
        });
        history.live = live;
    }

    /// The revision of `key` visible at store revision `at`, if the key was
    /// alive then.
    pub fn get(&self, key: &[u8], at: i64) -> Option<Revision> {
        visible(&self.keys.get(key)?.changes, at)
    }

    /// The revision and generation of `key`'s latest row, if the key is
    /// alive now.
    pub fn latest(&self, key: &[u8]) -> Option<(Revision, Generation)> {
        let history = self.keys.get(key)?;
        let last = history.changes.last()?;
        history.live.map(|generation| (last.rev, generation))
    }

    /// Every key alive now, in key order, with its generation.
    pub fn live(&self) -> impl Iterator<Item = (&Bytes, Generation)> {
        self.keys
            .iter()
            .filter_map(|(key, history)| history.live.map(|generation| (key, generation)))
    }

    /// The keys in `range` alive at revision `at`, in key order, with the
    /// revision of each that is visible then.
    pub fn range<'a>(
        &'a self,
        range: &'a KeyRange,
        at: i64,
    ) -> impl Iterator<Item = (&'a Bytes, Revision)> + 'a {
        let iter = (!range.is_empty()).then(|| {
            self.keys
                .range::<[u8], _>(range.bounds())
                .filter_map(move |(k, h)| visible(&h.changes, at).map(|rev| (k, rev)))
        });
        iter.into_iter().flatten()
    }

    /// Visits at most `max_keys` keys of `range`, in key order, starting
    /// after `resume` (at the range's start when `None`), and hands `found`
    /// each one alive at revision `at` with its visible revision. Returns
    /// the last key visited when keys of the range remain, so that the
    /// next chunk resumes after it, or `None` at the end of the range.
    ///
    /// A chunked read calls this once per hold of the store's lock: the
    /// bound is on keys *visited*, live or not, because that is what a
    /// hold costs.
    pub(crate) fn scan_chunk(
        &self,
        range: &KeyRange,
        at: i64,
        resume: Option<&Bytes>,
        max_keys: usize,
        mut found: impl FnMut(&Bytes, Revision),
    ) -> Option<Bytes> {
        assert!(max_keys > 0, "a chunk visits at least one key");
        if range.is_empty() {
            return None;
        }
        let (start, end) = range.bounds();
        let start = match resume {
            Some(after) => Bound::Excluded(after.as_ref()),
            None => start,
        };
        if resume.is_some_and(|after| past_end(after, end)) {
            return None;
        }
        let mut keys = self.keys.range::<[u8], _>((start, end));
        let mut last = None;
        for (key, history) in keys.by_ref().take(max_keys) {
            if let Some(rev) = visible(&history.changes, at) {
                found(key, rev);
            }
            last = Some(key);
        }
        let more = keys.next().is_some();
        last.filter(|_| more).cloned()
    }

    /// Forgets history at or before `at` that no read at a revision `>= at`
    /// can see, and returns the revisions whose rows may now be deleted.
    pub fn compact(&mut self, at: i64) -> Vec<Revision> {
        let mut dropped = Vec::new();
        self.keys.retain(|_, History { changes, .. }| {
            // The last change at or before `at` stays visible unless it is a
            // deletion; everything before it is unreachable.
            let keep_from = changes.partition_point(|c| c.rev.main <= at);
            let mut cut = keep_from.saturating_sub(1);
            if keep_from > 0 && changes[cut].tombstone {
                cut = keep_from;
            }
            dropped.extend(changes.drain(..cut).map(|c| c.rev));
            !changes.is_empty()
        });
        dropped
    }

    /// Whether `key`'s change at `rev` is still recorded: a row the index
    /// no longer holds was forgotten by a compaction and is garbage, even
    /// while it waits in the store for its deletion step.
    pub fn holds(&self, key: &[u8], rev: Revision) -> bool {
        self.keys
            .get(key)
            .is_some_and(|h| h.changes.binary_search_by_key(&rev, |c| c.rev).is_ok())
    }

    /// Number of keys with any recorded history (live or not).
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}

/// Whether a scan that resumes after `key` has nothing left before `end`:
/// `BTreeMap::range` refuses bounds that cross.
fn past_end(key: &[u8], end: Bound<&[u8]>) -> bool {
    match end {
        Bound::Included(end) | Bound::Excluded(end) => key >= end,
        Bound::Unbounded => false,
    }
}

fn visible(changes: &[Change], at: i64) -> Option<Revision> {
    let n = changes.partition_point(|c| c.rev.main <= at);
    let last = changes.get(n.checked_sub(1)?)?;
    (!last.tombstone).then_some(last.rev)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(main: i64) -> Revision {
        Revision { main, sub: 0 }
    }

    fn generation(create_revision: i64, version: i64) -> Generation {
        Generation {
            create_revision,
            version,
            lease: 0,
        }
    }

    #[test]
    fn the_latest_generation_is_the_live_one() {
        let mut index = KeyIndex::default();
        assert_eq!(index.latest(b"a"), None);
        index.put(Bytes::from("a"), rev(2), generation(2, 1));
        index.put(Bytes::from("a"), rev(3), generation(2, 2));
        assert_eq!(index.latest(b"a"), Some((rev(3), generation(2, 2))));
        index.put(Bytes::from("b"), rev(4), generation(4, 1));
        index.tombstone(Bytes::from("a"), rev(5));
        assert_eq!(index.latest(b"a"), None);
        let live: Vec<_> = index.live().map(|(k, g)| (k.clone(), g)).collect();
        assert_eq!(live, vec![(Bytes::from("b"), generation(4, 1))]);
        index.put(Bytes::from("a"), rev(6), generation(6, 1));
        index.compact(6);
        assert_eq!(index.latest(b"a"), Some((rev(6), generation(6, 1))));
    }

    #[test]
    fn deleted_key_is_invisible_after_and_visible_before() {
        let mut index = KeyIndex::default();
        index.put(Bytes::from("a"), rev(2), generation(2, 1));
        index.tombstone(Bytes::from("a"), rev(4));
        index.put(Bytes::from("a"), rev(6), generation(6, 1));
        assert_eq!(index.get(b"a", 1), None);
        assert_eq!(index.get(b"a", 3), Some(rev(2)));
        assert_eq!(index.get(b"a", 5), None);
        assert_eq!(index.get(b"a", 9), Some(rev(6)));
    }

    #[test]
    fn compaction_keeps_what_later_reads_see() {
        let mut index = KeyIndex::default();
        index.put(Bytes::from("a"), rev(1), generation(1, 1));
        index.put(Bytes::from("a"), rev(2), generation(1, 2));
        index.put(Bytes::from("b"), rev(3), generation(3, 1));
        index.tombstone(Bytes::from("b"), rev(4));
        let mut dropped = index.compact(4);
        dropped.sort();
        assert_eq!(dropped, vec![rev(1), rev(3), rev(4)]);
        assert_eq!(index.get(b"a", 4), Some(rev(2)));
        assert_eq!(index.key_count(), 1);
        assert!(index.holds(b"a", rev(2)));
        assert!(!index.holds(b"a", rev(1)));
        assert!(!index.holds(b"b", rev(3)));
    }

    #[test]
    fn a_scan_in_chunks_of_any_size_finds_what_one_range_finds() {
        let mut index = KeyIndex::default();
        for (i, k) in ["a", "b", "ba", "bb", "c", "d", "e"].iter().enumerate() {
            index.put(
                Bytes::from(*k),
                rev(i as i64 + 1),
                generation(i as i64 + 1, 1),
            );
        }
        index.tombstone(Bytes::from("bb"), rev(10));
        let ranges = [
            KeyRange::new("b", "d"),
            KeyRange::new("b", ""),
            KeyRange::new("ba", vec![0u8]),
            KeyRange::new(vec![0u8], vec![0u8]),
            KeyRange::new("c", "a"),
            KeyRange::new("zz", ""),
        ];
        for range in &ranges {
            for at in [3, 9, 10] {
                let whole: Vec<_> = index
                    .range(range, at)
                    .map(|(k, r)| (k.clone(), r))
                    .collect();
                for max_keys in 1..=8 {
                    let mut chunked = Vec::new();
                    let mut resume = None;
                    for chunks in 1.. {
                        assert!(chunks <= 8, "a scan of 7 keys ends");
                        resume = index.scan_chunk(range, at, resume.as_ref(), max_keys, |k, r| {
                            chunked.push((k.clone(), r))
                        });
                        if resume.is_none() {
                            break;
                        }
                    }
                    assert_eq!(chunked, whole, "{range:?} at {at} by {max_keys}");
                }
            }
        }
    }

    #[test]
    fn range_encodings_follow_etcd() {
        let mut index = KeyIndex::default();
        for (i, k) in ["a", "ab", "b", "c"].iter().enumerate() {
            index.put(
                Bytes::from(*k),
                rev(i as i64 + 1),
                generation(i as i64 + 1, 1),
            );
        }
        let keys = |r: KeyRange| -> Vec<String> {
            index
                .range(&r, 10)
                .map(|(k, _)| String::from_utf8(k.to_vec()).unwrap())
                .collect()
        };
        assert_eq!(keys(KeyRange::new("a", "")), vec!["a"]);
        assert_eq!(keys(KeyRange::new("a", "b")), vec!["a", "ab"]);
        assert_eq!(keys(KeyRange::new("b", vec![0u8])), vec!["b", "c"]);
        assert_eq!(keys(KeyRange::new(vec![0u8], vec![0u8])).len(), 4);
        assert!(keys(KeyRange::new("c", "a")).is_empty());
    }
}
