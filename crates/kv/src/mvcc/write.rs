//! Applying writes: one [`Writer`] per Raft entry, over the batch's open
//! redb write transaction.
//!
//! Every operation checks everything that can refuse it *before* it changes
//! anything, so a refused command leaves no trace and every replica refuses
//! it identically.

use bytes::Bytes;
use prost::Message;
use redb::Table;

use super::read::{self, kv_at};
use super::{KeyRange, LeaseState, Revision, State};
use crate::error::KvError;
use crate::proto::command::{LeaseRecord, Revisioned};
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::response_op::Response;
use crate::proto::etcdserverpb::{
    Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RequestOp,
    ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use crate::proto::mvccpb::{Event, KeyValue, event::EventType};

/// The tables an apply batch writes.
pub(crate) struct Tables<'t> {
    pub kv: Table<'t, (u64, u64), &'static [u8]>,
    pub leases: Table<'t, i64, &'static [u8]>,
    pub members: Table<'t, u64, &'static [u8]>,
}

/// Applies the writes of one store revision.
pub(crate) struct Writer<'s, 't> {
    pub state: &'s mut State,
    pub tables: &'s mut Tables<'t>,
    /// The revision this entry's writes get, if it writes anything.
    main: i64,
    /// The next sub-revision; `0` means nothing written yet.
    sub: i64,
    pub events: Vec<Event>,
}

impl<'s, 't> Writer<'s, 't> {
    pub fn new(state: &'s mut State, tables: &'s mut Tables<'t>) -> Writer<'s, 't> {
        let main = state.current_revision + 1;
        Writer {
            state,
            tables,
            main,
            sub: 0,
            events: Vec::new(),
        }
    }

    /// Ends the entry: if anything was written, the store revision moves on.
    pub fn finish(self) -> Vec<Event> {
        if self.sub > 0 {
            self.state.current_revision = self.main;
        }
        self.events
    }

    /// The newest revision a read inside this entry sees.
    fn visible(&self) -> i64 {
        if self.sub > 0 {
            self.main
        } else {
            self.state.current_revision
        }
    }

