//! The node's view of its log: a compacted prefix described by a snapshot,
//! the entries after it, and how far they have been persisted, committed and
//! applied.
//!
//! The caller owns durability. This view records which entries it has handed
//! out for persistence and which the caller has confirmed durable.

use crate::entry::{Entry, Payload, SnapshotMeta};
use crate::membership::Membership;
use crate::types::{LogIndex, Term};

/// In-memory log of one node.
///
/// Invariant: `entries[k].index == snapshot.index + 1 + k`.
/// Invariant: `applied <= applying <= committed <= last_index()`.
/// Invariant: `persisted <= handed_out <= last_index()`.
#[derive(Clone, Debug)]
pub(crate) struct RaftLog {
    /// The compacted prefix: everything at or below `snapshot.index`.
    snapshot: SnapshotMeta,
    entries: Vec<Entry>,
    committed: LogIndex,
    /// Highest index the caller confirmed durable.
    persisted: LogIndex,
    /// Highest index handed to the caller for persistence.
    handed_out: LogIndex,
    /// Highest index handed to the caller for applying.
    applying: LogIndex,
    /// Highest index the caller confirmed applied.
    applied: LogIndex,
}

impl RaftLog {
    /// A log recovered from durable state: everything in it is persisted.
    pub(crate) fn restore(
        snapshot: SnapshotMeta,
        entries: Vec<Entry>,
        commit: LogIndex,
    ) -> RaftLog {
        let last = entries.last().map_or(snapshot.index, |e| e.index);
        let base = snapshot.index;
        RaftLog {
            snapshot,
            entries,
            committed: commit.clamp(base, last),
            persisted: last,
            handed_out: last,
            applying: base,
            applied: base,
        }
    }

    pub(crate) fn snapshot(&self) -> &SnapshotMeta {
        &self.snapshot
    }

    /// The first index still held as an entry.
    pub(crate) fn first_index(&self) -> LogIndex {
        self.snapshot.index.next()
    }

    pub(crate) fn last_index(&self) -> LogIndex {
        self.entries.last().map_or(self.snapshot.index, |e| e.index)
    }

    pub(crate) fn last_term(&self) -> Term {
        self.entries.last().map_or(self.snapshot.term, |e| e.term)
    }

    pub(crate) fn committed(&self) -> LogIndex {
        self.committed
    }

    pub(crate) fn persisted(&self) -> LogIndex {
        self.persisted
    }

    pub(crate) fn applied(&self) -> LogIndex {
        self.applied
    }

    /// The term of the entry at `index`, or `None` if it was compacted away
    /// or does not exist yet.
    pub(crate) fn term(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot.index {
            return Some(self.snapshot.term);
        }
        self.entry(index).map(|e| e.term)
    }

    pub(crate) fn entry(&self, index: LogIndex) -> Option<&Entry> {
        if index <= self.snapshot.index {
            return None;
        }
        self.entries.get((index.0 - self.first_index().0) as usize)
    }

    /// Whether this log holds an entry `(index, term)`; by Log Matching it
    /// then holds the same prefix as any log that does (§5.3).
    pub(crate) fn matches(&self, index: LogIndex, term: Term) -> bool {
        self.term(index) == Some(term)
    }

    /// The election restriction (§5.4.1): a log ending in `(index, term)` is
    /// at least as up to date as this one.
    pub(crate) fn is_up_to_date(&self, index: LogIndex, term: Term) -> bool {
        term > self.last_term() || (term == self.last_term() && index >= self.last_index())
    }

    /// Entries in `[from, ..]` whose total size stays within `max_bytes`,
    /// always at least one if any exist.
    pub(crate) fn entries_from(&self, from: LogIndex, max_bytes: u64) -> Vec<Entry> {
        assert!(
            from > self.snapshot.index,
            "entries from {from} were compacted"
        );
        let start = (from.0 - self.first_index().0) as usize;
        let mut bytes = 0;
        let mut out = Vec::new();
        for entry in self.entries.iter().skip(start) {
            bytes += entry.size_bytes();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(entry.clone());
        }
        out
    }

    /// Appends entries that follow `prev_index`, which must match. Entries
    /// this log already has are skipped; from the first conflicting one on,
    /// the log is replaced (§5.3). Returns the index of the last entry the
    /// leader's message vouches for, and the index from which entries were
    /// written, if any were.
    pub(crate) fn append_after(
        &mut self,
        prev_index: LogIndex,
        entries: &[Entry],
    ) -> (LogIndex, Option<LogIndex>) {
        let vouched = prev_index.plus(entries.len() as u64);
        let fresh = entries
            .iter()
            .position(|e| !self.matches(e.index, e.term) && e.index > self.snapshot.index);
        if let Some(start) = fresh {
            let first_new = entries[start].index;
            assert!(
                first_new > self.committed,
                "Log Matching violated: truncating committed entry {first_new} (commit {})",
                self.committed
            );
            self.truncate_from(first_new);
            self.entries.extend_from_slice(&entries[start..]);
            return (vouched, Some(first_new));
        }
        (vouched, None)
    }

