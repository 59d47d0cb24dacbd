//! Log Matching (§5.3): if two logs contain an entry with the same index
//! and term, the logs are identical in all entries up to that index.
//!
//! Checked incrementally on everything any node writes: a position
//! `(index, term)` must always hold the same entry and follow the same
//! term at `index - 1`. By induction on the index, that makes equal
//! positions carry equal prefixes, without comparing whole logs.

use std::collections::HashMap;

use keel_raft::{Entry, LogIndex, NodeId, Term};

use super::{Invariant, Violation, entry_digest};

#[derive(Debug, Clone, Copy)]
struct Position {
    digest: u64,
    prev_term: Option<Term>,
    first_writer: NodeId,
}

/// Lookups only: iteration order never matters, so a `HashMap` is fine.
#[derive(Debug, Default)]
pub struct LogMatching {
    seen: HashMap<(LogIndex, Term), Position>,
}

impl LogMatching {
    /// `node` writes `entries`, the first following an entry of `prev_term`.
    pub fn on_written(
        &mut self,
        node: NodeId,
        mut prev_term: Option<Term>,
        entries: &[Entry],
    ) -> Result<(), Violation> {
        for entry in entries {
            let now = Position {
                digest: entry_digest(entry),
                prev_term,
                first_writer: node,
            };
            let before = *self.seen.entry((entry.index, entry.term)).or_insert(now);
            if before.digest != now.digest {
                return Err(Violation::new(
                    Invariant::LogMatching,
                    format!(
                        "node {node} wrote a different entry at index {} term {} than node {} did",
                        entry.index, entry.term, before.first_writer
                    ),
                ));
            }
            if before.prev_term != now.prev_term {
                return Err(Violation::new(
                    Invariant::LogMatching,
                    format!(
                        "entry {} of term {} follows term {:?} on node {node} but term {:?} on node {}",
                        entry.index,
                        entry.term,
                        now.prev_term,
                        before.prev_term,
                        before.first_writer
                    ),
                ));
            }
            prev_term = Some(entry.term);
        }
        Ok(())
    }
}
