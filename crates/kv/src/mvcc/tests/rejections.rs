//! The rule of apply: what a command says can only be a rejection that
//! changes nothing, never a failure of the store; and a txn is all or
//! nothing.

use bytes::Bytes;

use super::Harness;
use crate::command::{decode_result, encode};
use crate::error::KvError;
use crate::mvcc::{EntryPayload, Store};
use crate::proto::command::command::Op;
use crate::proto::command::command_result::Result as Outcome;
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::*;

fn put_op(key: &str, value: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            key: Bytes::from(key.to_owned()),
            value: Bytes::from(value.to_owned()),
            ..Default::default()
        })),
    }
}

fn value_of(h: &Harness, key: &str) -> Option<Bytes> {
    let r = h.get(key, "", 0).unwrap();
    r.kvs.first().map(|kv| kv.value.clone())
}

/// Applies raw entry bytes at the next index, as a log written by any build
/// (or any peer) may hold them.
fn apply_raw(h: &mut Harness, bytes: &[u8]) -> Result<Outcome, KvError> {
    h.index += 1;
    let applied = h
        .store
        .apply(&[(h.index, 1, EntryPayload::Command(bytes))])
        .expect("content never fails the store");
    assert!(
        applied[0].events.is_empty(),
        "a rejection publishes no event"
    );
    decode_result(applied[0].result.as_ref().unwrap()).map(|(_, o)| o)
}

#[test]
fn undecodable_bytes_are_rejected_and_the_store_goes_on() {
    let mut h = Harness::new();
    h.put("a", "1");
    for garbage in [&b"\xff\xff\xff\xff\xff\xff\xff"[..], b"\x0a\x05ab", b"\x1a"] {
        let err = apply_raw(&mut h, garbage).unwrap_err();
        assert!(
            matches!(err, KvError::InvalidRequest(_)),
            "{garbage:?}: {err:?}"
        );
    }
    assert_eq!(h.store.position().applied_index, h.index);
    assert_eq!(h.store.position().revision, 2);
    h.put("a", "2");
    assert_eq!(value_of(&h, "a").unwrap(), "2");
}

#[test]
fn a_command_from_a_newer_format_is_rejected_as_unsupported() {
    let mut h = Harness::new();
    // Field 29, length-delimited: an op this build does not know.
    let newer = [0xea, 0x01, 0x02, 0x08, 0x01];
    let err = apply_raw(&mut h, &newer).unwrap_err();
    assert!(matches!(err, KvError::Unsupported(_)), "{err:?}");
    assert_eq!(h.store.position().applied_index, 1);
}

#[test]
fn compares_with_unknown_enum_values_follow_etcd_and_never_fail() {
    let mut h = Harness::new();
    h.put("a", "1");
    let txn = |target: i32, result: i32, union: Option<TargetUnion>| {
        Op::Txn(TxnRequest {
            compare: vec![Compare {
                result,
                target,
                key: "a".into(),
                target_union: union,
                ..Default::default()
            }],
            success: vec![put_op("won", "yes")],
            failure: vec![put_op("won", "no")],
        })
    };
    let succeeded = |h: &mut Harness, op| match h.run(op).unwrap() {
        Outcome::Txn(r) => r.succeeded,
        other => panic!("{other:?}"),
    };
    // An unknown target compares as equal.
    assert!(succeeded(&mut h, txn(9, CompareResult::Equal as i32, None)));
    assert!(!succeeded(
        &mut h,
        txn(9, CompareResult::Greater as i32, None)
    ));
    // An unknown result holds.
    assert!(succeeded(
        &mut h,
        txn(CompareTarget::Version as i32, 7, None)
    ));
    // A union of another type compares the target with zero: version 1 > 0.
    let mismatched = Some(TargetUnion::Value("x".into()));
    assert!(succeeded(
        &mut h,
        txn(
            CompareTarget::Version as i32,
            CompareResult::Greater as i32,
            mismatched
        )
    ));
    assert_eq!(h.store.position().applied_index, h.index);
}

