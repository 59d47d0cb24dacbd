//! Read-only txns, served like Ranges: from a read view of the store, not
//! through the Raft log (as etcd serves them). A txn is read-only when every
//! operation of both branches is a range (a nested txn counts as a write).

use super::Store;
use super::txn::{branch, check_txn_range};
use super::view::{ReadView, ViewError};
use crate::error::KvError;
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::response_op::Response;
use crate::proto::etcdserverpb::{ResponseHeader, ResponseOp, TxnRequest, TxnResponse};

/// Whether `req` only reads: every operation of both branches is a range.
pub fn is_read_only(req: &TxnRequest) -> bool {
    req.success
        .iter()
        .chain(&req.failure)
        .all(|op| matches!(op.request, Some(Request::RequestRange(_))))
}

/// Whether a read-only txn asked for a serializable read, so that no read
/// barrier is owed: it has ranges, and every one of them opted in.
///
/// etcd's `isTxnSerializable` also says yes for a txn with no ops at all
/// (compares only, or nothing): vacuously, every range opted in. Such a
/// txn never asked for a stale answer, and a client that uses compares to
/// check a condition expects the cluster's current state, so Keel gives it
/// a read barrier: a linearizable answer is a valid one where etcd would
/// allow a stale one (docs/etcd-compatibility.md).
pub fn is_serializable(req: &TxnRequest) -> bool {
    let mut ops = req.success.iter().chain(&req.failure).peekable();
    ops.peek().is_some()
        && ops.all(|op| matches!(&op.request, Some(Request::RequestRange(r)) if r.serializable))
}

impl Store {
    /// Evaluates a read-only txn (see [`is_read_only`]) on a read view of
    /// the applied state (`view.rs`): the compares, then etcd's check of
    /// every range on the branch taken, then the ranges, all at one
    /// revision. Refusals are the ones the same txn gets through the log.
    pub fn read_only_txn(&self, req: &TxnRequest) -> Result<TxnResponse, KvError> {
        assert!(is_read_only(req), "callers serve only read-only txns here");
        self.read(|view| read_only_txn(view, req))
    }
}

fn read_only_txn(view: &ReadView<'_>, req: &TxnRequest) -> Result<TxnResponse, ViewError> {
    let (current, compacted) = (view.revision(), view.compacted());
    let mut succeeded = true;
    for c in &req.compare {
        if !view.compare(c)? {
            succeeded = false;
            break;
        }
    }
    let ops = branch(req, succeeded);
    for op in ops {
        if let Some(Request::RequestRange(range)) = &op.request {
            check_txn_range(range, current, compacted)?;
        }
    }
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let Some(Request::RequestRange(range)) = &op.request else {
            continue;
        };
        responses.push(ResponseOp {
            response: Some(Response::ResponseRange(view.range(range)?)),
        });
    }
    Ok(TxnResponse {
        header: Some(ResponseHeader {
            revision: current,
            ..Default::default()
        }),
        succeeded,
        responses,
    })
}
