//! The store against etcd's semantics, driven through encoded commands as
//! Raft would drive it.

use bytes::Bytes;

use super::{EntryPayload, KeyRange, Store, summarize};
use crate::command::{decode_result, encode};
use crate::error::{Corruption, KvError};
use crate::proto::command::command::Op;
use crate::proto::command::command_result::Result as Outcome;
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::*;

mod auth;
mod disk;
mod etcd_parity;
mod fuzz;
mod history;
mod read_txn;
mod rejections;
mod view;

struct Harness {
    _dir: tempfile::TempDir,
    store: Store,
    index: u64,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("kv.redb"), false).unwrap();
        Harness {
            _dir: dir,
            store,
            index: 0,
        }
    }

    fn run(&mut self, op: Op) -> Result<Outcome, KvError> {
        self.index += 1;
        let bytes = encode(op);
        let applied = self
            .store
            .apply(&[(self.index, 1, EntryPayload::Command(&bytes))])
            .unwrap();
        decode_result(applied[0].result.as_ref().unwrap()).map(|(_, o)| o)
    }

    fn put(&mut self, key: &str, value: &str) -> PutResponse {
        match self
            .run(Op::Put(PutRequest {
                key: Bytes::from(key.to_owned()),
                value: Bytes::from(value.to_owned()),
                prev_kv: true,
                ..Default::default()
            }))
            .unwrap()
        {
            Outcome::Put(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn get(&self, key: &str, end: &str, revision: i64) -> Result<RangeResponse, KvError> {
        self.store.range(&RangeRequest {
            key: Bytes::from(key.to_owned()),
            range_end: Bytes::from(end.to_owned()),
            revision,
            ..Default::default()
        })
    }
}

fn keys(r: &RangeResponse) -> Vec<String> {
    r.kvs
        .iter()
        .map(|kv| String::from_utf8(kv.key.to_vec()).unwrap())
        .collect()
}

#[test]
fn put_bumps_revision_and_tracks_versions() {
    let mut h = Harness::new();
    assert!(h.put("a", "1").prev_kv.is_none());
    let second = h.put("a", "2");
    assert_eq!(second.header.unwrap().revision, 3);
    assert_eq!(second.prev_kv.unwrap().value, "1");
    let kv = &h.get("a", "", 0).unwrap().kvs[0];
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
    assert_eq!(h.get("a", "", 2).unwrap().kvs[0].value, "1");
}

#[test]
fn delete_resets_version_and_old_revisions_stay_readable() {
    let mut h = Harness::new();
    h.put("a", "1");
    h.put("b", "1");
    let Outcome::DeleteRange(d) = h
        .run(Op::DeleteRange(DeleteRangeRequest {
            key: "a".into(),
            range_end: "c".into(),
            prev_kv: true,
        }))
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(d.deleted, 2);
    assert_eq!(d.prev_kvs.len(), 2);
    assert_eq!(d.header.unwrap().revision, 4);
    assert!(h.get("a", "", 0).unwrap().kvs.is_empty());
    assert_eq!(keys(&h.get("a", "c", 3).unwrap()), vec!["a", "b"]);
    h.put("a", "again");
    let kv = &h.get("a", "", 0).unwrap().kvs[0];
    assert_eq!((kv.create_revision, kv.version), (5, 1));
}

#[test]
fn deleting_nothing_does_not_bump_revision() {
    let mut h = Harness::new();
    h.put("a", "1");
    h.run(Op::DeleteRange(DeleteRangeRequest {
        key: "zz".into(),
        ..Default::default()
    }))
    .unwrap();
    assert_eq!(h.store.position().revision, 2);
}

#[test]
fn range_limit_count_sort_and_filters() {
    let mut h = Harness::new();
    for (k, v) in [("k1", "c"), ("k2", "a"), ("k3", "b")] {
        h.put(k, v);
    }
    let base = RangeRequest {
        key: "k".into(),
        range_end: "l".into(),
        ..Default::default()
    };
    let r = h
        .store
        .range(&RangeRequest {
            limit: 2,
            ..base.clone()
        })
        .unwrap();
    assert_eq!(
        (keys(&r), r.more, r.count),
        (vec!["k1".into(), "k2".into()], true, 3)
    );
    let r = h
        .store
        .range(&RangeRequest {
            sort_target: SortTarget::Value as i32,
            sort_order: SortOrder::Descend as i32,
            limit: 1,
            ..base.clone()
        })
        .unwrap();
    assert_eq!(keys(&r), vec!["k1"]);
    let r = h
        .store
        .range(&RangeRequest {
            min_mod_revision: 3,
            keys_only: true,
            ..base.clone()
        })
        .unwrap();
    assert_eq!(keys(&r), vec!["k2", "k3"]);
    assert!(r.kvs[0].value.is_empty());
    let r = h
        .store
        .range(&RangeRequest {
            count_only: true,
            ..base
        })
        .unwrap();
    assert_eq!((r.count, r.kvs.len()), (3, 0));
}

#[test]
fn ignore_value_on_missing_key_is_refused_without_effect() {
    let mut h = Harness::new();
    let err = h
        .run(Op::Put(PutRequest {
            key: "a".into(),
            ignore_value: true,
            ..Default::default()
        }))
        .unwrap_err();
    assert!(matches!(err, KvError::KeyNotFound));
    assert_eq!(h.store.position().revision, 1);
}

#[test]
fn txn_compares_then_runs_one_branch_at_one_revision() {
    let mut h = Harness::new();
    h.put("a", "1");
    let txn = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Value as i32,
            key: "a".into(),
            target_union: Some(TargetUnion::Value("1".into())),
            ..Default::default()
        }],
        success: vec![
            RequestOp {
                request: Some(Request::RequestPut(PutRequest {
                    key: "b".into(),
                    value: "2".into(),
                    ..Default::default()
                })),
            },
            RequestOp {
                request: Some(Request::RequestPut(PutRequest {
                    key: "c".into(),
                    value: "3".into(),
                    ..Default::default()
                })),
            },
            RequestOp {
                request: Some(Request::RequestRange(RangeRequest {
                    key: "b".into(),
                    ..Default::default()
                })),
            },
        ],
        failure: vec![],
    };
    let Outcome::Txn(r) = h.run(Op::Txn(txn.clone())).unwrap() else {
        panic!()
    };
    assert!(r.succeeded);
    assert_eq!(r.header.unwrap().revision, 3);
    assert_eq!(h.get("c", "", 0).unwrap().kvs[0].mod_revision, 3);
    // The txn's range saw its own earlier put.
    let Some(response_op::Response::ResponseRange(range)) = &r.responses[2].response else {
        panic!()
    };
    assert_eq!(range.kvs[0].value, "2");
    // Now the compare fails and nothing runs: the revision stays.
    h.put("a", "x");
    let Outcome::Txn(r) = h.run(Op::Txn(txn)).unwrap() else {
        panic!()
    };
    assert!(!r.succeeded);
    assert_eq!(h.store.position().revision, 4);
}

