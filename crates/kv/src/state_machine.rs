//! The KV state machine: the store plus the watch hub it feeds. This is
//! what a Raft runtime drives.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use crate::auth::{SimpleTokens, TOKEN_TTL_DEFAULT};
use crate::error::KvError;
use crate::mvcc::{Applied, EntryPayload, Events, Store, StorePosition};
use crate::watch::WatchHub;

/// The store file inside a member's data directory.
const DB_FILE: &str = "kv.redb";

/// Applies committed entries to the store and announces their events.
pub struct KvStateMachine {
    store: Store,
    hub: WatchHub,
    /// The auth tokens this member learned from applied Authenticate
    /// entries (member-local, as etcd's simple tokens).
    tokens: SimpleTokens,
}

impl KvStateMachine {
    /// Opens the state machine kept in `dir`. `durable_apply` makes every
    /// apply fsync: only for a store with no Raft log underneath.
    pub fn open(dir: &Path, durable_apply: bool) -> Result<Arc<KvStateMachine>, KvError> {
        std::fs::create_dir_all(dir)?;
        let store = Store::open(&dir.join(DB_FILE), durable_apply)?;
        Ok(KvStateMachine::over(store))
    }

    /// A new, empty state machine whose store lives in memory
    /// ([`Store::open_in_memory`]), for the simulator.
    pub fn in_memory() -> Result<Arc<KvStateMachine>, KvError> {
        Ok(KvStateMachine::over(Store::open_in_memory()?))
    }

