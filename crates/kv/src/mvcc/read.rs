//! Range reads, shared by the read path (a redb read transaction) and by
//! transactions being applied (the open write transaction, so that a txn's
//! reads see its own earlier writes, as in etcd).

use bytes::Bytes;
use redb::ReadableTable;

use super::{KeyIndex, KeyRange, Revision, State, Store};
use crate::error::{Corruption, KvError, decode};
use crate::proto::command::Revisioned;
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use crate::proto::mvccpb::KeyValue;
use crate::rejection::Rejection;

impl Store {
    /// Serves a Range from the applied state, through a read view
    /// (`view.rs`): the store's lock is held for chunks of the index, never
    /// for the whole scan.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, KvError> {
        self.read(|view| view.range(req))
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
            kind: Corruption::MissingRevision {
                main: rev.main,
                sub: rev.sub,
            },
        })
}

/// The refusals a Range can meet, checked before it reads anything: it
/// returns the revision to read at. `latest` is the newest revision the
/// read may see, `compacted` the store's compacted revision.
pub(crate) fn check_range(
    req: &RangeRequest,
    latest: i64,
    compacted: i64,
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
    if at < compacted {
        return Err(Rejection::Compacted);
    }
    Ok(at)
}

/// etcd's Range semantics over `table`, at revision `at` (which
/// [`check_range`] accepted), where `latest` is the newest revision a read
/// may see (inside an applying txn it includes the txn's own pending
/// writes). The index is read in one go: the caller holds the state.
/// Fails only if the store itself does.
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
    let mut scan = RangeScan::of_request(req, at);
    scan.step(&state.index, usize::MAX);
    scan.respond(table, req, latest)
}

/// A Range's walk of the index at one revision, which may be taken in
/// chunks: how many keys match, and the revisions of the first of them
/// that the answer needs, in key order.
pub(crate) struct RangeScan {
    range: KeyRange,
    at: i64,
    /// How many matching revisions the answer needs (the rest are only
    /// counted).
    keep: usize,
    count: usize,
    revs: Vec<Revision>,
    /// Where the next chunk resumes; `Done` once the range is walked.
    resume: Resume,
}

enum Resume {
    Start,
    After(Bytes),
    Done,
}

impl RangeScan {
    /// A walk of `range` at `at` that keeps the revisions of the first
    /// `keep` matches.
    pub(crate) fn new(range: KeyRange, at: i64, keep: usize) -> RangeScan {
        RangeScan {
            range,
            at,
            keep,
            count: 0,
            revs: Vec::new(),
            resume: Resume::Start,
        }
    }

    /// The walk a Range request needs at `at`: every match when it names
    /// an order or a revision filter (etcd reads them all then), else one
    /// past its limit in key order, and none for a count.
    pub(crate) fn of_request(req: &RangeRequest, at: i64) -> RangeScan {
        let range = KeyRange::new(req.key.clone(), req.range_end.clone());
        let limit = usize::try_from(req.limit).unwrap_or(0);
        let read_all = req.sort_order != SortOrder::None as i32 || has_filters(req);
        let keep = if req.count_only {
            0
        } else if !read_all && limit > 0 {
            limit + 1
        } else {
            usize::MAX
        };
        RangeScan::new(range, at, keep)
    }

    /// The revision the walk reads at.
    pub(crate) fn at(&self) -> i64 {
        self.at
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self.resume, Resume::Done)
    }

    /// Walks at most `max_keys` more keys of the range.
    pub(crate) fn step(&mut self, index: &KeyIndex, max_keys: usize) {
        let resume = match &self.resume {
            Resume::Start => None,
            Resume::After(key) => Some(key),
            Resume::Done => return,
        };
        let (keep, count, revs) = (self.keep, &mut self.count, &mut self.revs);
        let next = index.scan_chunk(&self.range, self.at, resume, max_keys, |_, rev| {
            *count += 1;
            if revs.len() < keep {
                revs.push(rev);
            }
        });
        self.resume = next.map_or(Resume::Done, Resume::After);
    }

    /// The revisions kept, in key order, once the walk is done.
    pub(crate) fn into_revisions(self) -> Vec<Revision> {
        debug_assert!(self.is_done(), "the walk is complete");
        self.revs
    }

    /// The Range's answer from the walk, reading the rows it kept from
    /// `table`, which must hold every row the index held at `at` during
    /// the walk.
    pub(crate) fn respond<T>(
        self,
        table: &T,
        req: &RangeRequest,
        latest: i64,
    ) -> Result<RangeResponse, KvError>
    where
        T: ReadableTable<(u64, u64), &'static [u8]>,
    {
        debug_assert!(self.is_done(), "the walk is complete");
        let header = Some(ResponseHeader {
            revision: latest,
            ..Default::default()
        });
        let count = self.count as i64;
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

        let mut kvs = Vec::with_capacity(self.revs.len());
        for rev in self.revs {
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