#[test]
fn missing_key_compares_as_zero_version() {
    let mut h = Harness::new();
    let txn = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Version as i32,
            key: "nope".into(),
            target_union: Some(TargetUnion::Version(0)),
            ..Default::default()
        }],
        ..Default::default()
    };
    let Outcome::Txn(r) = h.run(Op::Txn(txn)).unwrap() else {
        panic!()
    };
    assert!(r.succeeded);
}

#[test]
fn compaction_refuses_old_reads_and_keeps_current_state() {
    let mut h = Harness::new();
    h.put("a", "1");
    h.put("a", "2");
    h.put("b", "1");
    h.run(Op::Compaction(CompactionRequest {
        revision: 3,
        physical: false,
    }))
    .unwrap();
    assert!(matches!(h.get("a", "", 2), Err(KvError::Compacted)));
    assert_eq!(h.get("a", "", 3).unwrap().kvs[0].value, "2");
    assert!(matches!(h.get("a", "", 9), Err(KvError::FutureRevision)));
    let again = h.run(Op::Compaction(CompactionRequest {
        revision: 3,
        physical: false,
    }));
    assert!(matches!(again, Err(KvError::Compacted)));
}

#[test]
fn lease_revoke_deletes_attached_keys() {
    let mut h = Harness::new();
    h.run(Op::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 7 }))
        .unwrap();
    h.run(Op::Put(PutRequest {
        key: "a".into(),
        value: "1".into(),
        lease: 7,
        ..Default::default()
    }))
    .unwrap();
    h.put("b", "1");
    assert_eq!(h.store.lease(7).unwrap().keys.len(), 1);
    let missing = h.run(Op::Put(PutRequest {
        key: "c".into(),
        lease: 8,
        ..Default::default()
    }));
    assert!(matches!(missing, Err(KvError::LeaseNotFound)));
    h.run(Op::LeaseRevoke(LeaseRevokeRequest { id: 7 }))
        .unwrap();
    assert!(h.get("a", "", 0).unwrap().kvs.is_empty());
    assert_eq!(h.get("b", "", 0).unwrap().kvs.len(), 1);
    assert!(h.store.lease(7).is_none());
}

