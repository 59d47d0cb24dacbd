//! Arbitrary input to the apply path: never a panic, never a failure of the
//! store, always a result; and the store's memory always matches its disk.

use bytes::Bytes;
use proptest::prelude::*;

use crate::command::{decode_result, encode};
use crate::error::KvError;
use crate::mvcc::{EntryPayload, Store};
use crate::proto::command::command::Op;
use crate::proto::etcdserverpb::compare::TargetUnion;
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::*;

fn key() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        Just(Bytes::new()),
        Just(Bytes::from_static(b"\0")),
        "[abc]{1,2}".prop_map(Bytes::from),
    ]
}

fn revision() -> impl Strategy<Value = i64> {
    prop_oneof![Just(0i64), -2i64..12, Just(i64::MAX), Just(i64::MIN)]
}

fn put() -> impl Strategy<Value = PutRequest> {
    (key(), "[xyz]{0,3}", any::<bool>(), any::<bool>(), 0i64..3).prop_map(
        |(key, value, ignore_value, ignore_lease, lease)| PutRequest {
            key,
            value: Bytes::from(value),
            lease,
            prev_kv: true,
            ignore_value,
            ignore_lease,
        },
    )
}

fn range() -> impl Strategy<Value = RangeRequest> {
    (key(), key(), revision(), -1i64..3, -1i32..7, -1i32..7).prop_map(
        |(key, range_end, revision, limit, sort_order, sort_target)| RangeRequest {
            key,
            range_end,
            revision,
            limit,
            sort_order,
            sort_target,
            ..Default::default()
        },
    )
}

fn compare() -> impl Strategy<Value = Compare> {
    (key(), key(), -1i32..7, -1i32..7, revision(), any::<bool>()).prop_map(
        |(key, range_end, result, target, operand, as_value)| Compare {
            result,
            target,
            key,
            range_end,
            target_union: Some(if as_value {
                TargetUnion::Value(Bytes::from(operand.to_string()))
            } else {
                TargetUnion::ModRevision(operand)
            }),
        },
    )
}

fn request_op() -> impl Strategy<Value = RequestOp> + Clone {
    let leaf = prop_oneof![
        put().prop_map(Request::RequestPut),
        range().prop_map(Request::RequestRange),
        (key(), key()).prop_map(|(key, range_end)| Request::RequestDeleteRange(
            DeleteRangeRequest {
                key,
                range_end,
                prev_kv: true
            }
        )),
    ]
    .prop_map(|request| RequestOp {
        request: Some(request),
    });
    leaf.prop_recursive(2, 12, 4, |inner| {
        txn_of(inner).prop_map(|txn| RequestOp {
            request: Some(Request::RequestTxn(txn)),
        })
    })
}

fn txn_of(op: impl Strategy<Value = RequestOp> + Clone) -> impl Strategy<Value = TxnRequest> {
    (
        prop::collection::vec(compare(), 0..3),
        prop::collection::vec(op.clone(), 0..4),
        prop::collection::vec(op, 0..4),
    )
        .prop_map(|(compare, success, failure)| TxnRequest {
            compare,
            success,
            failure,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        put().prop_map(Op::Put),
        txn_of(request_op()).prop_map(Op::Txn),
        (key(), key()).prop_map(|(key, range_end)| Op::DeleteRange(DeleteRangeRequest {
            key,
            range_end,
            prev_kv: false
        })),
        revision().prop_map(|revision| Op::Compaction(CompactionRequest {
            revision,
            physical: false
        })),
        (0i64..3, -1i64..100).prop_map(|(id, ttl)| Op::LeaseGrant(LeaseGrantRequest { id, ttl })),
        (0i64..3).prop_map(|id| Op::LeaseRevoke(LeaseRevokeRequest { id })),
    ]
}

/// An encoded command, whole, cut short, or with one byte changed.
fn entry_bytes() -> impl Strategy<Value = Vec<u8>> {
    (op(), any::<prop::sample::Index>(), any::<u8>(), 0u8..3).prop_map(|(op, at, byte, how)| {
        let mut bytes = encode(op).to_vec();
        if !bytes.is_empty() {
            let at = at.index(bytes.len());
            match how {
                0 => {}
                1 => bytes.truncate(at),
                _ => bytes[at] = byte,
            }
        }
        bytes
    })
}

fn is_own_failure(e: &KvError) -> bool {
    matches!(
        e,
        KvError::Storage(_) | KvError::Corrupt { .. } | KvError::Io(_)
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_an_answer_never_a_failure(
        batches in prop::collection::vec(
            prop::collection::vec(
                prop_oneof![entry_bytes(), prop::collection::vec(any::<u8>(), 0..48)],
                1..6,
            ),
            1..6,
        )
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.redb");
        let store = Store::open(&path, false).unwrap();
        let mut index = 0;
        for batch in &batches {
            let entries: Vec<(u64, u64, EntryPayload<'_>)> = batch
                .iter()
                .map(|bytes| {
                    index += 1;
                    (index, 1, EntryPayload::Command(bytes.as_slice()))
                })
                .collect();
            let applied = store.apply(&entries).expect("content never fails the store");
            prop_assert_eq!(applied.len(), entries.len());
            for a in &applied {
                let result = a.result.as_ref().expect("every command has a result");
                if let Err(e) = decode_result(result) {
                    prop_assert!(!is_own_failure(&e), "{e:?}");
                    prop_assert!(a.events.is_empty(), "a refusal published events");
                }
            }
        }
        let in_memory = (store.position(), store.hash_kv(0).unwrap(), store.leases());
        store.flush().unwrap();
        drop(store);
        let reopened = Store::open(&path, false).unwrap();
        let on_disk = (reopened.position(), reopened.hash_kv(0).unwrap(), reopened.leases());
        prop_assert_eq!(in_memory, on_disk);
    }

    #[test]
    fn any_result_bytes_decode_to_an_answer_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode_result(&bytes);
    }
}
