//! The in-memory index of the durable log, and the replay rules that build it.
//!
//! Recovery replays every record on disk through [`DurableIndex`], and a live
//! store applies each synced batch through the very same methods. So the
//! state a store reaches by writing and the state it recovers by reading are
//! equal by construction, not by two implementations agreeing.

use std::collections::VecDeque;

use keel_raft::{HardState, LogIndex, Term};

use crate::codec::{CompactPoint, RecordMeta};
use crate::error::Corruption;

/// Where a durable entry lives: O(1) from index to file position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loc {
    /// The segment's sequence number.
    pub seq: u64,
    /// Offset of the frame (its header) in the segment.
    pub offset: u64,
    pub payload_len: u32,
    pub term: Term,
}

/// The durable state: compaction point, entry locations and hard state.
///
/// Invariant (once replay is complete): `locs` holds exactly the entries
/// `base.index + 1 ..= last_index()`, so `first == base.index + 1`.
#[derive(Clone, Debug)]
pub(crate) struct DurableIndex {
    base_index: LogIndex,
    base_term: Term,
    /// Index of `locs[0]`. During replay it can lie above `base_index + 1`
    /// while older segments were deleted and a later compaction record has
    /// not yet been replayed.
    first: LogIndex,
    locs: VecDeque<Loc>,
    hard_state: HardState,
}

impl DurableIndex {
    pub fn new() -> DurableIndex {
        DurableIndex {
            base_index: LogIndex(0),
            base_term: Term(0),
            first: LogIndex(1),
            locs: VecDeque::new(),
            hard_state: HardState::default(),
        }
    }

    /// Replays one record whose frame starts at `offset` in segment `seq`:
    /// the one entry point for recovery and for a live store's synced batches.
    pub fn apply(
        &mut self,
        seq: u64,
        record: RecordMeta,
        offset: u64,
        payload_len: u32,
    ) -> Result<(), Corruption> {
        match record {
            RecordMeta::Entry { index, term } => {
                let loc = Loc {
                    seq,
                    offset,
                    payload_len,
                    term,
                };
                self.apply_entry(index, loc)
            }
            RecordMeta::HardState(hs) => {
                self.apply_hard_state(hs);
                Ok(())
            }
            RecordMeta::Compact(c) => {
                self.apply_compact(c);
                Ok(())
            }
        }
    }

    /// Replays an entry record: it replaces any entries at or after its index.
    pub fn apply_entry(&mut self, index: LogIndex, loc: Loc) -> Result<(), Corruption> {
        if index <= self.base_index {
            return Err(Corruption::EntryBelowCompaction {
                index,
                compacted: self.base_index,
            });
        }
        let last = self.last_index();
        if self.locs.is_empty() || index < self.first {
            // Either the log was empty, or this entry overwrites everything
            // that is known; entries before it may sit in deleted segments
            // and are accounted for by [`DurableIndex::check_complete`].
            self.locs.clear();
            self.first = index;
        } else if index > last.next() {
            return Err(Corruption::IndexGap { last, index });
        } else {
            self.locs.truncate((index.0 - self.first.0) as usize);
        }
        self.locs.push_back(loc);
        Ok(())
    }

    pub fn apply_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    pub fn apply_compact(&mut self, c: CompactPoint) {
        if c.discard_suffix {
            self.locs.clear();
        } else if c.index >= self.first {
            let drop = ((c.index.0 - self.first.0 + 1) as usize).min(self.locs.len());
            self.locs.drain(..drop);
        }
        if c.index >= self.base_index {
            self.base_index = c.index;
            self.base_term = c.term;
        }
        if self.locs.is_empty() || c.index >= self.first {
            self.first = self.base_index.next();
        }
    }

    /// Checks, after replay, that no entries between the compaction point and
    /// the first known entry are missing. Returns the location of the first
    /// entry on failure, so the error can name a file.
    pub fn check_complete(&self) -> Result<(), (Corruption, Loc)> {
        match self.locs.front() {
            Some(&loc) if self.first > self.base_index.next() => Err((
                Corruption::MissingPrefix {
                    first: self.first,
                    compacted: self.base_index,
                },
                loc,
            )),
            _ => Ok(()),
        }
    }

    pub fn base(&self) -> (LogIndex, Term) {
        (self.base_index, self.base_term)
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.first.0 + self.locs.len() as u64 - 1)
    }

    pub fn loc(&self, index: LogIndex) -> Option<&Loc> {
        let offset = index.0.checked_sub(self.first.0)?;
        self.locs.get(usize::try_from(offset).ok()?)
    }

    /// The term of `index`, including the compaction point's.
    pub fn term(&self, index: LogIndex) -> Option<Term> {
        if index == self.base_index {
            return Some(self.base_term);
        }
        self.loc(index).map(|l| l.term)
    }

    /// The oldest segment that a live entry points into.
    pub fn first_live_seq(&self) -> Option<u64> {
        self.locs.front().map(|l| l.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(seq: u64, term: u64) -> Loc {
        Loc {
            seq,
            offset: 0,
            payload_len: 1,
            term: Term(term),
        }
    }

    fn compact(index: u64, term: u64, discard_suffix: bool) -> CompactPoint {
        CompactPoint {
            index: LogIndex(index),
            term: Term(term),
            discard_suffix,
        }
    }

    #[test]
    fn overwrite_truncates_and_gap_is_corruption() {
        let mut d = DurableIndex::new();
        for i in 1..=5 {
            d.apply_entry(LogIndex(i), loc(1, 1)).unwrap();
        }
        d.apply_entry(LogIndex(3), loc(1, 2)).unwrap();
        assert_eq!(d.last_index(), LogIndex(3));
        assert_eq!(d.term(LogIndex(3)), Some(Term(2)));
        assert_eq!(
            d.apply_entry(LogIndex(5), loc(1, 2)),
            Err(Corruption::IndexGap {
                last: LogIndex(3),
                index: LogIndex(5)
            })
        );
    }

    #[test]
    fn replay_after_deleted_segments_is_completed_by_a_later_compaction() {
        let mut d = DurableIndex::new();
        // A segment head written when the log was compacted to 2, then the
        // entries the segment holds, starting at 8 (3..=7 were deleted).
        d.apply_compact(compact(2, 1, false));
        d.apply_entry(LogIndex(8), loc(5, 1)).unwrap();
        d.apply_entry(LogIndex(9), loc(5, 1)).unwrap();
        assert!(d.check_complete().is_err());
        d.apply_compact(compact(7, 1, false));
        assert!(d.check_complete().is_ok());
        assert_eq!(
            (d.base(), d.last_index()),
            ((LogIndex(7), Term(1)), LogIndex(9))
        );
        assert_eq!(d.term(LogIndex(7)), Some(Term(1)));
        assert_eq!(d.term(LogIndex(6)), None);
    }

    #[test]
    fn discarding_compaction_empties_the_log() {
        let mut d = DurableIndex::new();
        for i in 1..=5 {
            d.apply_entry(LogIndex(i), loc(1, 1)).unwrap();
        }
        d.apply_compact(compact(3, 9, true));
        assert_eq!(d.last_index(), LogIndex(3));
        assert_eq!(d.term(LogIndex(3)), Some(Term(9)));
        assert_eq!(
            d.apply_entry(LogIndex(3), loc(1, 9)),
            Err(Corruption::EntryBelowCompaction {
                index: LogIndex(3),
                compacted: LogIndex(3)
            })
        );
        d.apply_entry(LogIndex(4), loc(1, 9)).unwrap();
        assert!(d.check_complete().is_ok());
    }
}
