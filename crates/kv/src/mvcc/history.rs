//! Reading the event history back out of the store, for watchers that start
//! in the past or fell behind the hub's in-memory window.

use redb::ReadableDatabase;

use super::read::row;
use super::tables::KV;
use super::{KeyRange, Revision, Store};
use crate::error::{KvError, decode};
use crate::proto::command::Revisioned;
use crate::proto::mvccpb::{Event, event::EventType};

impl Store {
    /// The events of revisions `from..=to` on keys in `range`, in revision
    /// order, at most `max_events` of them (the caller resumes after the
    /// last one's revision). Fails with `Compacted` when `from` is older
    /// than the compacted revision.
    pub fn history(
        &self,
        from: i64,
        to: i64,
        range: &KeyRange,
        max_events: usize,
    ) -> Result<Vec<Event>, KvError> {
        let state = self.read_state();
        if from < state.compacted_revision {
            return Err(KvError::Compacted);
        }
        let txn = self.db().begin_read().map_err(KvError::storage)?;
        let table = txn.open_table(KV).map_err(KvError::storage)?;
        let start = Revision { main: from, sub: 0 }.to_db();
        let end = Revision {
            main: to,
            sub: i64::MAX,
        }
        .to_db();
        let mut events = Vec::new();
        let mut last_main = None;
        for entry in table.range(start..=end).map_err(KvError::storage)? {
            let (rev, value) = entry.map_err(KvError::storage)?;
            let rev = Revision::from_db(rev.value());
            // Never split a revision: a watcher resumes at the next one.
            if events.len() >= max_events && last_main != Some(rev.main) {
                break;
            }
            let stored: Revisioned = decode("kv row", value.value())?;
            let kv = stored.kv.unwrap_or_default();
            if !range.contains(&kv.key) || state.is_garbage(&kv.key, rev) {
                continue;
            }
            let prev_kv = match state.index.get(&kv.key, rev.main - 1) {
                Some(prev) => row(&table, prev)?.and_then(|r| r.kv),
                None => None,
            };
            let kind = if stored.tombstone {
                EventType::Delete
            } else {
                EventType::Put
            };
            last_main = Some(rev.main);
            events.push(Event {
                r#type: kind as i32,
                kv: Some(kv),
                prev_kv,
            });
        }
        Ok(events)
    }
}
