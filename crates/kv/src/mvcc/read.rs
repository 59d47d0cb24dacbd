//! Range reads, shared by the read path (a redb read transaction) and by
//! transactions being applied (the open write transaction, so that a txn's
//! reads see its own earlier writes, as in etcd).

use redb::{ReadableDatabase, ReadableTable};

use super::tables::KV;
use super::{KeyRange, Revision, State, Store};
use crate::error::{KvError, decode};
use crate::proto::command::Revisioned;
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use crate::proto::mvccpb::KeyValue;
use crate::rejection::Rejection;

impl Store {
    /// Serves a Range from the applied state.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, KvError> {
        let state = self.read_state();
        // Opened under the state lock, so that rows and index agree.
        let txn = self.db().begin_read().map_err(KvError::storage)?;
        let table = txn.open_table(KV).map_err(KvError::storage)?;
        let at = check_range(&state, req, state.current_revision)?;
        range(&state, &table, req, at, state.current_revision)
    }
}

/// Reads the row stored at `rev`.
pub(crate) fn row<T>(table: &T, rev: Revision) -> Result<Option<Revisioned>, KvError>
where
    T: ReadableTable<(u64, u64), &'static [u8]>,
{
    match table.get(rev.to_db()).map_err(KvError::storage)? {
        Some(v) => Ok(Some(decode("kv row", v.value())?)),
        None => Ok(None),
    }
}

/// The value of a live key at `rev`. The index said it exists, so a missing
/// row is corruption.
pub(crate) fn kv_at<T>(table: &T, rev: Revision) -> Result<KeyValue, KvError>
where
    T: ReadableTable<(u64, u64), &'static [u8]>,
{
    row(table, rev)?
        .and_then(|r| r.kv)
        .ok_or_else(|| KvError::Corrupt {
            what: "kv row",
            detail: format!("index points at missing revision {rev:?}"),
        })
}

/// The refusals a Range can meet, checked before it reads anything: it
/// returns the revision to read at. `latest` is the newest revision the
/// read may see.
pub(crate) fn check_range(
    state: &State,
    req: &RangeRequest,
    latest: i64,
) -> Result<i64, Rejection> {
    if req.key.is_empty() {
        return Err(Rejection::EmptyKey);
    }
    let at = if req.revision <= 0 {
        latest
    } else {
        req.revision
    };
    if at > latest {
        return Err(Rejection::FutureRevision);
    }
    if at < state.compacted_revision {
        return Err(Rejection::Compacted);
    }
    Ok(at)
}

/// etcd's Range semantics over `table`, at revision `at` (which
/// [`check_range`] accepted), where `latest` is the newest revision a read
/// may see (inside an applying txn it includes the txn's own pending
/// writes). Fails only if the store itself does.
pub(crate) fn range<T>(
    state: &State,
    table: &T,
    req: &RangeRequest,
    at: i64,
    latest: i64,
) -> Result<RangeResponse, KvError>
where
    T: ReadableTable<(u64, u64), &'static [u8]>,
{
    let range = KeyRange::new(req.key.clone(), req.range_end.clone());
    let header = Some(ResponseHeader {
        revision: latest,
        ..Default::default()
    });
    let count = state.index.range(&range, at).count() as i64;
    if req.count_only {
        return Ok(RangeResponse {
            header,
            count,
            ..Default::default()
        });
    }

    let order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    // etcd sorts ascending when a target other than the key is named
    // without an order.
    let order = match (order, target) {
        (SortOrder::None, SortTarget::Key) => SortOrder::None,
        (SortOrder::None, _) => SortOrder::Ascend,
        (o, _) => o,
    };
    let key_order = matches!(order, SortOrder::None)
        || (matches!(order, SortOrder::Ascend) && matches!(target, SortTarget::Key));
    let limit = usize::try_from(req.limit).unwrap_or(0);
    // etcd reads every match only when the request names an order or a
    // revision filter; otherwise it reads one past the limit in key order,
    // and a target named without an order sorts just those.
    let read_all = req.sort_order != SortOrder::None as i32 || has_filters(req);
    let fetch_max = if !read_all && limit > 0 {
        limit + 1
    } else {
        usize::MAX
    };

    let mut kvs = Vec::new();
    for (_, rev) in state.index.range(&range, at) {
        if kvs.len() >= fetch_max {
            break;
        }
        let kv = kv_at(table, rev)?;
        if passes_filters(req, &kv) {
            kvs.push(kv);
        }
    }
    if !key_order {
        sort(&mut kvs, target, order);
    }
    let more = limit > 0 && kvs.len() > limit;
    if more {
        kvs.truncate(limit);
    }
    // After sorting: a sort by value sorts by the values left out.
    if req.keys_only {
        for kv in &mut kvs {
            kv.value = Default::default();
        }
    }
    Ok(RangeResponse {
        header,
        kvs,
        more,
        count,
    })
}

