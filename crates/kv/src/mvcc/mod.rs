//! The MVCC store: etcd's data model over redb.
//!
//! Every write transaction gets the next store revision; every key carries
//! `create_revision`, `mod_revision` and `version`; old revisions stay
//! readable until compacted. Rows live in redb keyed by revision, and the
//! [`KeyIndex`] maps keys to revisions in memory.
//!
//! **Architecture Invariant:** the applied Raft index is written in the same
//! redb transaction as the data it reflects, so a crash can never leave the
//! recorded applied index ahead of (or behind) the data.

mod alarm;
mod apply;
mod apply_error;
mod auth;
mod backing;
mod compaction;
mod defrag;
mod hash;
mod history;
mod index;
mod lease;
mod op;
mod read;
mod read_txn;
mod snapshot;
mod tables;
mod txn;
mod view;
mod write;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use redb::{Database, ReadableDatabase, ReadableTable};

pub(crate) use alarm::change_of as alarm_change_of;
pub use alarm::{AlarmKey, cost_bytes};
pub use apply::{Applied, EntryPayload};
pub use compaction::COMPACTION_STEP_ROWS;
pub use defrag::{DbUsage, IN_USE_MAX_AGE};
pub use index::{Generation, KeyIndex, KeyRange, Revision};
pub use lease::LeaseState;
pub use read_txn::{is_read_only, is_serializable};
pub use snapshot::{RestoreAs, SnapshotSource, SnapshotSummary, summarize};
pub use view::{VIEW_ATTEMPTS, VIEW_CHUNK_KEYS};
pub use write::Events;

use crate::auth::AuthState;
use crate::error::{KvError, decode};
use crate::latency::{BACKEND_COMMIT_BOUNDS, LatencyRecorder, LatencySnapshot};
use crate::proto::command::{LeaseRecord, Revisioned};
use crate::proto::etcdserverpb::Member;
use backing::Backing;
use tables::{ALARMS, AUTH_ROLES, AUTH_USERS, KV, LEASES, MEMBERS, META, meta_keys};

/// The compacted revision of a store never compacted: etcd's, which clients
/// see in HashKV, and below which a compaction at revision 0 still is one.
pub const NEVER_COMPACTED: i64 = -1;

/// What the store holds in memory, rebuilt from redb on open.
#[derive(Default, Debug)]
pub(crate) struct State {
    pub index: KeyIndex,
    /// Invariant: `compacted_revision <= current_revision`.
    pub current_revision: i64,
    /// The revision of the last compaction, [`NEVER_COMPACTED`] before the
    /// first.
    pub compacted_revision: i64,
    /// The last Raft index whose effects are in the store.
    pub applied_index: u64,
    pub applied_term: u64,
    pub leases: BTreeMap<i64, LeaseState>,
    pub members: BTreeMap<u64, Member>,
    /// The active alarms; a NOSPACE one caps the store (`alarm.rs`).
    pub alarms: BTreeSet<AlarmKey>,
    /// The next row a compaction step examines; `None` when no compaction
    /// has rows left to delete (`compaction.rs`).
    /// Invariant: when `Some`, every row the index no longer holds lies at
    /// or after it, at a revision `<= compacted_revision`.
    pub compaction_cursor: Option<Revision>,
    pub auth: AuthState,
    /// Whether the META table holds exactly the positions above. False
    /// when loaded (loading fills in defaults for rows a new store lacks),
    /// true once an apply batch has written every row; from then on each
    /// batch writes only the rows it changed (`apply.rs`).
    pub meta_stored: bool,
}

/// The persistent MVCC key-value store.
pub struct Store {
    /// Behind a lock only so that a defragmentation (`defrag.rs`) can have
    /// it alone: everything else takes it shared, for one statement, to
    /// begin a transaction.
    db: RwLock<Database>,
    backing: Backing,
    state: RwLock<State>,
    /// Whether apply transactions fsync. A Raft-backed store does not need
    /// to, because the Raft log is the durability source and replays what
    /// a crash lost; a store without a log underneath does.
    durable_apply: bool,
    /// The last count of the pages in use (`defrag.rs`).
    in_use: Mutex<defrag::InUseCount>,
    /// How many times the state was replaced wholesale rather than
    /// advanced by apply (a snapshot restored, memory reloaded after a
    /// refused batch); changed only under the state lock held for writing.
    /// A read view that sees it change starts over (`view.rs`).
    replacements: AtomicU64,
    /// How long each write transaction's commit took: etcd's
    /// `etcd_disk_backend_commit_duration_seconds`.
    commits: LatencyRecorder,
    /// The database's size after the last commit (or the last time it was
    /// read), so that the quota check on every write costs no `statx`:
    /// etcd's quota reads its backend's size as of the last commit too.
    known_size: AtomicI64,
}