    /// Appends one entry at the end of the log (the leader's path).
    pub(crate) fn push(&mut self, term: Term, payload: Payload) -> LogIndex {
        let index = self.last_index().next();
        self.entries.push(Entry {
            term,
            index,
            payload,
        });
        index
    }

    fn truncate_from(&mut self, index: LogIndex) {
        let keep = (index.0 - self.first_index().0) as usize;
        self.entries.truncate(keep);
        let last = self.last_index();
        self.handed_out = self.handed_out.min(last);
        self.persisted = self.persisted.min(last);
    }

    /// Moves the commit index forward; it never moves back.
    pub(crate) fn commit_to(&mut self, index: LogIndex) -> bool {
        if index <= self.committed {
            return false;
        }
        assert!(
            index <= self.last_index(),
            "commit {index} beyond last index {}",
            self.last_index()
        );
        self.committed = index;
        true
    }

    /// Entries not yet handed out for persistence; marks them handed out.
    pub(crate) fn take_unpersisted(&mut self) -> Vec<Entry> {
        let from = self.handed_out.next().max(self.first_index());
        let out = if from <= self.last_index() {
            self.entries_from(from, u64::MAX)
        } else {
            Vec::new()
        };
        self.handed_out = self.last_index();
        out
    }

    pub(crate) fn has_unpersisted(&self) -> bool {
        self.handed_out < self.last_index()
    }

    /// Records that the caller made the log durable up to `(index, term)`.
    /// An acknowledgement for entries since replaced is ignored.
    pub(crate) fn persisted_to(&mut self, index: LogIndex, term: Term) -> bool {
        if index <= self.persisted || index > self.handed_out || !self.matches(index, term) {
            return false;
        }
        self.persisted = index;
        true
    }

    /// Committed, durable entries not yet handed out for applying; marks them
    /// handed out. Applying waits for local durability so that a restarted
    /// node never finds its state machine ahead of its own log.
    pub(crate) fn take_committed(&mut self) -> Vec<Entry> {
        let upto = self.committed.min(self.persisted);
        if upto <= self.applying {
            return Vec::new();
        }
        let from = self.applying.next();
        let start = (from.0 - self.first_index().0) as usize;
        let end = (upto.0 - self.first_index().0) as usize + 1;
        self.applying = upto;
        self.entries[start..end].to_vec()
    }

    pub(crate) fn has_committed_to_apply(&self) -> bool {
        self.committed.min(self.persisted) > self.applying
    }

    pub(crate) fn applied_to(&mut self, index: LogIndex) {
        assert!(
            index <= self.applying,
            "applied {index} was never handed out (applying {})",
            self.applying
        );
        self.applied = self.applied.max(index);
    }

    /// Forgets entries at or below `meta.index`, which a snapshot now covers.
    /// Only applied entries may be compacted.
    pub(crate) fn compact(&mut self, meta: SnapshotMeta) {
        assert!(
            meta.index <= self.applied,
            "compacting to {} beyond applied {}",
            meta.index,
            self.applied
        );
        if meta.index <= self.snapshot.index {
            return;
        }
        assert_eq!(
            self.term(meta.index),
            Some(meta.term),
            "snapshot term mismatch"
        );
        let drop = (meta.index.0 - self.snapshot.index.0) as usize;
        self.entries.drain(..drop);
        self.snapshot = meta;
    }

    /// Replaces the whole log by a snapshot received from the leader (§7).
    pub(crate) fn install_snapshot(&mut self, meta: SnapshotMeta) {
        assert!(
            meta.index > self.committed,
            "installing a snapshot below commit"
        );
        let index = meta.index;
        self.entries.clear();
        self.snapshot = meta;
        self.committed = index;
        self.handed_out = index;
        self.persisted = self.persisted.min(index.prev());
        self.applying = index;
        self.applied = index;
    }

    /// The last index at or below `upto` whose term is `term`, if any.
    pub(crate) fn last_index_of_term(&self, term: Term, upto: LogIndex) -> Option<LogIndex> {
        let upto = upto.min(self.last_index());
        let mut index = upto;
        while index > self.snapshot.index {
            let t = self.term(index).expect("index within the log");
            if t == term {
                return Some(index);
            }
            if t < term {
                return None;
            }
            index = index.prev();
        }
        (self.snapshot.term == term && self.snapshot.index <= upto).then_some(self.snapshot.index)
    }

    /// The first index of the run of entries with `index`'s term that ends at
    /// `index` (the conflict hint of §5.3).
    pub(crate) fn first_index_of_term_at(&self, index: LogIndex) -> LogIndex {
        let term = self.term(index).expect("hint asked for an existing entry");
        let mut first = index;
        while first.prev() > self.snapshot.index && self.term(first.prev()) == Some(term) {
            first = first.prev();
        }
        first
    }

    /// The configuration in force at the end of the log and the index of the
    /// entry that set it (0 for the snapshot's).
    pub(crate) fn latest_membership(&self) -> (LogIndex, Membership) {
        self.entries
            .iter()
            .rev()
            .find_map(|e| match &e.payload {
                Payload::Membership(m) => Some((e.index, m.clone())),
                _ => None,
            })
            .unwrap_or_else(|| (self.snapshot.index, self.snapshot.membership.clone()))
    }

