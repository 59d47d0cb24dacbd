//! The newest entries of the log, kept in memory.
//!
//! It serves two purposes with one structure: it holds every entry that is
//! appended but not yet synced (those exist nowhere else), and it keeps a
//! bounded number of recent synced entries so that replication to followers
//! that are only a little behind never touches the disk.

use std::collections::VecDeque;

use keel_raft::{Entry, LogIndex};

/// A contiguous run of entries ending at the log's last index.
///
/// Invariant: `entries[k].index == entries[0].index + k`, and `bytes` is the
/// sum of their [`Entry::size_bytes`].
#[derive(Debug)]
pub(crate) struct RecentEntries {
    entries: VecDeque<Entry>,
    bytes: u64,
    bytes_max: u64,
}

impl RecentEntries {
    pub fn new(bytes_max: u64) -> RecentEntries {
        RecentEntries {
            entries: VecDeque::new(),
            bytes: 0,
            bytes_max,
        }
    }

    /// Index of the oldest cached entry, if any.
    pub fn first_index(&self) -> Option<LogIndex> {
        self.entries.front().map(|e| e.index)
    }

    pub fn get(&self, index: LogIndex) -> Option<&Entry> {
        let offset = index.0.checked_sub(self.first_index()?.0)?;
        self.entries.get(usize::try_from(offset).ok()?)
    }

    /// Appends `entry`, first dropping cached entries at or after its index;
    /// if it does not join the cached run, the run restarts at `entry`.
    pub fn push(&mut self, entry: Entry) {
        self.truncate_from(entry.index);
        if self
            .entries
            .back()
            .is_some_and(|b| b.index.next() != entry.index)
        {
            self.clear();
        }
        self.bytes += entry.size_bytes();
        self.entries.push_back(entry);
    }

    /// Drops entries with index `>= index`.
    pub fn truncate_from(&mut self, index: LogIndex) {
        while self.entries.back().is_some_and(|e| e.index >= index) {
            let e = self.entries.pop_back().expect("back exists");
            self.bytes -= e.size_bytes();
        }
    }

    /// Drops entries with index `<= index` (they were compacted).
    pub fn drop_through(&mut self, index: LogIndex) {
        while self.entries.front().is_some_and(|e| e.index <= index) {
            self.pop_front();
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Evicts the oldest entries while over budget, but never one at or
    /// after `unsynced_from`: those are not on disk yet.
    pub fn evict(&mut self, unsynced_from: LogIndex) {
        while self.bytes > self.bytes_max
            && self
                .entries
                .front()
                .is_some_and(|e| e.index < unsynced_from)
        {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        let e = self.entries.pop_front().expect("front exists");
        self.bytes -= e.size_bytes();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use keel_raft::{Payload, Term};

    fn entry(index: u64) -> Entry {
        Entry {
            term: Term(1),
            index: LogIndex(index),
            payload: Payload::Command(Bytes::from(vec![0u8; 84])),
        }
    }

    #[test]
    fn eviction_respects_budget_but_keeps_unsynced_entries() {
        let mut cache = RecentEntries::new(250); // each entry is 100 bytes
        for i in 1..=5 {
            cache.push(entry(i));
        }
        cache.evict(LogIndex(2));
        assert_eq!(
            cache.first_index(),
            Some(LogIndex(2)),
            "entries >= 2 are unsynced"
        );
        cache.evict(LogIndex(6));
        assert_eq!(cache.first_index(), Some(LogIndex(4)));
        assert!(cache.get(LogIndex(3)).is_none());
        assert_eq!(cache.get(LogIndex(5)).unwrap().index, LogIndex(5));
    }

    #[test]
    fn push_overwrites_suffix_and_restarts_on_discontinuity() {
        let mut cache = RecentEntries::new(u64::MAX);
        for i in 1..=5 {
            cache.push(entry(i));
        }
        cache.push(entry(3));
        assert!(cache.get(LogIndex(4)).is_none());
        cache.push(entry(10));
        assert_eq!(cache.first_index(), Some(LogIndex(10)));
        cache.drop_through(LogIndex(10));
        assert_eq!(cache.first_index(), None);
    }
}