/// Positions a store has reached, for status reports and the runtime.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorePosition {
    pub applied_index: u64,
    pub applied_term: u64,
    pub revision: i64,
    pub compacted_revision: i64,
}

impl Store {
    /// Opens (or creates) the store in `path` and rebuilds the in-memory
    /// index from its rows.
    pub fn open(path: &Path, durable_apply: bool) -> Result<Store, KvError> {
        let db = Database::create(path).map_err(KvError::storage)?;
        Store::with_db(db, Backing::File(path.to_owned()), durable_apply)
    }

    /// A new, empty store whose database lives in memory, so that the
    /// simulator runs the exact MVCC code with no disk. Applies commit as a
    /// Raft member's do, without `durable_apply`, so that redb takes the
    /// same paths; durability means nothing here anyway, since nothing
    /// survives dropping the store.
    pub fn open_in_memory() -> Result<Store, KvError> {
        let (db, backing) = Backing::memory()?;
        Store::with_db(db, backing, false)
    }

    /// Creates the tables if they are missing and rebuilds the in-memory
    /// index from the rows.
    fn with_db(db: Database, backing: Backing, durable_apply: bool) -> Result<Store, KvError> {
        let txn = db.begin_write().map_err(KvError::storage)?;
        for_each_table_created(&txn)?;
        txn.commit().map_err(KvError::storage)?;
        let state = load_state(&db)?;
        let db = RwLock::new(db);
        let known_size = AtomicI64::new(backing.size_bytes());
        tracing::info!(
            applied_index = state.applied_index,
            revision = state.current_revision,
            keys = state.index.key_count(),
            "opened kv store"
        );
        Ok(Store {
            db,
            backing,
            state: RwLock::new(state),
            durable_apply,
            in_use: Mutex::default(),
            replacements: AtomicU64::new(0),
            commits: LatencyRecorder::new(BACKEND_COMMIT_BOUNDS),
            known_size,
        })
    }