#[test]
fn reopen_rebuilds_index_leases_and_applied_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.redb");
    {
        let store = Store::open(&path, false).unwrap();
        let cmds = [
            encode(Op::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 7 })),
            encode(Op::Put(PutRequest {
                key: "a".into(),
                value: "1".into(),
                lease: 7,
                ..Default::default()
            })),
        ];
        store
            .apply(&[
                (1, 1, EntryPayload::Command(&cmds[0])),
                (2, 1, EntryPayload::Command(&cmds[1])),
                (3, 2, EntryPayload::Other),
            ])
            .unwrap();
        store.flush().unwrap();
    }
    let store = Store::open(&path, false).unwrap();
    let pos = store.position();
    assert_eq!(
        (pos.applied_index, pos.applied_term, pos.revision),
        (3, 2, 2)
    );
    assert_eq!(store.lease(7).unwrap().keys.len(), 1);
    // Replayed entries at or below the applied index are skipped.
    let dup = encode(Op::Put(PutRequest {
        key: "a".into(),
        value: "dup".into(),
        ..Default::default()
    }));
    assert!(
        store
            .apply(&[(2, 1, EntryPayload::Command(&dup))])
            .unwrap()
            .is_empty()
    );
    let r = store
        .range(&RangeRequest {
            key: "a".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r.kvs[0].value, "1");
}

#[test]
fn snapshot_round_trips_into_another_store() {
    let mut h = Harness::new();
    h.put("a", "1");
    h.put("a", "2");
    h.run(Op::LeaseGrant(LeaseGrantRequest { ttl: 5, id: 3 }))
        .unwrap();
    let mut buf = Vec::new();
    let pos = h.store.write_snapshot(&mut buf).unwrap();
    assert_eq!(pos.applied_index, 3);
    let other = Harness::new();
    let restored = other
        .store
        .restore_snapshot(&mut buf.as_slice(), 0)
        .unwrap();
    assert_eq!(restored, pos);
    assert_eq!(other.get("a", "", 2).unwrap().kvs[0].value, "1");
    assert_eq!(other.store.lease(3).unwrap().ttl_seconds, 5);
    let truncated = other.store.restore_snapshot(&mut &buf[..buf.len() - 3], 0);
    assert!(truncated.is_err());
}

#[test]
fn a_damaged_snapshot_is_refused_naming_what_is_wrong() {
    let unknown_tag = [0x42, 0, 0, 0, 0];
    let err = summarize(&mut unknown_tag.as_slice()).unwrap_err();
    assert!(
        matches!(
            err,
            KvError::Corrupt {
                kind: Corruption::UnknownTag { tag: 0x42 },
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "keel-kv: corrupt snapshot: unknown frame tag 66"
    );

    let oversized_frame = [0x42, 0xff, 0xff, 0xff, 0xff];
    let err = summarize(&mut oversized_frame.as_slice()).unwrap_err();
    assert!(
        matches!(
            err,
            KvError::Corrupt {
                kind: Corruption::TooLong { bytes, .. },
                ..
            } if bytes == u32::MAX as usize
        ),
        "{err:?}"
    );
}

#[test]
fn history_replays_events_with_prev_kv() {
    let mut h = Harness::new();
    h.put("a", "1");
    h.put("b", "1");
    h.put("a", "2");
    let events = h
        .store
        .history(3, 4, &KeyRange::new("a", "c"), 100)
        .unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].prev_kv.as_ref().unwrap().value, "1");
    let only_a = h.store.history(1, 4, &KeyRange::new("a", ""), 100).unwrap();
    assert_eq!(only_a.len(), 2);
}