fn has_filters(req: &RangeRequest) -> bool {
    req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0
}

fn passes_filters(req: &RangeRequest, kv: &KeyValue) -> bool {
    (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
        && (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
        && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
        && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
}

/// A stable sort over key-ordered input, so ties stay in key order in
/// both directions (as etcd's sort does for up to 12 results; past that its
/// order of ties is unspecified, see docs/etcd-compatibility.md).
fn sort(kvs: &mut [KeyValue], target: SortTarget, order: SortOrder) {
    use std::cmp::Ordering;
    let by = |a: &KeyValue, b: &KeyValue| -> Ordering {
        match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        }
    };
    if matches!(order, SortOrder::Descend) {
        kvs.sort_by(|a, b| by(b, a));
    } else {
        kvs.sort_by(by);
    }
}

impl Store {
    /// A checksum of every row up to `revision` (0: the current one), equal
    /// on members that applied the same log. Returns the hash, the
    /// compacted revision and the revision hashed.
    pub fn hash_kv(&self, revision: i64) -> Result<(u32, i64, i64), KvError> {
        let state = self.read_state();
        let at = if revision <= 0 {
            state.current_revision
        } else {
            revision
        };
        if at > state.current_revision {
            return Err(KvError::FutureRevision);
        }
        // etcd refuses the compacted revision itself here, unlike a range.
        if revision > 0 && at <= state.compacted_revision {
            return Err(KvError::Compacted);
        }
        let txn = self.db().begin_read().map_err(KvError::storage)?;
        let table = txn.open_table(KV).map_err(KvError::storage)?;
        let end = Revision {
            main: at,
            sub: i64::MAX,
        }
        .to_db();
        let mut hash = 0u32;
        for row in table.range(..=end).map_err(KvError::storage)? {
            let (rev, value) = row.map_err(KvError::storage)?;
            let (main, sub) = rev.value();
            // Garbage a compaction step has not deleted yet is not hashed:
            // members that got different distances through the steps agree.
            if main as i64 <= state.compacted_revision {
                let row: Revisioned = decode("kv row", value.value())?;
                let key = row.kv.map(|kv| kv.key).unwrap_or_default();
                if state.is_garbage(&key, Revision::from_db((main, sub))) {
                    continue;
                }
            }
            hash = hash_row(hash, (main, sub), value.value());
        }
        Ok((hash, state.compacted_revision, at))
    }
}

/// Folds one stored revision into a HashKV hash. Shared with the snapshot
/// summary, so that a snapshot file's hash can be compared with a member's.
pub(crate) fn hash_row(hash: u32, (main, sub): (u64, u64), value: &[u8]) -> u32 {
    let hash = crc32c::crc32c_append(hash, &main.to_be_bytes());
    let hash = crc32c::crc32c_append(hash, &sub.to_be_bytes());
    crc32c::crc32c_append(hash, value)
}
