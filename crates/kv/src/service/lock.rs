//! `v3lockpb.Lock`: a distributed lock held by a lease, with etcd's
//! semantics. The caller's key is `name/<lease hex>`; the oldest key under
//! `name/` holds the lock; `Lock` returns once every older key is gone
//! (unlocked, or deleted with its expired lease). Each step acts as the
//! caller (`recipes`).

use std::sync::Arc;

use bytes::Bytes;
use tonic::{Request, Response, Status};

use super::recipes::{
    self, Abandon, by_creation, created_at, participant_key, put_op, range_kv, range_op, txn,
};
use super::{Credentials, Shared};
use crate::consensus::Consensus;
use crate::error::KvError;
use crate::proto::etcdserverpb::range_request::SortOrder;
use crate::proto::etcdserverpb::{RangeRequest, TxnRequest};
use crate::proto::v3lockpb::lock_server::Lock;
use crate::proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};

pub struct LockService<C> {
    shared: Arc<Shared<C>>,
}

impl<C> LockService<C> {
    pub fn new(shared: Arc<Shared<C>>) -> Self {
        LockService { shared }
    }
}

#[tonic::async_trait]
impl<C: Consensus> Lock for LockService<C> {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let caller = self.shared.caller(&Credentials::of(&request)).await?;
        let mut req = request.into_inner();
        req.lease = recipes::session_lease(&self.shared, &caller, req.lease).await?;
        let prefix = recipes::prefix(&req.name);
        let key = participant_key(&prefix, req.lease);
        let owner = by_creation(&prefix, SortOrder::Ascend, 0);
        let queued = txn(
            &self.shared,
            &caller,
            TxnRequest {
                compare: vec![created_at(&key, 0)],
                success: vec![
                    put_op(&key, Bytes::new(), req.lease),
                    range_op(owner.clone()),
                ],
                // This lease queued (or holds) the lock already: reuse its key.
                failure: vec![
                    range_op(RangeRequest {
                        key: key.clone(),
                        ..Default::default()
                    }),
                    range_op(owner),
                ],
            },
        )
        .await?;
        let revision = queued.header.map_or(0, |h| h.revision);
        let mine = if queued.succeeded {
            revision
        } else {
            range_kv(&queued.responses[0]).map_or(revision, |kv| kv.create_revision)
        };
        let holder = range_kv(&queued.responses[1]).map(|kv| kv.create_revision);
        if holder.is_none_or(|rev| rev == mine) {
            return Ok(Response::new(LockResponse {
                header: Some(self.shared.header(revision)),
                key: key.to_vec().into(),
            }));
        }
        // If the caller goes away while waiting, its place in the queue is
        // given up, as etcd's mutex does.
        let mut abandon = Abandon::new(self.shared.clone(), key.clone());
        let acquired_at = recipes::wait_deletes(&self.shared, &prefix, mine - 1).await?;
        abandon.disarm();
        Ok(Response::new(LockResponse {
            header: Some(self.shared.header(acquired_at)),
            key: key.to_vec().into(),
        }))
    }

    async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let caller = self.shared.caller(&Credentials::of(&request)).await?;
        let key = request.into_inner().key;
        if key.is_empty() {
            return Err(KvError::EmptyKey.into());
        }
        let revision = recipes::delete(&self.shared, &caller, key).await?;
        Ok(Response::new(UnlockResponse {
            header: Some(self.shared.header(revision)),
        }))
    }
}
