//! Read views (`view.rs`): a read walked in chunks of the index at a fixed
//! revision answers as a read holding the lock throughout, whatever is
//! applied between its chunks, and starts over when a compaction above its
//! revision races it.

use redb::{ReadableDatabase, ReadableTable};

use super::super::read::RangeScan;
use super::super::tables::KV;
use super::super::view::{Hold, ReadView, ViewError};
use super::super::{Revision, VIEW_ATTEMPTS};
use super::*;
use crate::proto::command::CompactionStep;

/// Applies `op` as the entry after `index`, as `Harness::run` does, for
/// tests that hold a view of the store meanwhile.
pub(super) fn apply(store: &Store, index: &mut u64, op: Op) {
    *index += 1;
    let bytes = encode(op);
    let applied = store
        .apply(&[(*index, 1, EntryPayload::Command(&bytes))])
        .unwrap();
    decode_result(applied[0].result.as_ref().unwrap()).unwrap();
}

pub(super) fn put(key: &str, value: &str) -> Op {
    Op::Put(PutRequest {
        key: Bytes::from(key.to_owned()),
        value: Bytes::from(value.to_owned()),
        ..Default::default()
    })
}

pub(super) fn delete(key: &str) -> Op {
    Op::DeleteRange(DeleteRangeRequest {
        key: Bytes::from(key.to_owned()),
        ..Default::default()
    })
}

pub(super) fn compact(revision: i64) -> Op {
    Op::Compaction(CompactionRequest {
        revision,
        physical: false,
    })
}

fn prefix(key: &str, end: &str) -> RangeRequest {
    RangeRequest {
        key: Bytes::from(key.to_owned()),
        range_end: Bytes::from(end.to_owned()),
        ..Default::default()
    }
}

/// 30 keys `k00`..`k29`, each written twice, every third one deleted,
/// and keys outside the range on both sides.
pub(super) fn history(h: &mut Harness) {
    h.put("a", "before");
    for round in 0..2 {
        for i in 0..30 {
            h.put(&format!("k{i:02}"), &format!("v{round}"));
        }
    }
    for i in (0..30).step_by(3) {
        h.run(delete(&format!("k{i:02}"))).unwrap();
    }
    h.put("z", "after");
}

/// The answer of a read that holds the lock throughout.
fn locked(store: &Store, req: &RangeRequest) -> RangeResponse {
    ReadView::open(store, Hold::Throughout)
        .unwrap()
        .range(req)
        .unwrap()
}

/// Walks `req` through a view three keys at a time, applying one of
/// `between` after each chunk, and answers from the walk.
fn chunked(h: &mut Harness, req: &RangeRequest, between: &[Op]) -> RangeResponse {
    let store = &h.store;
    let view = ReadView::open(store, Hold::PerChunk { keys: 3 }).unwrap();
    let at = if req.revision > 0 {
        req.revision
    } else {
        view.revision()
    };
    let mut scan = RangeScan::of_request(req, at);
    let mut writes = between.iter().cloned();
    let mut chunks = 0;
    while !scan.is_done() {
        view.walk_chunk(&mut scan).unwrap();
        chunks += 1;
        assert!(chunks <= 20, "30 keys take 10 chunks of 3");
        if let Some(op) = writes.next() {
            apply(store, &mut h.index, op);
        }
    }
    if chunks > between.len() {
        assert!(
            writes.next().is_none(),
            "every write ran between two chunks"
        );
    }
    scan.respond(view.table(), req, view.revision()).unwrap()
}

#[test]
fn a_chunked_read_answers_as_a_locked_read_at_its_revision_whatever_is_applied_between_chunks() {
    let mut h = Harness::new();
    history(&mut h);
    let requests = [
        prefix("k", "l"),
        RangeRequest {
            limit: 7,
            ..prefix("k", "l")
        },
        RangeRequest {
            count_only: true,
            ..prefix("k", "l")
        },
        RangeRequest {
            sort_order: SortOrder::Descend as i32,
            sort_target: SortTarget::Mod as i32,
            ..prefix("k", "l")
        },
        RangeRequest {
            min_mod_revision: 40,
            ..prefix("k", "l")
        },
        prefix("k", "\0"),
        prefix("k08", ""),
    ];
    for req in &requests {
        let before = h.store.position().revision;
        let expected = locked(&h.store, req);
        assert!(!expected.kvs.is_empty() || req.count_only, "{req:?}");
        // Writes into and around the range (before and after the walk's
        // position), a compaction at the view's revision and every one of
        // its steps: none of them is visible at that revision.
        let between = [
            put("k01", "new"),
            put("k29", "new"),
            delete("k28"),
            put("k05a", "inserted"),
            put("k00", "recreated"),
            compact(before),
            Op::CompactionStep(CompactionStep {}),
            delete("k07"),
            put("a", "outside"),
        ];
        let got = chunked(&mut h, req, &between);
        assert_eq!(got, expected, "{req:?}");
        assert_eq!(got.header.unwrap().revision, before);
    }
}