    fn header(&self) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            revision: self.visible(),
            ..Default::default()
        })
    }

    fn next_rev(&mut self) -> Revision {
        let rev = Revision {
            main: self.main,
            sub: self.sub,
        };
        self.sub += 1;
        rev
    }

    fn current(&self, key: &[u8]) -> Result<Option<KeyValue>, KvError> {
        match self.state.index.get(key, self.visible()) {
            Some(rev) => Ok(Some(kv_at(&self.tables.kv, rev)?)),
            None => Ok(None),
        }
    }

    fn write_row(&mut self, rev: Revision, row: &Revisioned) -> Result<(), KvError> {
        self.tables
            .kv
            .insert(rev.to_db(), row.encode_to_vec().as_slice())
            .map_err(KvError::storage)?;
        Ok(())
    }

    /// Refusals a put can meet, checked against the state before the entry.
    pub fn check_put(&self, req: &PutRequest) -> Result<(), KvError> {
        if req.key.is_empty() {
            return Err(KvError::EmptyKey);
        }
        if (req.ignore_value || req.ignore_lease) && self.current(&req.key)?.is_none() {
            return Err(KvError::KeyNotFound);
        }
        if !req.ignore_lease && req.lease != 0 && !self.state.leases.contains_key(&req.lease) {
            return Err(KvError::LeaseNotFound);
        }
        Ok(())
    }

    pub fn put(&mut self, req: &PutRequest) -> Result<PutResponse, KvError> {
        let prev = self.current(&req.key)?;
        let rev = self.next_rev();
        let (create_revision, version) = match &prev {
            Some(p) => (p.create_revision, p.version + 1),
            None => (rev.main, 1),
        };
        let prev_ref = prev.as_ref();
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision,
            mod_revision: rev.main,
            version,
            value: match (req.ignore_value, prev_ref) {
                (true, Some(p)) => p.value.clone(),
                _ => req.value.clone(),
            },
            lease: match (req.ignore_lease, prev_ref) {
                (true, Some(p)) => p.lease,
                _ => req.lease,
            },
        };
        self.write_row(
            rev,
            &Revisioned {
                tombstone: false,
                kv: Some(kv.clone()),
            },
        )?;
        self.state.index.put(kv.key.clone(), rev);
        if let Some(p) = prev_ref {
            self.detach(p.lease, &p.key);
        }
        if let Some(lease) = self.state.leases.get_mut(&kv.lease) {
            lease.keys.insert(kv.key.clone());
        }
        self.events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv: prev.clone(),
        });
        Ok(PutResponse {
            header: self.header(),
            prev_kv: if req.prev_kv { prev } else { None },
        })
    }

    fn detach(&mut self, lease: i64, key: &Bytes) {
        if let Some(l) = self.state.leases.get_mut(&lease) {
            l.keys.remove(key);
        }
    }

    pub fn delete_range(
        &mut self,
        req: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, KvError> {
        let range = KeyRange::new(req.key.clone(), req.range_end.clone());
        let at = self.visible();
        let doomed: Vec<(Bytes, Revision)> = self
            .state
            .index
            .range(&range, at)
            .map(|(k, rev)| (k.clone(), rev))
            .collect();
        let mut prev_kvs = Vec::with_capacity(doomed.len());
        for (key, old) in &doomed {
            let prev = kv_at(&self.tables.kv, *old)?;
            let rev = self.next_rev();
            let gone = KeyValue {
                key: key.clone(),
                mod_revision: rev.main,
                ..Default::default()
            };
            self.write_row(
                rev,
                &Revisioned {
                    tombstone: true,
                    kv: Some(gone.clone()),
                },
            )?;
            self.state.index.tombstone(key.clone(), rev);
            self.detach(prev.lease, key);
            self.events.push(Event {
                r#type: EventType::Delete as i32,
                kv: Some(gone),
                prev_kv: Some(prev.clone()),
            });
            prev_kvs.push(prev);
        }
        Ok(DeleteRangeResponse {
            header: self.header(),
            deleted: doomed.len() as i64,
            prev_kvs: if req.prev_kv { prev_kvs } else { Vec::new() },
        })
    }

    /// Decides, against the state before the txn, which branch each
    /// (nested) txn takes: etcd evaluates every compare before any op runs.
    fn txn_path(&self, req: &TxnRequest, path: &mut Vec<bool>) -> Result<(), KvError> {
        let mut ok = true;
        for c in &req.compare {
            if !self.compare(c)? {
                ok = false;
                break;
            }
        }
        path.push(ok);
        let ops = if ok { &req.success } else { &req.failure };
        for op in ops {
            if let Some(Request::RequestTxn(nested)) = &op.request {
                self.txn_path(nested, path)?;
            }
        }
        Ok(())
    }

    fn check_ops(&self, ops: &[RequestOp], path: &[bool], at: &mut usize) -> Result<(), KvError> {
        for op in ops {
            match &op.request {
                Some(Request::RequestPut(put)) => self.check_put(put)?,
                Some(Request::RequestTxn(nested)) => {
                    let ok = path[*at];
                    *at += 1;
                    let ops = if ok { &nested.success } else { &nested.failure };
                    self.check_ops(ops, path, at)?;
                }
                Some(Request::RequestRange(_) | Request::RequestDeleteRange(_)) | None => {}
            }
        }
        Ok(())
    }

    pub fn txn(&mut self, req: &TxnRequest) -> Result<TxnResponse, KvError> {
        let mut path = Vec::new();
        self.txn_path(req, &mut path)?;
        let ops = if path[0] { &req.success } else { &req.failure };
        self.check_ops(ops, &path, &mut 1)?;
        self.run_txn(req, &path, &mut 0)
    }

    fn run_txn(
        &mut self,
        req: &TxnRequest,
        path: &[bool],
        at: &mut usize,
    ) -> Result<TxnResponse, KvError> {
        let succeeded = path[*at];
        *at += 1;
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match &op.request {
                Some(Request::RequestRange(r)) => {
                    let visible = self.visible();
                    Response::ResponseRange(read::range(self.state, &self.tables.kv, r, visible)?)
                }
                Some(Request::RequestPut(p)) => Response::ResponsePut(self.put(p)?),
                Some(Request::RequestDeleteRange(d)) => {
                    Response::ResponseDeleteRange(self.delete_range(d)?)
                }
                Some(Request::RequestTxn(t)) => Response::ResponseTxn(self.run_txn(t, path, at)?),
                None => continue,
            };
            responses.push(ResponseOp {
                response: Some(response),
            });
        }
        Ok(TxnResponse {
            header: self.header(),
            succeeded,
            responses,
        })
    }

    /// One compare, over every key in its range (etcd: all must hold).
    fn compare(&self, c: &Compare) -> Result<bool, KvError> {
        let range = KeyRange::new(c.key.clone(), c.range_end.clone());
        let at = self.visible();
        let revs: Vec<Revision> = if c.range_end.is_empty() {
            self.state.index.get(&c.key, at).into_iter().collect()
        } else {
            self.state.index.range(&range, at).map(|(_, r)| r).collect()
        };
        let target = CompareTarget::try_from(c.target)
            .map_err(|_| KvError::InvalidRequest("compare target"))?;
        if revs.is_empty() {
            // A missing key compares as zero, except on value (etcd: false).
            if matches!(target, CompareTarget::Value) {
                return Ok(false);
            }
            return Ok(compare_kv(c, target, &KeyValue::default()));
        }
        for rev in revs {
            if !compare_kv(c, target, &kv_at(&self.tables.kv, rev)?) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    pub fn lease_grant(&mut self, id: i64, ttl_seconds: i64) -> Result<(), KvError> {
        if self.state.leases.contains_key(&id) {
            return Err(KvError::LeaseExists);
        }
        let record = LeaseRecord { id, ttl_seconds };
        self.tables
            .leases
            .insert(id, record.encode_to_vec().as_slice())
            .map_err(KvError::storage)?;
        self.state.leases.insert(
            id,
            LeaseState {
                ttl_seconds,
                keys: Default::default(),
            },
        );
        Ok(())
    }

    /// Revokes a lease and deletes its keys, all at one revision.
    pub fn lease_revoke(&mut self, id: i64) -> Result<(), KvError> {
        let lease = self.state.leases.get(&id).ok_or(KvError::LeaseNotFound)?;
        let keys: Vec<Bytes> = lease.keys.iter().cloned().collect();
        for key in keys {
            self.delete_range(&DeleteRangeRequest {
                key,
                ..Default::default()
            })?;
        }
        self.tables.leases.remove(id).map_err(KvError::storage)?;
        self.state.leases.remove(&id);
        Ok(())
    }
}

fn compare_kv(c: &Compare, target: CompareTarget, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let ord: Ordering = match (target, &c.target_union) {
        (CompareTarget::Version, Some(TargetUnion::Version(v))) => kv.version.cmp(v),
        (CompareTarget::Create, Some(TargetUnion::CreateRevision(v))) => kv.create_revision.cmp(v),
        (CompareTarget::Mod, Some(TargetUnion::ModRevision(v))) => kv.mod_revision.cmp(v),
        (CompareTarget::Value, Some(TargetUnion::Value(v))) => kv.value.as_ref().cmp(v.as_ref()),
        (CompareTarget::Lease, Some(TargetUnion::Lease(v))) => kv.lease.cmp(v),
        // proto3 drops zero values, so an absent union means "compare with 0".
        (CompareTarget::Version, None) => kv.version.cmp(&0),
        (CompareTarget::Create, None) => kv.create_revision.cmp(&0),
        (CompareTarget::Mod, None) => kv.mod_revision.cmp(&0),
        (CompareTarget::Value, None) => kv.value.as_ref().cmp(&[][..]),
        (CompareTarget::Lease, None) => kv.lease.cmp(&0),
        // A target that disagrees with the union's type never holds.
        _ => return false,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ord == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ord != Ordering::Equal,
        Ok(CompareResult::Greater) => ord == Ordering::Greater,
        Ok(CompareResult::Less) => ord == Ordering::Less,
        Err(_) => false,
    }
}
