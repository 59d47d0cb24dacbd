//! Transactions, all or nothing: every compare is evaluated and every op of
//! the branches that will run (nested txns included) is checked against
//! the state before the txn, as etcd does, before the first write.

use super::apply_error::ApplyError;
use super::read::{self, kv_at};
use super::write::Writer;
use super::{KeyRange, Revision, State};
use crate::error::KvError;
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::response_op::Response;
use crate::proto::etcdserverpb::{
    Compare, RangeRequest, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use crate::proto::mvccpb::KeyValue;
use crate::rejection::Rejection;
use redb::ReadableTable;

/// The two rounds of checks before a txn writes, in etcd's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    Puts,
    Ranges,
}

/// Which branch each txn takes, outermost first, then nested txns in the
/// order they appear in the branches taken (etcd's "txn path").
pub(crate) struct TxnPath(Vec<bool>);

impl Writer<'_, '_> {
    /// Evaluates every compare and checks every op that will run; changes
    /// nothing. The path it returns is what [`Writer::run_txn`] follows.
    pub fn check_txn(&self, req: &TxnRequest) -> Result<TxnPath, ApplyError> {
        let mut path = Vec::new();
        self.txn_path(req, &mut path)?;
        // etcd checks every put on the path first, then every range, so a
        // txn with both kinds of fault gets the put's.
        for pass in [Pass::Puts, Pass::Ranges] {
            let mut at = 0;
            self.check_branch(req, &path, &mut at, pass)?;
        }
        Ok(TxnPath(path))
    }

    fn txn_path(&self, req: &TxnRequest, path: &mut Vec<bool>) -> Result<(), KvError> {
        let mut ok = true;
        for c in &req.compare {
            if !self.compare(c)? {
                ok = false;
                break;
            }
        }
        path.push(ok);
        for op in branch(req, ok) {
            if let Some(Request::RequestTxn(nested)) = &op.request {
                self.txn_path(nested, path)?;
            }
        }
        Ok(())
    }