    /// Whether the last committed entry is from `term`. For a leader of
    /// `term` this says it has committed an entry of its own term, which
    /// reads need (§6.4) because terms in a log never decrease.
    pub(crate) fn committed_in_term(&self, term: Term) -> bool {
        self.term(self.committed) == Some(term)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta(index: u64, term: u64) -> SnapshotMeta {
        SnapshotMeta {
            index: LogIndex(index),
            term: Term(term),
            membership: Membership::default(),
        }
    }

    fn entries(terms: &[u64], first: u64) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(k, &t)| Entry {
                term: Term(t),
                index: LogIndex(first + k as u64),
                payload: Payload::Blank,
            })
            .collect()
    }

    #[test]
    fn section_5_3_conflicting_suffix_is_replaced() {
        let mut log = RaftLog::restore(meta(0, 0), entries(&[1, 1, 2, 2], 1), LogIndex(1));
        let (vouched, written) = log.append_after(LogIndex(2), &entries(&[3, 3, 3], 3));
        assert_eq!((vouched, written), (LogIndex(5), Some(LogIndex(3))));
        assert_eq!(log.last_index(), LogIndex(5));
        assert_eq!(log.term(LogIndex(3)), Some(Term(3)));
        assert_eq!(
            log.persisted(),
            LogIndex(2),
            "the replaced tail is no longer durable"
        );
    }

    #[test]
    fn section_5_3_stale_append_does_not_truncate() {
        let mut log = RaftLog::restore(meta(0, 0), entries(&[1, 1, 1, 1], 1), LogIndex(0));
        let (vouched, written) = log.append_after(LogIndex(0), &entries(&[1, 1], 1));
        assert_eq!((vouched, written), (LogIndex(2), None));
        assert_eq!(
            log.last_index(),
            LogIndex(4),
            "an old, shorter message keeps the tail"
        );
    }

    #[test]
    fn section_5_4_1_up_to_date_compares_term_then_index() {
        let log = RaftLog::restore(meta(0, 0), entries(&[1, 2, 2], 1), LogIndex(0));
        assert!(log.is_up_to_date(LogIndex(1), Term(3)));
        assert!(log.is_up_to_date(LogIndex(3), Term(2)));
        assert!(!log.is_up_to_date(LogIndex(2), Term(2)));
        assert!(!log.is_up_to_date(LogIndex(9), Term(1)));
    }

    #[test]
    fn apply_waits_for_local_durability() {
        let mut log = RaftLog::restore(meta(0, 0), vec![], LogIndex(0));
        log.append_after(LogIndex(0), &entries(&[1, 1], 1));
        log.commit_to(LogIndex(2));
        assert!(log.take_committed().is_empty());
        assert_eq!(log.take_unpersisted().len(), 2);
        assert!(log.persisted_to(LogIndex(2), Term(1)));
        assert_eq!(log.take_committed().len(), 2);
    }

    #[test]
    fn compaction_keeps_terms_at_the_boundary() {
        let mut log = RaftLog::restore(meta(0, 0), entries(&[1, 1, 2], 1), LogIndex(3));
        assert_eq!(log.take_committed().len(), 3);
        log.applied_to(LogIndex(3));
        log.compact(meta(2, 1));
        assert_eq!(log.first_index(), LogIndex(3));
        assert_eq!(log.term(LogIndex(2)), Some(Term(1)));
        assert_eq!(log.term(LogIndex(1)), None);
        assert_eq!(
            log.last_index_of_term(Term(1), LogIndex(3)),
            Some(LogIndex(2))
        );
    }

    proptest! {
        /// Log Matching (§5.3): after appending any leader's suffix at a
        /// matching point, the log equals the leader's log up to the vouched
        /// index.
        #[test]
        fn log_matching_after_append(
            theirs in proptest::collection::vec(1u64..4, 0..12),
            shared in 0usize..12,
            divergent in proptest::collection::vec(10u64..13, 0..6),
            cut in 0usize..12,
        ) {
            // Two logs that obey Log Matching: a shared prefix, then our own
            // entries from terms the leader never had.
            let mut theirs_sorted = theirs.clone();
            theirs_sorted.sort_unstable();
            let mut ours_terms: Vec<u64> = theirs_sorted[..shared.min(theirs_sorted.len())].to_vec();
            let mut divergent = divergent.clone();
            divergent.sort_unstable();
            ours_terms.extend(divergent);
            let leader = entries(&theirs_sorted, 1);
            let mut log = RaftLog::restore(meta(0, 0), entries(&ours_terms, 1), LogIndex(0));
            let prev = cut.min(leader.len());
            let prev_term = if prev == 0 { Term(0) } else { leader[prev - 1].term };
            if log.matches(LogIndex(prev as u64), prev_term) {
                let (vouched, _) = log.append_after(LogIndex(prev as u64), &leader[prev..]);
                prop_assert_eq!(vouched, LogIndex(leader.len() as u64));
                for e in &leader {
                    prop_assert_eq!(log.term(e.index), Some(e.term));
                }
            }
        }
    }
}