#[test]
fn a_chunked_read_at_a_named_revision_reads_rows_compaction_steps_deleted_since() {
    let mut h = Harness::new();
    history(&mut h);
    let old = RangeRequest {
        revision: 20,
        ..prefix("k", "l")
    };
    let expected = locked(&h.store, &old);
    // Compacting at the read's own revision keeps what it sees, and the
    // steps delete the older rows; the view's transaction still has them.
    let between = [compact(20), Op::CompactionStep(CompactionStep {})];
    assert_eq!(chunked(&mut h, &old, &between), expected);
    assert!(!h.store.compaction_pending(), "the steps ran");
}

#[test]
fn a_compaction_above_a_chunked_reads_revision_races_it() {
    let mut h = Harness::new();
    history(&mut h);
    let store = &h.store;
    let view = ReadView::open(store, Hold::PerChunk { keys: 3 }).unwrap();
    let mut scan = RangeScan::of_request(&prefix("k", "l"), view.revision());
    view.walk_chunk(&mut scan).unwrap();
    apply(store, &mut h.index, put("k99", "new"));
    apply(store, &mut h.index, compact(view.revision() + 1));
    assert!(matches!(view.walk_chunk(&mut scan), Err(ViewError::Raced)));
}

#[test]
fn a_raced_read_starts_over_at_the_new_revision_or_answers_compacted() {
    let mut h = Harness::new();
    history(&mut h);
    let first = h.store.position().revision;
    let index = std::cell::Cell::new(h.index);
    let store = &h.store;
    let race = |view: &ReadView<'_>| {
        let mut i = index.get();
        apply(store, &mut i, put("k99", "new"));
        apply(store, &mut i, compact(view.revision() + 1));
        index.set(i);
    };

    // Raced once, then answered from a new view at the new revision.
    let mut attempts = 0;
    let latest = store
        .read(|view| {
            attempts += 1;
            if attempts == 1 {
                race(view);
            }
            view.range(&prefix("k", "l"))
        })
        .unwrap();
    assert_eq!(attempts, 2);
    assert_eq!(latest.header.unwrap().revision, first + 1);
    assert_eq!(latest.kvs.last().unwrap().key, "k99");

    // A read that named the revision a compaction passed gets etcd's
    // ErrCompacted on its next attempt.
    let named = RangeRequest {
        revision: first + 1,
        ..prefix("k", "l")
    };
    let mut attempts = 0;
    let err = store
        .read(|view| {
            attempts += 1;
            if attempts == 1 {
                race(view);
            }
            view.range(&named)
        })
        .unwrap_err();
    assert!(matches!(err, KvError::Compacted), "{err}");
    assert_eq!(attempts, 2);

    // Raced at every attempt: the last one holds the lock and answers.
    let mut attempts = 0;
    let answer = store
        .read(|view| {
            attempts += 1;
            if attempts <= VIEW_ATTEMPTS {
                race(view);
            }
            view.range(&prefix("k", "l"))
        })
        .unwrap();
    assert_eq!(attempts, VIEW_ATTEMPTS + 1);
    assert_eq!(answer.header.unwrap().revision, store.position().revision);
}

#[test]
fn hash_kv_on_a_view_skips_exactly_the_garbage() {
    let mut h = Harness::new();
    history(&mut h);
    let compacted = h.store.position().revision - 5;
    h.run(compact(compacted)).unwrap();
    h.run(Op::CompactionStep(CompactionStep {})).unwrap();
    h.put("k40", "later");

    // The same hash computed holding the lock, row by row.
    let state = h.store.read_state();
    let txn = h.store.db().begin_read().unwrap();
    let table = txn.open_table(KV).unwrap();
    let mut expected = 0;
    for row in table.iter().unwrap() {
        let (rev, value) = row.unwrap();
        let rev = Revision::from_db(rev.value());
        let decoded: crate::proto::command::Revisioned =
            crate::error::decode("kv row", value.value()).unwrap();
        if !state.is_garbage(&decoded.kv.unwrap().key, rev) {
            expected = super::super::hash::hash_row(expected, rev.to_db(), value.value());
        }
    }
    let current = state.current_revision;
    drop(state);
    assert_eq!(h.store.hash_kv(0).unwrap(), (expected, compacted, current));
}
