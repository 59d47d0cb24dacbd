//! `v3electionpb.Election`: leader election held by leases, with etcd's
//! semantics. A candidate's key is `name/<lease hex>` holding its value;
//! the oldest key under `name/` leads. `Campaign` returns once every older
//! candidate is gone; `Proclaim` and `Resign` act only while the caller's
//! key is still the one it campaigned with (same create revision). Each
//! step acts as the caller (`recipes`); `Leader` and `Observe` need READ
//! on the prefix.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::recipes::{
    self, Abandon, by_creation, created_at, participant_key, put_op, range_kv, range_op, txn,
};
use super::{Credentials, Shared};
use crate::auth::Required;
use crate::consensus::Consensus;
use crate::error::KvError;
use crate::proto::command::Caller;
use crate::proto::etcdserverpb::range_request::SortOrder;
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::{DeleteRangeRequest, RangeRequest, RequestOp, TxnRequest};
use crate::proto::mvccpb::KeyValue;
use crate::proto::v3electionpb::election_server::Election;
use crate::proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};

/// etcd's errors, which its server returns as plain errors (gRPC Unknown).
const NOT_LEADER: &str = "election: not leader";
const NO_LEADER: &str = "election: no leader";
const MISSING_LEADER_KEY: &str = "\"leader\" field must be provided";
/// Leader changes queued for an observer before it is waited for.
const OBSERVE_QUEUE_RESPONSES: usize = 16;

pub struct ElectionService<C> {
    shared: Arc<Shared<C>>,
}

impl<C> ElectionService<C> {
    pub fn new(shared: Arc<Shared<C>>) -> Self {
        ElectionService { shared }
    }
}

type LeaderStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<C: Consensus> Election for ElectionService<C> {
    type ObserveStream = LeaderStream;

    async fn campaign(
        &self,
        request: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let caller = self.shared.caller(&Credentials::of(&request)).await?;
        let mut req = request.into_inner();
        req.lease = recipes::session_lease(&self.shared, &caller, req.lease).await?;
        let prefix = recipes::prefix(&req.name);
        let key = participant_key(&prefix, req.lease);
        let entered = txn(
            &self.shared,
            &caller,
            TxnRequest {
                compare: vec![created_at(&key, 0)],
                success: vec![put_op(&key, req.value.clone(), req.lease)],
                // This lease campaigned already: keep its place.
                failure: vec![range_op(RangeRequest {
                    key: key.clone(),
                    ..Default::default()
                })],
            },
        )
        .await?;
        let header = entered.header.map_or(0, |h| h.revision);
        let mut rev = header;
        if !entered.succeeded {
            let kv = range_kv(&entered.responses[0]).cloned().unwrap_or_default();
            rev = kv.create_revision;
            if kv.value != req.value {
                let leader = leader_key(&req.name, &key, rev, req.lease);
                if let Err(e) = self
                    .proclaim_value(&caller, &leader, req.value.clone())
                    .await
                {
                    let _ = self.resign_key(&caller, &leader).await;
                    return Err(e);
                }
            }
        }
        let mut abandon = Abandon::new(self.shared.clone(), key.clone());
        recipes::wait_deletes(&self.shared, &prefix, rev - 1).await?;
        abandon.disarm();
        Ok(Response::new(CampaignResponse {
            header: Some(self.shared.header(header)),
            leader: Some(leader_key(&req.name, &key, rev, req.lease)),
        }))
    }

    async fn proclaim(
        &self,
        request: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let caller = self.shared.caller(&Credentials::of(&request)).await?;
        let req = request.into_inner();
        let leader = req
            .leader
            .ok_or_else(|| Status::unknown(MISSING_LEADER_KEY))?;
        let revision = self.proclaim_value(&caller, &leader, req.value).await?;
        Ok(Response::new(ProclaimResponse {
            header: Some(self.shared.header(revision)),
        }))
    }

    async fn leader(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        let caller = self.shared.caller(&Credentials::of(&request)).await?;
        let prefix = recipes::prefix(&request.into_inner().name);
        self.shared.consensus.read_barrier().await?;
        self.shared.authorize(&caller, &read_prefix(&prefix))?;
        let (revision, leader) = current_leader(&self.shared, &prefix)?;
        let kv = leader.ok_or_else(|| Status::unknown(NO_LEADER))?;
        Ok(Response::new(LeaderResponse {
            header: Some(self.shared.header(revision)),
            kv: Some(kv),
        }))
    }

    async fn observe(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let caller = self.shared.caller(&Credentials::of(&request)).await?;
        let prefix = recipes::prefix(&request.into_inner().name);
        self.shared.consensus.read_barrier().await?;
        // Checked once, as etcd checks a watch when it is created.
        self.shared.authorize(&caller, &read_prefix(&prefix))?;
        let (tx, rx) = mpsc::channel(OBSERVE_QUEUE_RESPONSES);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            if let Err(e) = observe(&shared, &prefix, &tx).await {
                let _ = tx.send(Err(e.into())).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn resign(
        &self,
        request: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let caller = self.shared.caller(&Credentials::of(&request)).await?;
        let leader = request
            .into_inner()
            .leader
            .ok_or_else(|| Status::unknown(MISSING_LEADER_KEY))?;
        let revision = self.resign_key(&caller, &leader).await?;
        Ok(Response::new(ResignResponse {
            header: Some(self.shared.header(revision)),
        }))
    }
}

impl<C: Consensus> ElectionService<C> {
    /// Sets the leader's value if `leader` still names the key it
    /// campaigned with; returns the revision after it.
    async fn proclaim_value(
        &self,
        caller: &Caller,
        leader: &LeaderKey,
        value: Bytes,
    ) -> Result<i64, Status> {
        let key = leader.key.clone();
        let done = txn(
            &self.shared,
            caller,
            TxnRequest {
                compare: vec![created_at(&key, leader.rev)],
                success: vec![put_op(&key, value, leader.lease)],
                failure: vec![],
            },
        )
        .await?;
        if !done.succeeded {
            return Err(Status::unknown(NOT_LEADER));
        }
        Ok(done.header.map_or(0, |h| h.revision))
    }

    /// Deletes the leader's key if it is still the one it campaigned with.
    async fn resign_key(&self, caller: &Caller, leader: &LeaderKey) -> Result<i64, KvError> {
        let key = leader.key.clone();
        let done = txn(
            &self.shared,
            caller,
            TxnRequest {
                compare: vec![created_at(&key, leader.rev)],
                success: vec![RequestOp {
                    request: Some(Op::RequestDeleteRange(DeleteRangeRequest {
                        key,
                        ..Default::default()
                    })),
                }],
                failure: vec![],
            },
        )
        .await?;
        Ok(done.header.map_or(0, |h| h.revision))
    }
}

/// What reading the candidates under `prefix` needs (etcd's Leader and
/// Observe are a Get and a Watch of the prefix).
fn read_prefix(prefix: &Bytes) -> Required {
    Required::range(&by_creation(prefix, SortOrder::Ascend, 0))
}

/// The store revision and the leading candidate's key, if any.
fn current_leader<C: Consensus>(
    shared: &Shared<C>,
    prefix: &Bytes,
) -> Result<(i64, Option<KeyValue>), KvError> {
    let response = shared
        .sm
        .store()
        .range(&by_creation(prefix, SortOrder::Ascend, 0))?;
    let revision = response.header.map_or(0, |h| h.revision);
    Ok((revision, response.kvs.into_iter().next()))
}

fn leader_key(name: &Bytes, key: &Bytes, rev: i64, lease: i64) -> LeaderKey {
    LeaderKey {
        name: name.clone(),
        key: key.clone(),
        rev,
        lease,
    }
}

/// Sends the leader's key, then every change of it (a new value, or a new
/// leader once it is gone), until the client leaves. Changes are read from
/// the store at each applied revision, so values that follow each other
/// within one wake-up reach the observer as the last of them.
async fn observe<C: Consensus>(
    shared: &Arc<Shared<C>>,
    prefix: &Bytes,
    out: &mpsc::Sender<Result<LeaderResponse, Status>>,
) -> Result<(), KvError> {
    let mut announced = shared.sm.hub().subscribe();
    let mut sent: Option<(Bytes, i64)> = None;
    loop {
        let (revision, leader) = current_leader(shared, prefix)?;
        if let Some(kv) = leader {
            let seen = (kv.key.clone(), kv.mod_revision);
            if sent.as_ref() != Some(&seen) {
                let response = LeaderResponse {
                    header: Some(shared.header(revision)),
                    kv: Some(kv),
                };
                if out.send(Ok(response)).await.is_err() {
                    return Ok(());
                }
                sent = Some(seen);
            }
        }
        tokio::select! {
            changed = announced.changed() => changed.map_err(|_| KvError::Stopped)?,
            () = out.closed() => return Ok(()),
        }
    }
}
