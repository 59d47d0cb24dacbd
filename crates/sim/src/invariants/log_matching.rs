//! Log Matching (§5.3): if two logs contain an entry with the same index
//! and term, the logs are identical in all entries up to that index.
//!
//! Checked incrementally on everything any node writes: a position
//! `(index, term)` must always hold the same entry and follow the same
//! term at `index - 1`. By induction on the index, that makes equal
//! positions carry equal prefixes, without comparing whole logs.

use std::collections::HashMap;

use keel_raft::{Entry, LogIndex, NodeId, Term};

use super::{Breach, Violation, entry_digest};

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
                return Err(Breach::DifferentEntry {
                    node,
                    index: entry.index,
                    term: entry.term,
                    first_writer: before.first_writer,
                }
                .into());
            }
            if before.prev_term != now.prev_term {
                return Err(Breach::DifferentPrefix {
                    index: entry.index,
                    term: entry.term,
                    node,
                    prev_term: now.prev_term,
                    first_writer: before.first_writer,
                    first_prev_term: before.prev_term,
                }
                .into());
            }
            prev_term = Some(entry.term);
        }
        Ok(())
    }
}