    fn check_branch(
        &self,
        req: &TxnRequest,
        path: &[bool],
        at: &mut usize,
        pass: Pass,
    ) -> Result<(), ApplyError> {
        let ops = branch(req, path[*at]);
        *at += 1;
        for op in ops {
            match (&op.request, pass) {
                (Some(Request::RequestPut(put)), Pass::Puts) => self.check_put(put)?,
                (Some(Request::RequestDeleteRange(delete)), Pass::Puts)
                    if delete.key.is_empty() =>
                {
                    return Err(Rejection::EmptyKey.into());
                }
                (Some(Request::RequestRange(range)), Pass::Ranges) => self.check_range(range)?,
                (Some(Request::RequestTxn(nested)), _) => {
                    self.check_branch(nested, path, at, pass)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn check_range(&self, range: &RangeRequest) -> Result<(), Rejection> {
        check_txn_range(
            range,
            self.state.current_revision,
            self.state.compacted_revision,
        )
    }

    /// Runs a txn that [`Writer::check_txn`] accepted, along its path.
    pub fn run_txn(&mut self, req: &TxnRequest, path: &TxnPath) -> Result<TxnResponse, ApplyError> {
        let mut at = 0;
        let mut resp = self.run_branch(req, &path.0, &mut at)?;
        resp.header = self.header();
        Ok(resp)
    }

    fn run_branch(
        &mut self,
        req: &TxnRequest,
        path: &[bool],
        at: &mut usize,
    ) -> Result<TxnResponse, ApplyError> {
        let succeeded = path[*at];
        *at += 1;
        let ops = branch(req, succeeded);
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match &op.request {
                Some(Request::RequestRange(r)) => {
                    // A txn's reads see its own earlier writes, as in etcd.
                    let latest = self.visible();
                    let at = read::check_range(r, latest, self.state.compacted_revision)?;
                    Response::ResponseRange(read::range(
                        self.state,
                        &self.tables.kv,
                        r,
                        at,
                        latest,
                    )?)
                }
                Some(Request::RequestPut(p)) => Response::ResponsePut(self.put(p)?),
                Some(Request::RequestDeleteRange(d)) => {
                    Response::ResponseDeleteRange(self.delete_range(d)?)
                }
                Some(Request::RequestTxn(t)) => {
                    Response::ResponseTxn(self.run_branch(t, path, at)?)
                }
                None => continue,
            };
            responses.push(ResponseOp {
                response: Some(response),
            });
        }
        // etcd gives a nested txn's response an empty header; the caller
        // fills the outermost one.
        Ok(TxnResponse {
            header: Some(ResponseHeader::default()),
            succeeded,
            responses,
        })
    }

    fn compare(&self, c: &Compare) -> Result<bool, KvError> {
        compare(self.state, &self.tables.kv, self.visible(), c)
    }
}

/// etcd's check of a range inside a txn, against the store's `current`
/// and `compacted` revisions before the txn. Unlike a lone range, a
/// negative revision does not mean "the current one" here: it is
/// compacted once it is below the compacted revision.
pub(crate) fn check_txn_range(
    range: &RangeRequest,
    current: i64,
    compacted: i64,
) -> Result<(), Rejection> {
    if range.key.is_empty() {
        return Err(Rejection::EmptyKey);
    }
    match range.revision {
        0 => Ok(()),
        rev if rev > current => Err(Rejection::FutureRevision),
        rev if rev < compacted => Err(Rejection::Compacted),
        _ => Ok(()),
    }
}

/// One compare at revision `at`, over every key in its range: all must hold
/// (etcd).
pub(crate) fn compare<T>(state: &State, kv: &T, at: i64, c: &Compare) -> Result<bool, KvError>
where
    T: ReadableTable<(u64, u64), &'static [u8]>,
{
    let revs: Vec<Revision> = if c.range_end.is_empty() {
        state.index.get(&c.key, at).into_iter().collect()
    } else {
        let range = KeyRange::new(c.key.clone(), c.range_end.clone());
        state.index.range(&range, at).map(|(_, r)| r).collect()
    };
    compare_kvs(c, revs.into_iter().map(|rev| kv_at(kv, rev)))
}

/// One compare over the values of the keys in its range, in key order:
/// all must hold (etcd).
pub(crate) fn compare_kvs(
    c: &Compare,
    kvs: impl Iterator<Item = Result<KeyValue, KvError>>,
) -> Result<bool, KvError> {
    let mut kvs = kvs.peekable();
    if kvs.peek().is_none() {
        // A missing key compares as zero, except on value: there is no
        // way to name a missing value, so it never holds (etcd).
        if c.target == CompareTarget::Value as i32 {
            return Ok(false);
        }
        return Ok(compare_kv(c, &KeyValue::default()));
    }
    for kv in kvs {
        if !compare_kv(c, &kv?) {
            return Ok(false);
        }
    }
    Ok(true)
}

pub(crate) fn branch(req: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &req.success
    } else {
        &req.failure
    }
}

/// etcd's comparison of one key, total over every value a client can send:
/// a union of another type than the target compares the target with zero
/// (or the empty value), an unknown target compares as equal, and an
/// unknown result holds. So a compare can never make a command fail.
fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let ord: Ordering = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Value) => {
            let wanted = match &c.target_union {
                Some(TargetUnion::Value(v)) => v.as_ref(),
                _ => &[][..],
            };
            kv.value.as_ref().cmp(wanted)
        }
        Ok(CompareTarget::Version) => kv.version.cmp(&union_int(c, |u| match u {
            TargetUnion::Version(v) => Some(*v),
            _ => None,
        })),
        Ok(CompareTarget::Create) => kv.create_revision.cmp(&union_int(c, |u| match u {
            TargetUnion::CreateRevision(v) => Some(*v),
            _ => None,
        })),
        Ok(CompareTarget::Mod) => kv.mod_revision.cmp(&union_int(c, |u| match u {
            TargetUnion::ModRevision(v) => Some(*v),
            _ => None,
        })),
        Ok(CompareTarget::Lease) => kv.lease.cmp(&union_int(c, |u| match u {
            TargetUnion::Lease(v) => Some(*v),
            _ => None,
        })),
        Err(_) => Ordering::Equal,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ord == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ord != Ordering::Equal,
        Ok(CompareResult::Greater) => ord == Ordering::Greater,
        Ok(CompareResult::Less) => ord == Ordering::Less,
        Err(_) => true,
    }
}

/// The compare's operand when its union holds the target's type, else 0
/// (proto3 drops zero values, so an absent union means 0 as well).
fn union_int(c: &Compare, pick: impl Fn(&TargetUnion) -> Option<i64>) -> i64 {
    c.target_union.as_ref().and_then(pick).unwrap_or(0)
}
