//! Reading the event history back out of the store, for watchers that start
//! in the past or fell behind the hub's in-memory window.
//!
//! A watcher catching up over a long history reads every row from its
//! start revision on, most of them of keys it does not watch, so the read
//! runs on a view (`view.rs`) as a Range does: the rows are read and the
//! watched keys picked out from the view's transaction without the state
//! lock; only the rows of watched keys are taken to the index, a chunk of
//! at most [`HISTORY_CHUNK_ROWS`] per hold of the lock, to tell garbage a
//! compaction left from events and to find each event's previous revision.
//!
//! **Invariant:** the events are the ones a read holding the lock
//! throughout would have returned at the view's revision `R`. The rows are
//! the transaction's, as of `R`. Between chunks the index only gains
//! changes above `R`, which neither make a row at or below `R` garbage nor
//! change the revision of a key visible below `R`; a compaction would
//! change both, so a chunk finding the compacted revision changed (or the
//! store replaced) is raced, and the read starts over on a new view, where
//! a start below the new compacted revision gets `ErrCompacted`. A previous
//! revision the index gives is one it held when the view was opened, so its
//! row is in the transaction.

use super::read::row;
use super::view::{ReadView, ViewError};
use super::{KeyRange, Revision, Store};
use crate::error::{KvError, decode};
use crate::proto::command::Revisioned;
use crate::proto::mvccpb::{Event, event::EventType};

/// How many rows of watched keys are checked against the index per hold
/// of the state lock: a thousand lookups, well under a millisecond.
pub(crate) const HISTORY_CHUNK_ROWS: usize = 1000;

impl Store {
    /// The events of revisions `from..=to` on keys in `range`, in revision
    /// order, at most `max_events` of them unless the last revision has
    /// more (the caller resumes after the last one's revision). Fails with
    /// `Compacted` when `from` is older than the compacted revision.
    pub fn history(
        &self,
        from: i64,
        to: i64,
        range: &KeyRange,
        max_events: usize,
    ) -> Result<Vec<Event>, KvError> {
        self.read(|view| {
            let mut scan = HistoryScan::new(view, from, to, range, max_events)?;
            while !scan.is_done() {
                scan.step(view, HISTORY_CHUNK_ROWS)?;
            }
            Ok(scan.into_events())
        })
    }
}

/// A history read in progress on one view: where it resumes and the
/// events found so far.
pub(crate) struct HistoryScan<'r> {
    range: &'r KeyRange,
    /// The first row not read yet; `None` once the read is complete.
    next: Option<Revision>,
    /// The last row the read may return: `to`'s last.
    last: Revision,
    max_events: usize,
    events: Vec<Event>,
    /// The revision of the last event: a revision is never split.
    last_main: Option<i64>,
}

impl<'r> HistoryScan<'r> {
    /// A read of `from..=to` on `view`, refused with `Compacted` when
    /// `from` is below the view's compacted revision.
    pub(crate) fn new(
        view: &ReadView<'_>,
        from: i64,
        to: i64,
        range: &'r KeyRange,
        max_events: usize,
    ) -> Result<HistoryScan<'r>, ViewError> {
        if from < view.compacted() {
            return Err(KvError::Compacted.into());
        }
        Ok(HistoryScan {
            range,
            next: Some(Revision { main: from, sub: 0 }),
            last: Revision {
                main: to,
                sub: i64::MAX,
            },
            max_events,
            events: Vec::new(),
            last_main: None,
        })
    }

    /// Whether the read is complete.
    pub(crate) fn is_done(&self) -> bool {
        self.next.is_none()
    }

    /// The events found, in revision order.
    pub(crate) fn into_events(self) -> Vec<Event> {
        self.events
    }

    /// Reads rows until `chunk_rows` of them are of watched keys (without
    /// the lock), then tells those apart under the lock and turns the ones
    /// that are not garbage into events.
    pub(crate) fn step(&mut self, view: &ReadView<'_>, chunk_rows: usize) -> Result<(), ViewError> {
        assert!(chunk_rows > 0, "a chunk holds at least one row");
        let Some(next) = self.next.take() else {
            return Ok(());
        };
        let mut watched: Vec<(Revision, Revisioned)> = Vec::new();
        let rows = view
            .table()
            .range(next.to_db()..=self.last.to_db())
            .map_err(KvError::storage)?;
        for entry in rows {
            let (rev, value) = entry.map_err(KvError::storage)?;
            let rev = Revision::from_db(rev.value());
            if watched.len() == chunk_rows {
                self.next = Some(rev);
                break;
            }
            let stored: Revisioned = decode("kv row", value.value())?;
            if self.range.contains(key_of(&stored)) {
                watched.push((rev, stored));
            }
        }
        let lookups = view.with_index_as_opened(|state| {
            watched
                .iter()
                .map(|(rev, stored)| {
                    let key = key_of(stored);
                    if state.is_garbage(key, *rev) {
                        Lookup::Garbage
                    } else {
                        Lookup::Event {
                            previous: state.index.get(key, rev.main - 1),
                        }
                    }
                })
                .collect::<Vec<_>>()
        })?;
        for ((rev, stored), lookup) in watched.into_iter().zip(lookups) {
            let Lookup::Event { previous } = lookup else {
                continue;
            };
            // Never split a revision: a watcher resumes at the next one.
            if self.events.len() >= self.max_events && self.last_main != Some(rev.main) {
                self.next = None;
                return Ok(());
            }
            let prev_kv = match previous {
                Some(prev) => row(view.table(), prev)?.and_then(|r| r.kv),
                None => None,
            };
            let kind = if stored.tombstone {
                EventType::Delete
            } else {
                EventType::Put
            };
            self.last_main = Some(rev.main);
            self.events.push(Event {
                r#type: kind as i32,
                kv: Some(stored.kv.unwrap_or_default()),
                prev_kv,
            });
        }
        Ok(())
    }
}

/// What the index says of a row of a watched key.
enum Lookup {
    /// Garbage a compaction left: no event.
    Garbage,
    /// An event; `previous` is the key's change visible just before it.
    Event { previous: Option<Revision> },
}

/// The key a stored row is of.
fn key_of(stored: &Revisioned) -> &[u8] {
    stored.kv.as_ref().map_or(&[], |kv| &kv.key[..])
}