    pub(crate) fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().expect("store lock poisoned by a panic")
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().expect("store lock poisoned by a panic")
    }

    /// Replaces the state wholesale; the caller holds the state lock for
    /// writing (`state` is its guard), so no read view sees the count
    /// change in the middle of a chunk.
    fn replace_state(&self, state: &mut State, replacement: State) {
        *state = replacement;
        self.replacements.fetch_add(1, Ordering::Relaxed);
    }

    /// The database, to begin one transaction: hold the guard no longer
    /// than that, or a defragmentation waits for it.
    pub(crate) fn db(&self) -> RwLockReadGuard<'_, Database> {
        self.db.read().expect("database lock poisoned by a panic")
    }

    /// Where the store is: applied index, current and compacted revision.
    pub fn position(&self) -> StorePosition {
        let s = self.read_state();
        StorePosition {
            applied_index: s.applied_index,
            applied_term: s.applied_term,
            revision: s.current_revision,
            compacted_revision: s.compacted_revision,
        }
    }

    /// The leases and their attached keys.
    pub fn leases(&self) -> BTreeMap<i64, LeaseState> {
        self.read_state().leases.clone()
    }

    /// Runs `f` on the leases in place, without copying them.
    pub fn with_leases<T>(&self, f: impl FnOnce(&BTreeMap<i64, LeaseState>) -> T) -> T {
        f(&self.read_state().leases)
    }

    /// One lease, if it exists.
    pub fn lease(&self, id: i64) -> Option<LeaseState> {
        self.read_state().leases.get(&id).cloned()
    }

    /// The registered members, by ID.
    /// Keys with any history, live or deleted but not yet compacted.
    pub fn key_count(&self) -> usize {
        self.read_state().index.key_count()
    }

    pub fn members(&self) -> BTreeMap<u64, Member> {
        self.read_state().members.clone()
    }

    /// The active alarms.
    pub fn alarms(&self) -> BTreeSet<AlarmKey> {
        self.read_state().alarms.clone()
    }

    /// The active alarms of etcd `AlarmType` `alarm` (`NONE`: all), as
    /// `Maintenance/Alarm` lists them.
    pub fn alarm_members(&self, alarm: i32) -> Vec<crate::proto::etcdserverpb::AlarmMember> {
        alarm::list(&self.read_state().alarms, alarm)
    }

    /// The users, roles and enabled flag as of the last applied entry.
    pub fn auth(&self) -> AuthState {
        self.read_state().auth.clone()
    }

    /// Reads the auth state without copying it.
    pub fn with_auth<T>(&self, f: impl FnOnce(&AuthState) -> T) -> T {
        f(&self.read_state().auth)
    }

    /// Runs `f` on the auth state and the leases as one view, copying
    /// neither: what a request requires can depend on every key a lease
    /// holds, which is too much to copy for each request.
    pub fn with_auth_and_leases<T>(
        &self,
        f: impl FnOnce(&AuthState, &BTreeMap<i64, LeaseState>) -> T,
    ) -> T {
        let state = self.read_state();
        f(&state.auth, &state.leases)
    }

    /// Makes every committed apply transaction durable. The runtime calls
    /// this before it discards log entries up to the applied index, since
    /// apply commits do not fsync.
    ///
    /// The commit also records redb's allocator state (quick repair): a
    /// crash reverts the file to its last durable commit, and without that
    /// record reopening it walks the whole database to rebuild the
    /// allocator — seconds per gigabyte, while the restarted member serves
    /// nothing. Only these commits pay for the record; applies stay cheap.
    pub fn flush(&self) -> Result<(), KvError> {
        let mut txn = self.db().begin_write().map_err(KvError::storage)?;
        txn.set_durability(redb::Durability::Immediate)
            .map_err(KvError::storage)?;
        txn.set_quick_repair(true);
        self.commit(txn)
    }

    /// Commits a write transaction of the store's, timing it.
    fn commit(&self, txn: redb::WriteTransaction) -> Result<(), KvError> {
        let started = Instant::now();
        txn.commit().map_err(KvError::storage)?;
        self.commits.observe(started.elapsed());
        self.refresh_known_size();
        Ok(())
    }

    /// The durations of the store's commits so far (apply batches,
    /// flushes, restores), as etcd's backend commit histogram has them.
    pub fn commit_durations(&self) -> LatencySnapshot {
        self.commits.snapshot()
    }

    /// The database's size in bytes, for `endpoint status`: its file's,
    /// or its pages' in memory, read now.
    pub fn db_size_bytes(&self) -> i64 {
        self.refresh_known_size()
    }

    /// Reads the database's size and remembers it as the known size.
    fn refresh_known_size(&self) -> i64 {
        let size = self.backing.size_bytes();
        self.known_size.store(size, Ordering::Relaxed);
        size
    }

    /// The database's size as of the last commit (or the last
    /// [`Store::db_size_bytes`]), without reading it again: for checks on
    /// every request, such as the backend quota's.
    pub fn known_db_size_bytes(&self) -> i64 {
        self.known_size.load(Ordering::Relaxed)
    }

    /// The database file; `None` for a store in memory.
    pub fn db_path(&self) -> Option<&Path> {
        self.backing.path()
    }
}

fn for_each_table_created(txn: &redb::WriteTransaction) -> Result<(), KvError> {
    txn.open_table(KV).map_err(KvError::storage)?;
    txn.open_table(META).map_err(KvError::storage)?;
    txn.open_table(LEASES).map_err(KvError::storage)?;
    txn.open_table(MEMBERS).map_err(KvError::storage)?;
    txn.open_table(ALARMS).map_err(KvError::storage)?;
    txn.open_table(AUTH_USERS).map_err(KvError::storage)?;
    txn.open_table(AUTH_ROLES).map_err(KvError::storage)?;
    Ok(())
}