#[test]
fn a_txn_refused_by_a_later_range_writes_nothing() {
    let mut h = Harness::new();
    h.put("a", "before");
    h.put("b", "1");
    h.put("b", "2");
    let Outcome::Compaction(_) = h
        .run(Op::Compaction(CompactionRequest {
            revision: 4,
            physical: false,
        }))
        .unwrap()
    else {
        panic!()
    };
    let revision = h.store.position().revision;
    let txn = TxnRequest {
        success: vec![
            put_op("a", "after"),
            RequestOp {
                request: Some(Request::RequestRange(RangeRequest {
                    key: "b".into(),
                    revision: 2,
                    ..Default::default()
                })),
            },
        ],
        ..Default::default()
    };
    h.index += 1;
    let bytes = encode(Op::Txn(txn));
    let applied = h
        .store
        .apply(&[(h.index, 1, EntryPayload::Command(&bytes))])
        .unwrap();
    assert!(applied[0].events.is_empty(), "no watch event may leave");
    let err = decode_result(applied[0].result.as_ref().unwrap()).unwrap_err();
    assert!(matches!(err, KvError::Compacted), "{err:?}");
    assert_eq!(value_of(&h, "a").unwrap(), "before");
    assert_eq!(h.store.position().revision, revision);
}

#[test]
fn a_txn_refused_by_a_future_range_in_a_nested_txn_writes_nothing() {
    let mut h = Harness::new();
    h.put("a", "before");
    let nested = TxnRequest {
        success: vec![RequestOp {
            request: Some(Request::RequestRange(RangeRequest {
                key: "a".into(),
                revision: 99,
                ..Default::default()
            })),
        }],
        ..Default::default()
    };
    let txn = TxnRequest {
        success: vec![
            put_op("a", "after"),
            RequestOp {
                request: Some(Request::RequestTxn(nested)),
            },
        ],
        ..Default::default()
    };
    let err = h.run(Op::Txn(txn)).unwrap_err();
    assert!(matches!(err, KvError::FutureRevision), "{err:?}");
    assert_eq!(value_of(&h, "a").unwrap(), "before");
}

/// A txn that deletes a key and then keeps its value passes every check
/// made before its writes (the API layer refuses it, but a log may hold it)
/// and is refused half way: the whole batch is redone without it.
#[test]
fn a_refusal_half_way_drops_the_batch_and_redoes_it_without_the_command() {
    let mut h = Harness::new();
    h.put("k", "1");
    let half_way = encode(Op::Txn(TxnRequest {
        success: vec![
            RequestOp {
                request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                    key: "k".into(),
                    ..Default::default()
                })),
            },
            RequestOp {
                request: Some(Request::RequestPut(PutRequest {
                    key: "k".into(),
                    ignore_value: true,
                    ..Default::default()
                })),
            },
        ],
        ..Default::default()
    }));
    let before = encode(Op::Put(PutRequest {
        key: "x".into(),
        value: "before".into(),
        ..Default::default()
    }));
    let after = encode(Op::Put(PutRequest {
        key: "y".into(),
        value: "after".into(),
        ..Default::default()
    }));
    let first = h.index + 1;
    h.index += 3;
    let applied = h
        .store
        .apply(&[
            (first, 1, EntryPayload::Command(&before)),
            (first + 1, 1, EntryPayload::Command(&half_way)),
            (first + 2, 1, EntryPayload::Command(&after)),
        ])
        .unwrap();
    assert_eq!(applied.len(), 3);
    assert!(applied[1].events.is_empty());
    let err = decode_result(applied[1].result.as_ref().unwrap()).unwrap_err();
    assert!(matches!(err, KvError::KeyNotFound), "{err:?}");
    // The entries around it applied, at consecutive revisions.
    assert_eq!(applied[0].revision, 3);
    assert_eq!(applied[2].revision, 4);
    assert_eq!(value_of(&h, "k").unwrap(), "1");
    assert_eq!(value_of(&h, "x").unwrap(), "before");
    assert_eq!(value_of(&h, "y").unwrap(), "after");
    assert_eq!(h.store.position().applied_index, h.index);
}

/// A store that applied a poisoned entry reopens to the same state as one
/// that never saw it.
#[test]
fn rejected_entries_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.redb");
    let put = encode(Op::Put(PutRequest {
        key: "a".into(),
        value: "1".into(),
        ..Default::default()
    }));
    {
        let store = Store::open(&path, true).unwrap();
        store
            .apply(&[
                (1, 1, EntryPayload::Command(b"\xff\x00garbage")),
                (2, 1, EntryPayload::Command(&put)),
            ])
            .unwrap();
    }
    let store = Store::open(&path, true).unwrap();
    let position = store.position();
    assert_eq!((position.applied_index, position.revision), (2, 2));
}
