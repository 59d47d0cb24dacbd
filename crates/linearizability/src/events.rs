//! The time-ordered call/return events of the known-outcome operations.
//!
//! The search repeatedly removes an operation's two events when it
//! linearizes the operation, restores them when it backtracks, and jumps
//! between unrelated configurations when it moves on to a deferred one.
//! Representing "which events are still present" as a bitset over the
//! fixed, sorted event array supports all three cheaply: removal and
//! restoration flip two bits, a whole configuration is one `Bitset` clone,
//! and walking to the next present event skips 64 removed events per word
//! (removed events are mostly a dense prefix, since old operations are
//! linearized first).

use crate::bitset::Bitset;

/// One call or return event.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Event {
    /// Index of the operation in the searched slice.
    pub(crate) op: usize,
    pub(crate) time: u64,
    pub(crate) is_call: bool,
    /// For a call, the position of its return event, and vice versa.
    pub(crate) partner: usize,
}

/// Events sorted by time, calls before returns at equal times (see the
/// `wgl` module docs on equal timestamps).
#[derive(Debug)]
pub(crate) struct EventTable {
    events: Vec<Event>,
}

impl EventTable {
    /// Builds the table from `(op, invoke_ns, return_ns)` triples.
    pub(crate) fn new(ops: impl IntoIterator<Item = (usize, u64, u64)>) -> Self {
        let mut order: Vec<(u64, bool, usize)> = Vec::new();
        for (op, invoke, ret) in ops {
            order.push((invoke, true, op));
            order.push((ret, false, op));
        }
        // (time, call-before-return, op): a total, deterministic order.
        order.sort_unstable_by_key(|&(time, is_call, op)| (time, !is_call, op));
        let mut events: Vec<Event> = order
            .iter()
            .map(|&(time, is_call, op)| Event {
                op,
                time,
                is_call,
                partner: usize::MAX,
            })
            .collect();
        let mut call_pos = std::collections::HashMap::new();
        for pos in 0..events.len() {
            let op = events[pos].op;
            if events[pos].is_call {
                call_pos.insert(op, pos);
            } else {
                let call = call_pos[&op];
                events[pos].partner = call;
                events[call].partner = pos;
            }
        }
        EventTable { events }
    }

    /// Number of events; also the "end" position.
    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }

    pub(crate) fn get(&self, pos: usize) -> Event {
        self.events[pos]
    }

    /// The first position at or after `from` whose event is not in
    /// `removed`, or [`EventTable::len`] if there is none.
    pub(crate) fn next_present(&self, removed: &Bitset, from: usize) -> usize {
        removed.next_absent(from).min(self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(table: &EventTable, removed: &Bitset) -> Vec<(usize, bool)> {
        let mut out = Vec::new();
        let mut pos = table.next_present(removed, 0);
        while pos < table.len() {
            let e = table.get(pos);
            out.push((e.op, e.is_call));
            pos = table.next_present(removed, pos + 1);
        }
        out
    }

    #[test]
    fn sorts_calls_before_returns_at_equal_times_and_pairs_them() {
        let table = EventTable::new([(0, 0, 5), (1, 5, 9)]);
        let none = Bitset::new(table.len());
        assert_eq!(
            walk(&table, &none),
            vec![(0, true), (1, true), (0, false), (1, false)]
        );
        assert_eq!(table.get(0).partner, 2);
        assert_eq!(table.get(2).partner, 0);
        assert_eq!(table.get(1).partner, 3);
    }

    #[test]
    fn removed_events_are_skipped() {
        let table = EventTable::new([(0, 0, 3), (1, 1, 4), (2, 2, 5)]);
        let mut removed = Bitset::new(table.len());
        for pos in [0, 3, 2, 5] {
            removed.insert(pos);
        }
        assert_eq!(walk(&table, &removed), vec![(1, true), (1, false)]);
        for pos in 0..table.len() {
            removed.insert(pos);
        }
        assert_eq!(table.next_present(&removed, 0), table.len());
    }
}
