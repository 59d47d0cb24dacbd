//! A read-only txn served from the store answers exactly as the same txn
//! applied through the log, refusals included, and writes nothing.

use super::Harness;
use crate::mvcc::is_serializable;
use crate::proto::command::command::Op;
use crate::proto::command::command_result::Result as Outcome;
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::*;

fn range(key: &str, revision: i64) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestRange(RangeRequest {
            key: key.to_owned().into(),
            revision,
            ..Default::default()
        })),
    }
}

fn value_is(key: &str, value: &str) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Value as i32,
        key: key.to_owned().into(),
        target_union: Some(TargetUnion::Value(value.to_owned().into())),
        ..Default::default()
    }
}

#[test]
fn a_read_only_txn_answers_as_the_log_would_and_writes_nothing() {
    let mut h = Harness::new();
    h.put("a", "1");
    h.put("b", "2");
    h.put("b", "3");
    let Outcome::Compaction(_) = h
        .run(Op::Compaction(CompactionRequest {
            revision: 3,
            physical: false,
        }))
        .unwrap()
    else {
        panic!()
    };
    let txns = [
        TxnRequest {
            compare: vec![value_is("a", "1")],
            success: vec![range("a", 0), range("b", 3)],
            failure: vec![range("b", 0)],
        },
        TxnRequest {
            compare: vec![value_is("a", "nope")],
            success: vec![],
            failure: vec![range("b", 0), range("a", 2)],
        },
        // Refused: a compacted and a future revision.
        TxnRequest {
            success: vec![range("b", 2)],
            ..Default::default()
        },
        TxnRequest {
            success: vec![range("b", 99)],
            ..Default::default()
        },
    ];
    for txn in txns {
        assert!(crate::mvcc::is_read_only(&txn));
        let position = h.store.position();
        let local = h.store.read_only_txn(&txn);
        assert_eq!(h.store.position(), position, "a read-only txn wrote");
        let logged = h.run(Op::Txn(txn.clone()));
        match (local, logged) {
            (Ok(local), Ok(Outcome::Txn(logged))) => assert_eq!(local, logged, "{txn:?}"),
            (Err(local), Err(logged)) => {
                assert_eq!(local.to_string(), logged.to_string(), "{txn:?}");
            }
            (local, logged) => panic!("{txn:?}: local {local:?}, logged {logged:?}"),
        }
    }
}

/// Only a txn whose every range opted in is served without a barrier; a
/// txn with no ops never asked for a stale answer (etcd says yes to it,
/// vacuously; Keel gives it a barrier).
#[test]
fn only_a_txn_of_serializable_ranges_skips_the_read_barrier() {
    let serializable = |key: &str| RequestOp {
        request: Some(Request::RequestRange(RangeRequest {
            key: key.to_owned().into(),
            serializable: true,
            ..Default::default()
        })),
    };
    let txn = |success: Vec<RequestOp>, failure: Vec<RequestOp>| TxnRequest {
        compare: vec![value_is("a", "1")],
        success,
        failure,
    };
    assert!(is_serializable(&txn(
        vec![serializable("a")],
        vec![serializable("b")]
    )));
    assert!(!is_serializable(&txn(
        vec![serializable("a")],
        vec![range("b", 0)]
    )));
    assert!(!is_serializable(&txn(Vec::new(), Vec::new())));
    assert!(!is_serializable(&TxnRequest::default()));
}
