//! HashKV: a checksum of the stored history, equal on members that applied
//! the same log, computed on a read view (`view.rs`) so that hashing a large
//! store does not stall apply.

use bytes::Bytes;

use super::view::{ReadView, ViewError};
use super::{Revision, Store};
use crate::error::{KvError, decode};
use crate::proto::command::Revisioned;

/// How many rows at or below the compacted revision are told garbage or
/// not per hold of the state lock.
const GARBAGE_CHECK_ROWS: usize = 1000;

impl Store {
    /// A checksum of every row up to `revision` (0: the current one), equal
    /// on members that applied the same log. Returns the hash, the
    /// compacted revision and the revision hashed.
    pub fn hash_kv(&self, revision: i64) -> Result<(u32, i64, i64), KvError> {
        self.read(|view| hash_kv(view, revision))
    }
}

/// Hashes the view's rows up to `revision` in revision order. Garbage a
/// compaction step has not deleted yet is not hashed, so members that got
/// different distances through the steps agree. Only rows at or below the
/// compacted revision can be garbage, and they come first: those are
/// checked against the index in chunks, under the lock; the rest are
/// hashed without it.
fn hash_kv(view: &ReadView<'_>, revision: i64) -> Result<(u32, i64, i64), ViewError> {
    let (current, compacted) = (view.revision(), view.compacted());
    let at = if revision <= 0 { current } else { revision };
    if at > current {
        return Err(KvError::FutureRevision.into());
    }
    // etcd refuses the compacted revision itself here, unlike a range.
    if revision > 0 && at <= compacted {
        return Err(KvError::Compacted.into());
    }
    let last = |main: i64| {
        Revision {
            main,
            sub: i64::MAX,
        }
        .to_db()
    };
    let mut hash = 0u32;
    // Rows that may be garbage, a chunk at a time: first their keys, then
    // (after the check) the same rows again to hash those kept.
    let mut from = Revision { main: 0, sub: 0 }.to_db();
    let may_be_garbage = last(compacted.clamp(0, at));
    loop {
        let mut chunk: Vec<(Revision, Bytes)> = Vec::new();
        let mut next = None;
        for row in view
            .table()
            .range(from..=may_be_garbage)
            .map_err(KvError::storage)?
        {
            let (rev, value) = row.map_err(KvError::storage)?;
            if chunk.len() == GARBAGE_CHECK_ROWS {
                next = Some(rev.value());
                break;
            }
            let row: Revisioned = decode("kv row", value.value())?;
            let key = row.kv.map(|kv| kv.key).unwrap_or_default();
            chunk.push((Revision::from_db(rev.value()), key));
        }
        let (Some(first), Some(end)) = (chunk.first(), chunk.last()) else {
            break;
        };
        let garbage = view.garbage(&chunk)?;
        let rows = view
            .table()
            .range(first.0.to_db()..=end.0.to_db())
            .map_err(KvError::storage)?;
        for (row, garbage) in rows.zip(garbage) {
            let (rev, value) = row.map_err(KvError::storage)?;
            if !garbage {
                hash = hash_row(hash, rev.value(), value.value());
            }
        }
        match next {
            Some(rev) => from = rev,
            None => break,
        }
    }
    let above = Revision {
        main: compacted.max(0) + 1,
        sub: 0,
    };
    if above.main <= at {
        for row in view
            .table()
            .range(above.to_db()..=last(at))
            .map_err(KvError::storage)?
        {
            let (rev, value) = row.map_err(KvError::storage)?;
            hash = hash_row(hash, rev.value(), value.value());
        }
    }
    Ok((hash, compacted, at))
}

/// Folds one stored revision into a HashKV hash. Shared with the snapshot
/// summary, so that a snapshot file's hash can be compared with a member's.
pub(crate) fn hash_row(hash: u32, (main, sub): (u64, u64), value: &[u8]) -> u32 {
    let hash = crc32c::crc32c_append(hash, &main.to_be_bytes());
    let hash = crc32c::crc32c_append(hash, &sub.to_be_bytes());
    crc32c::crc32c_append(hash, value)
}
