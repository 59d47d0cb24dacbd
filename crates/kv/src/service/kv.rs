//! `etcdserverpb.KV`: Range, Put, DeleteRange, Txn, Compact.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{Credentials, Shared, mismatch, validate};
use crate::auth::Required;
use crate::consensus::Consensus;
use crate::error::KvError;
use crate::mvcc::{is_read_only, is_serializable};
use crate::proto::command::command::Op;
use crate::proto::command::command_result::Result as Outcome;
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};

pub struct KvService<C> {
    shared: Arc<Shared<C>>,
}

impl<C> KvService<C> {
    pub fn new(shared: Arc<Shared<C>>) -> Self {
        KvService { shared }
    }
}

#[tonic::async_trait]
impl<C: Consensus> Kv for KvService<C> {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let credentials = Credentials::of(&request);
        let req = request.into_inner();
        validate::range(&req)?;
        // The caller and its permissions after the barrier, as etcd takes
        // them: a linearizable read meets every permission change
        // acknowledged before it, and is stamped with the auth revision
        // the barrier reached (stamped before, a change the barrier
        // applied would refuse it as stale instead).
        if !req.serializable {
            self.shared.consensus.read_barrier().await?;
        }
        let caller = self.shared.caller(&credentials).await?;
        self.shared.authorize(&caller, &Required::range(&req))?;
        let mut resp = if req.range_end.is_empty() {
            // One key: bounded by one value, cheaper here than a hop to a
            // blocking thread (`Shared::read_store`).
            self.shared.sm.store().range(&req)?
        } else {
            self.shared
                .read_store(move |store| store.range(&req))
                .await?
        };
        resp.header = self.shared.fill(resp.header);
        Ok(Response::new(resp))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let caller = self.shared.caller(&Credentials::of(&request)).await?;
        let req = request.into_inner();
        let Outcome::Put(mut resp) = self.shared.propose(&caller, Op::Put(req)).await?.1 else {
            return Err(mismatch("put").into());
        };
        resp.header = self.shared.fill(resp.header);
        Ok(Response::new(resp))
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let caller = self.shared.caller(&Credentials::of(&request)).await?;
        let req = request.into_inner();
        let Outcome::DeleteRange(mut resp) =
            self.shared.propose(&caller, Op::DeleteRange(req)).await?.1
        else {
            return Err(mismatch("delete range").into());
        };
        resp.header = self.shared.fill(resp.header);
        Ok(Response::new(resp))
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let credentials = Credentials::of(&request);
        let req = request.into_inner();
        if is_read_only(&req) {
            // Served like a Range, as etcd serves it: no log entry, and
            // the caller taken after the barrier.
            validate::txn(&req)?;
            if !is_serializable(&req) {
                self.shared.consensus.read_barrier().await?;
            }
            let caller = self.shared.caller(&credentials).await?;
            self.shared
                .authorize_with(&caller, |leases| Required::txn(&req, leases))?;
            let mut resp = self
                .shared
                .read_store(move |store| store.read_only_txn(&req))
                .await?;
            resp.header = self.shared.fill(resp.header);
            return Ok(Response::new(resp));
        }
        let caller = self.shared.caller(&credentials).await?;
        let Outcome::Txn(mut resp) = self.shared.propose(&caller, Op::Txn(req)).await?.1 else {
            return Err(mismatch("txn").into());
        };
        resp.header = self.shared.fill(resp.header);
        Ok(Response::new(resp))
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let caller = self.shared.caller(&Credentials::of(&request)).await?;
        let req = request.into_inner();
        let physical = req.physical;
        let Outcome::Compaction(mut resp) =
            self.shared.propose(&caller, Op::Compaction(req)).await?.1
        else {
            return Err(mismatch("compaction").into());
        };
        if physical {
            self.wait_compacted_rows_deleted().await?;
        }
        resp.header = self.shared.fill(resp.header);
        Ok(Response::new(resp))
    }
}

impl<C: Consensus> KvService<C> {
    /// etcd's `physical` compaction: answers once this member has deleted
    /// the rows the compaction made unreadable (the leader's compaction
    /// steps, `service::compactor`), so that a defragmentation after it
    /// frees them.
    async fn wait_compacted_rows_deleted(&self) -> Result<(), KvError> {
        let deadline = tokio::time::Instant::now() + PHYSICAL_COMPACTION_WAIT;
        while self.shared.sm.store().compaction_pending() {
            if tokio::time::Instant::now() >= deadline {
                return Err(KvError::Timeout);
            }
            tokio::time::sleep(PHYSICAL_COMPACTION_POLL).await;
        }
        Ok(())
    }
}

/// How long a `physical` compaction waits for its rows to go, and how
/// often it looks.
const PHYSICAL_COMPACTION_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
const PHYSICAL_COMPACTION_POLL: std::time::Duration = std::time::Duration::from_millis(10);