/// Reads every table once, in revision order, to rebuild [`State`].
fn load_state(db: &Database) -> Result<State, KvError> {
    let txn = db.begin_read().map_err(KvError::storage)?;
    let mut state = State::default();
    let meta = txn.open_table(META).map_err(KvError::storage)?;
    let meta_get = |key: &str| -> Result<u64, KvError> {
        Ok(meta
            .get(key)
            .map_err(KvError::storage)?
            .map_or(0, |v| v.value()))
    };
    state.applied_index = meta_get(meta_keys::APPLIED_INDEX)?;
    state.applied_term = meta_get(meta_keys::APPLIED_TERM)?;
    // etcd's revisions start at 1: an empty store is at revision 1 and its
    // first write makes revision 2. Clients see these numbers, so match.
    state.current_revision = (meta_get(meta_keys::CURRENT_REVISION)? as i64).max(1);
    // Stored as the bits of an i64, so that "never" (-1) survives.
    state.compacted_revision = meta
        .get(meta_keys::COMPACTED_REVISION)
        .map_err(KvError::storage)?
        .map_or(NEVER_COMPACTED, |v| v.value() as i64);
    let cursor_main = meta
        .get(meta_keys::COMPACTION_CURSOR_MAIN)
        .map_err(KvError::storage)?;
    let cursor_sub = meta
        .get(meta_keys::COMPACTION_CURSOR_SUB)
        .map_err(KvError::storage)?;
    if let (Some(main), Some(sub)) = (cursor_main, cursor_sub) {
        state.compaction_cursor = Some(Revision::from_db((main.value(), sub.value())));
    }

    let leases = txn.open_table(LEASES).map_err(KvError::storage)?;
    for row in leases.iter().map_err(KvError::storage)? {
        let (_, value) = row.map_err(KvError::storage)?;
        let record: LeaseRecord = decode("lease record", value.value())?;
        state.leases.insert(
            record.id,
            LeaseState {
                ttl_seconds: record.ttl_seconds,
                keys: BTreeSet::new(),
                granted_index: record.granted_index,
            },
        );
    }

    // Rows come in revision order, so the last row seen for a key is its
    // latest change: the index's live generations then say which lease
    // each key is attached to.
    let kv = txn.open_table(KV).map_err(KvError::storage)?;
    for row in kv.iter().map_err(KvError::storage)? {
        let (rev, value) = row.map_err(KvError::storage)?;
        let rev = Revision::from_db(rev.value());
        let row: Revisioned = decode("kv row", value.value())?;
        let kv = row.kv.unwrap_or_default();
        if row.tombstone {
            state.index.tombstone(kv.key, rev);
        } else {
            let generation = Generation {
                create_revision: kv.create_revision,
                version: kv.version,
                lease: kv.lease,
            };
            state.index.put(kv.key, rev, generation);
        }
    }
    // Rows a compaction forgot may still wait for their deletion step;
    // forgetting them again leaves the index as the compaction left it.
    state.index.compact(state.compacted_revision);
    for (key, generation) in state.index.live() {
        if let Some(l) = state.leases.get_mut(&generation.lease) {
            l.keys.insert(key.clone());
        }
    }

    let members = txn.open_table(MEMBERS).map_err(KvError::storage)?;
    for row in members.iter().map_err(KvError::storage)? {
        let (id, value) = row.map_err(KvError::storage)?;
        state
            .members
            .insert(id.value(), decode("member", value.value())?);
    }

    let alarms = txn.open_table(ALARMS).map_err(KvError::storage)?;
    for row in alarms.iter().map_err(KvError::storage)? {
        let (key, _) = row.map_err(KvError::storage)?;
        let (member_id, alarm) = key.value();
        state.alarms.insert(AlarmKey { member_id, alarm });
    }
    state.auth.enabled = meta_get(meta_keys::AUTH_ENABLED)? == 1;
    // etcd's auth revision starts at 1, so that 0 can mean "no user".
    state.auth.revision = meta_get(meta_keys::AUTH_REVISION)?.max(1);
    let users = txn.open_table(AUTH_USERS).map_err(KvError::storage)?;
    for row in users.iter().map_err(KvError::storage)? {
        let (name, value) = row.map_err(KvError::storage)?;
        state
            .auth
            .users
            .insert(name.value().to_owned(), decode("auth user", value.value())?);
    }
    let roles = txn.open_table(AUTH_ROLES).map_err(KvError::storage)?;
    for row in roles.iter().map_err(KvError::storage)? {
        let (name, value) = row.map_err(KvError::storage)?;
        state
            .auth
            .roles
            .insert(name.value().to_owned(), decode("auth role", value.value())?);
    }
    Ok(state)
}

#[cfg(test)]
mod tests;