    fn over(store: Store) -> Arc<KvStateMachine> {
        let hub = WatchHub::new(store.position().revision);
        Arc::new(KvStateMachine {
            store,
            hub,
            tokens: SimpleTokens::new(TOKEN_TTL_DEFAULT),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn hub(&self) -> &WatchHub {
        &self.hub
    }

    pub fn tokens(&self) -> &SimpleTokens {
        &self.tokens
    }

    /// The database's size, for status reports.
    pub fn db_size_bytes(&self) -> i64 {
        self.store.db_size_bytes()
    }

    /// The database's size as of its last commit, without reading it
    /// again ([`Store::known_db_size_bytes`]).
    pub fn known_db_size_bytes(&self) -> i64 {
        self.store.known_db_size_bytes()
    }

    /// The database file, for reading its size without holding the store;
    /// `None` for a machine in memory.
    pub fn db_path(&self) -> Option<&Path> {
        self.store.db_path()
    }

    /// Applies committed entries `(index, term, payload)` and then wakes
    /// watchers. Returns each entry's encoded result (for its proposer).
    /// An `Err` is fatal: stop the node.
    ///
    /// Events are built only while someone is subscribed to the hub; a
    /// watcher that subscribes during the batch finds the batch's
    /// revisions outside the window and reads them from the store.
    pub fn apply(&self, entries: &[(u64, u64, EntryPayload<'_>)]) -> Result<Vec<Applied>, KvError> {
        let events = self.events_wanted();
        let applied = self.store.apply_with(entries, events)?;
        Ok(self.announce(applied, events))
    }

    /// [`KvStateMachine::apply`] if it need not wait for a lock
    /// (`Store::try_apply_with`); `None`, having done nothing, if it would.
    pub fn try_apply(
        &self,
        entries: &[(u64, u64, EntryPayload<'_>)],
    ) -> Option<Result<Vec<Applied>, KvError>> {
        let events = self.events_wanted();
        let applied = self.store.try_apply_with(entries, events)?;
        Some(applied.map(|applied| self.announce(applied, events)))
    }

    fn events_wanted(&self) -> Events {
        if self.hub.has_subscribers() {
            Events::Record
        } else {
            Events::Skip
        }
    }

    /// Hands an applied batch's token changes to the token table and its
    /// events to the watchers.
    fn announce(&self, mut applied: Vec<Applied>, events: Events) -> Vec<Applied> {
        let Some(last) = applied.last() else {
            return applied;
        };
        let revision = last.revision;
        for a in &mut applied {
            if let Some(change) = a.token_change.take() {
                self.tokens.apply(change);
            }
            if !a.events.is_empty() {
                self.hub.publish(a.revision, std::mem::take(&mut a.events));
            }
        }
        if events == Events::Skip {
            self.hub.skip(revision);
        }
        self.hub.advance(revision);
        applied
    }

    /// The last applied Raft index and term. After a restart, the runtime
    /// replays the log from the entry after it.
    pub fn position(&self) -> StorePosition {
        self.store.position()
    }

    /// Writes a snapshot of the current state; see `Store::write_snapshot`.
    pub fn write_snapshot(&self, w: &mut impl Write) -> Result<StorePosition, KvError> {
        self.store.write_snapshot(w)
    }

    /// Replaces the state with a snapshot that stands for the log through
    /// `covers_index`; watchers catch up from the store.
    pub fn restore_snapshot(
        &self,
        r: &mut impl Read,
        covers_index: u64,
    ) -> Result<StorePosition, KvError> {
        let position = self.store.restore_snapshot(r, covers_index)?;
        self.hub.reset(position.revision);
        Ok(position)
    }

    /// Makes all applied state durable (call before truncating the log).
    pub fn flush(&self) -> Result<(), KvError> {
        self.store.flush()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::command::encode;
    use crate::mvcc::KeyRange;
    use crate::proto::command::command::Op;
    use crate::proto::etcdserverpb::{
        DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest,
    };
    use crate::proto::mvccpb::Event;

    fn put(key: &str, value: &str, lease: i64) -> Op {
        Op::Put(PutRequest {
            key: key.to_owned().into(),
            value: value.to_owned().into(),
            lease,
            ..Default::default()
        })
    }

    /// Puts, an overwrite, a delete and a lease with a key on it, applied
    /// at indexes 1 ..= 6 as Raft would apply them.
    fn apply_history(sm: &KvStateMachine) {
        let ops = [
            Op::LeaseGrant(LeaseGrantRequest { ttl: 60, id: 7 }),
            put("a", "1", 0),
            put("b", "2", 7),
            put("a", "3", 0),
            put("c", "4", 0),
            Op::DeleteRange(DeleteRangeRequest {
                key: "c".into(),
                ..Default::default()
            }),
        ];
        let commands: Vec<Bytes> = ops.into_iter().map(encode).collect();
        let entries: Vec<_> = commands
            .iter()
            .enumerate()
            .map(|(k, c)| (k as u64 + 1, 1, EntryPayload::Command(c)))
            .collect();
        sm.apply(&entries).unwrap();
    }

    #[test]
    fn an_apply_that_must_not_wait_steps_aside_while_the_store_is_held() {
        let sm = KvStateMachine::in_memory().unwrap();
        let command = encode(put("a", "1", 0));
        let entries = [(1, 1, EntryPayload::Command(&command))];
        {
            let _reading = sm.store().read_state();
            assert!(sm.try_apply(&entries).is_none());
        }
        assert_eq!(sm.position().applied_index, 0, "nothing was applied");
        let applied = sm.try_apply(&entries).unwrap().unwrap();
        assert_eq!(applied.len(), 1);
        assert_eq!(sm.position().applied_index, 1);
        assert_eq!(everything(&sm).len(), 1);
    }

    fn everything(sm: &KvStateMachine) -> Vec<crate::proto::mvccpb::KeyValue> {
        let all = RangeRequest {
            key: vec![0].into(),
            range_end: vec![0].into(),
            ..Default::default()
        };
        sm.store().range(&all).unwrap().kvs
    }

    #[test]
    fn in_memory_machine_snapshot_restores_into_another_in_memory_machine() {
        let sm = KvStateMachine::in_memory().unwrap();
        apply_history(&sm);
        let mut snapshot = Vec::new();
        let written = sm.write_snapshot(&mut snapshot).unwrap();
        assert_eq!(written.applied_index, 6);

        let other = KvStateMachine::in_memory().unwrap();
        let restored = other.restore_snapshot(&mut snapshot.as_slice(), 6).unwrap();
        assert_eq!(restored, sm.position());
        assert_eq!(
            other.store().hash_kv(0).unwrap(),
            sm.store().hash_kv(0).unwrap()
        );
        assert_eq!(everything(&other), everything(&sm));
        assert_eq!(everything(&sm).len(), 2, "a and b; c was deleted");
        assert_eq!(other.store().leases(), sm.store().leases());
    }

    #[test]
    fn in_memory_machine_matches_one_on_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let on_file = KvStateMachine::open(dir.path(), false).unwrap();
        let in_memory = KvStateMachine::in_memory().unwrap();
        apply_history(&on_file);
        apply_history(&in_memory);
        assert_eq!(on_file.db_path(), Some(dir.path().join(DB_FILE).as_path()));
        assert_eq!(in_memory.position(), on_file.position());
        assert_eq!(
            in_memory.store().hash_kv(0).unwrap(),
            on_file.store().hash_kv(0).unwrap()
        );
        assert_eq!(everything(&in_memory), everything(&on_file));
    }

    /// Skipping events must change nothing but the hub's window: the
    /// store ends the same, and a watcher that comes later reads from the
    /// store the very events the window would have held.
    #[test]
    fn events_are_built_only_while_someone_is_subscribed() {
        let unwatched = KvStateMachine::in_memory().unwrap();
        let watched = KvStateMachine::in_memory().unwrap();
        let _subscriber = watched.hub().subscribe();
        let first = watched.hub().revision() + 1;
        apply_history(&unwatched);
        apply_history(&watched);
        assert_eq!(
            unwatched.store().hash_kv(0).unwrap(),
            watched.store().hash_kv(0).unwrap()
        );
        assert_eq!(everything(&unwatched), everything(&watched));
        assert_eq!(unwatched.store().leases(), watched.store().leases());

        let revision = watched.hub().revision();
        assert_eq!(revision, unwatched.hub().revision());
        let window: Vec<Event> = watched
            .hub()
            .recent(first, revision)
            .expect("a subscribed hub keeps the events")
            .iter()
            .flat_map(|(_, events)| events.iter().cloned())
            .collect();
        assert_eq!(window.len(), 5, "four puts and a delete");
        assert!(unwatched.hub().recent(first, revision).is_none());
        let everywhere = KeyRange::new(vec![0], vec![0]);
        let history = unwatched
            .store()
            .history(first, revision, &everywhere, usize::MAX)
            .unwrap();
        assert_eq!(history, window);
    }

    #[test]
    fn in_memory_machine_has_no_file_but_a_size() {
        let sm = KvStateMachine::in_memory().unwrap();
        assert_eq!(sm.db_path(), None);
        let empty = sm.db_size_bytes();
        assert!(empty > 0, "redb's header and tables take pages");
        apply_history(&sm);
        sm.flush().unwrap();
        assert!(sm.db_size_bytes() >= empty);
    }
}
