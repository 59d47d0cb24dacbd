//! Answers that differed from etcd 3.4's until `keel-difftest` found them;
//! each test pins etcd's answer.

use bytes::Bytes;

use super::{Harness, keys};
use crate::error::KvError;
use crate::mvcc::{EntryPayload, Store};
use crate::proto::command::command::Op;
use crate::proto::command::command_result::Result as Outcome;
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::response_op::Response;
use crate::proto::etcdserverpb::*;

fn range_op(key: &str, revision: i64) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestRange(RangeRequest {
            key: Bytes::from(key.to_owned()),
            revision,
            ..Default::default()
        })),
    }
}

fn txn(success: Vec<RequestOp>) -> Op {
    Op::Txn(TxnRequest {
        success,
        ..Default::default()
    })
}

fn compact(h: &mut Harness, revision: i64) -> Result<Outcome, KvError> {
    h.run(Op::Compaction(CompactionRequest {
        revision,
        physical: false,
    }))
}

fn sorted(h: &Harness, req: RangeRequest) -> Vec<String> {
    keys(&h.store.range(&req).unwrap())
}

#[test]
fn a_txn_checks_every_put_before_any_range() {
    let mut h = Harness::new();
    let put_with_missing_lease = RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            key: "a".into(),
            lease: 99,
            ..Default::default()
        })),
    };
    let err = h
        .run(txn(vec![range_op("a", 50), put_with_missing_lease]))
        .unwrap_err();
    assert!(matches!(err, KvError::LeaseNotFound), "{err:?}");
}

#[test]
fn a_negative_range_revision_in_a_txn_is_compacted_once_below_the_compacted_revision() {
    let mut h = Harness::new();
    h.put("a", "1");
    assert!(matches!(
        h.run(txn(vec![range_op("a", -1)])),
        Ok(Outcome::Txn(_))
    ));
    h.put("a", "2");
    compact(&mut h, 2).unwrap();
    let err = h.run(txn(vec![range_op("a", -1)])).unwrap_err();
    assert!(matches!(err, KvError::Compacted), "{err:?}");
    // Alone, a negative revision means the current one.
    assert_eq!(h.get("a", "", -1).unwrap().kvs[0].value, "2");
}

#[test]
fn a_nested_txn_response_has_an_empty_header() {
    let mut h = Harness::new();
    let nested = RequestOp {
        request: Some(Request::RequestTxn(TxnRequest {
            success: vec![range_op("a", 0)],
            ..Default::default()
        })),
    };
    let Ok(Outcome::Txn(resp)) = h.run(txn(vec![nested])) else {
        panic!("the txn runs");
    };
    assert_eq!(resp.header.map(|h| h.revision), Some(1));
    let Some(Response::ResponseTxn(inner)) = &resp.responses[0].response else {
        panic!("a nested txn answers with a txn response");
    };
    assert_eq!(inner.header, Some(ResponseHeader::default()));
}

#[test]
fn a_store_never_compacted_compacts_at_zero_once_and_says_so_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.redb");
    {
        let store = Store::open(&path, true).unwrap();
        assert_eq!(store.hash_kv(0).unwrap().1, -1);
        // A write, so that the store records its meta.
        let put = crate::command::encode(Op::Put(PutRequest {
            key: "a".into(),
            ..Default::default()
        }));
        store.apply(&[(1, 1, EntryPayload::Command(&put))]).unwrap();
    }
    let store = Store::open(&path, true).unwrap();
    assert_eq!(store.hash_kv(0).unwrap().1, -1);

    let mut h = Harness::new();
    assert!(matches!(compact(&mut h, -1), Err(KvError::Compacted)));
    assert!(matches!(compact(&mut h, 0), Ok(Outcome::Compaction(_))));
    assert_eq!(h.store.hash_kv(0).unwrap().1, 0);
    assert!(matches!(compact(&mut h, 0), Err(KvError::Compacted)));
}

#[test]
fn hash_kv_refuses_the_compacted_revision_itself() {
    let mut h = Harness::new();
    h.put("a", "1");
    h.put("a", "2");
    compact(&mut h, 2).unwrap();
    assert!(matches!(h.store.hash_kv(2), Err(KvError::Compacted)));
    assert_eq!(h.store.hash_kv(3).unwrap().1, 2);
    // A range may still read at the compacted revision.
    assert!(h.get("a", "", 2).is_ok());
}

#[test]
fn keys_only_sorts_by_the_values_it_leaves_out() {
    let mut h = Harness::new();
    h.put("a", "2");
    h.put("b", "1");
    let req = RangeRequest {
        key: "a".into(),
        range_end: "c".into(),
        sort_target: SortTarget::Value as i32,
        keys_only: true,
        ..Default::default()
    };
    assert_eq!(sorted(&h, req), ["b", "a"]);
}

#[test]
fn a_descending_sort_keeps_ties_in_key_order() {
    let mut h = Harness::new();
    h.put("a", "x");
    h.put("b", "x");
    h.put("c", "x");
    h.put("c", "y");
    let req = RangeRequest {
        key: "a".into(),
        range_end: "d".into(),
        sort_order: SortOrder::Descend as i32,
        sort_target: SortTarget::Version as i32,
        ..Default::default()
    };
    assert_eq!(sorted(&h, req), ["c", "a", "b"]);
}

#[test]
fn a_target_without_an_order_sorts_only_the_first_limit_plus_one_keys() {
    let mut h = Harness::new();
    h.put("a", "x");
    h.put("a", "y");
    h.put("b", "x");
    h.put("c", "x");
    let mut req = RangeRequest {
        key: "a".into(),
        range_end: "d".into(),
        limit: 1,
        sort_target: SortTarget::Version as i32,
        ..Default::default()
    };
    // etcd reads a and b, sorts them by version (b, a) and keeps one.
    assert_eq!(sorted(&h, req.clone()), ["b"]);
    // Naming the order makes it read every key first.
    req.sort_order = SortOrder::Ascend as i32;
    assert_eq!(sorted(&h, req), ["b"]);
    let descending = RangeRequest {
        key: "a".into(),
        range_end: "d".into(),
        limit: 1,
        sort_order: SortOrder::Descend as i32,
        sort_target: SortTarget::Key as i32,
        ..Default::default()
    };
    assert_eq!(sorted(&h, descending), ["c"]);
}

#[test]
fn a_lone_put_looks_up_its_lease_before_its_key_and_a_txn_the_other_way_round() {
    let mut h = Harness::new();
    let put = PutRequest {
        key: "missing".into(),
        lease: 42,
        ignore_value: true,
        ..Default::default()
    };
    let lone = h.run(Op::Put(put.clone())).unwrap_err();
    assert!(matches!(lone, KvError::LeaseNotFound), "{lone:?}");
    let in_txn = h
        .run(txn(vec![RequestOp {
            request: Some(Request::RequestPut(put)),
        }]))
        .unwrap_err();
    assert!(matches!(in_txn, KvError::KeyNotFound), "{in_txn:?}");
}
