//! `etcdserverpb.Lease`: grant, revoke, keep-alive, time-to-live, list; and
//! the leader's expiry loop.
//!
//! Grants and revokes are commands. Keep-alives and time-to-live are served
//! by the leader, which holds the deadlines (see `lessor`); other members
//! forward them to it.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use rand::Rng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::{Credentials, Shared, mismatch};
use crate::consensus::Consensus;
use crate::error::KvError;
use crate::proto::command::command::Op;
use crate::proto::command::command_result::Result as Outcome;
use crate::proto::etcdserverpb::lease_server::Lease;
use crate::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};

pub struct LeaseService<C> {
    shared: Arc<Shared<C>>,
}

impl<C> LeaseService<C> {
    pub fn new(shared: Arc<Shared<C>>) -> Self {
        LeaseService { shared }
    }
}

impl<C: Consensus> Shared<C> {
    async fn leader_client(
        &self,
    ) -> Result<
        crate::proto::etcdserverpb::lease_client::LeaseClient<tonic::transport::Channel>,
        KvError,
    > {
        Ok(crate::proto::etcdserverpb::lease_client::LeaseClient::new(
            self.leader_channel().await?,
        ))
    }

    /// Keep-alive on the leader: renew if the lease exists. TTL 0 tells the
    /// client the lease is gone (etcd's convention).
    pub(crate) async fn keep_alive(&self, id: i64) -> Result<LeaseKeepAliveResponse, KvError> {
        let info = self.consensus.info();
        if !info.is_leader() {
            let mut client = self.leader_client().await?;
            let mut replies = client
                .lease_keep_alive(tokio_stream::iter([LeaseKeepAliveRequest { id }]))
                .await
                .map_err(|_| KvError::NoLeader)?
                .into_inner();
            return match replies.next().await {
                Some(Ok(reply)) => Ok(reply),
                _ => Err(KvError::NoLeader),
            };
        }
        // Leases granted just before must be visible here.
        self.consensus.read_barrier().await?;
        let now = Instant::now();
        let ttl = self.sm.store().with_leases(|leases| match leases.get(&id) {
            Some(lease) => {
                self.lessor.renew(id, lease, now);
                lease.ttl_seconds
            }
            None => 0,
        });
        Ok(LeaseKeepAliveResponse {
            header: Some(self.header(self.sm.store().position().revision)),
            id,
            ttl,
        })
    }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<C: Consensus> Lease for LeaseService<C> {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let caller = self.shared.caller(&Credentials::of(&request)).await?;
        let mut req = request.into_inner();
        req.ttl = req.ttl.max(self.shared.config.lease_ttl_min_seconds);
        if req.id == 0 {
            // The proposer picks the ID so that apply stays deterministic.
            req.id = rand::rng().random_range(1..i64::MAX);
        }
        let Outcome::LeaseGrant(mut resp) =
            self.shared.propose(&caller, Op::LeaseGrant(req)).await?.1
        else {
            return Err(mismatch("lease grant").into());
        };
        resp.header = self.shared.fill(resp.header);
        Ok(Response::new(resp))
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let caller = self.shared.caller(&Credentials::of(&request)).await?;
        let req = request.into_inner();
        let (revision, outcome) = self.shared.propose(&caller, Op::LeaseRevoke(req)).await?;
        if !matches!(outcome, Outcome::LeaseRevoke(_)) {
            return Err(mismatch("lease revoke").into());
        }
        Ok(Response::new(LeaseRevokeResponse {
            header: Some(self.shared.header(revision)),
        }))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            while let Some(Ok(req)) = inbound.next().await {
                let reply = shared.keep_alive(req.id).await.map_err(Status::from);
                let failed = reply.is_err();
                if tx.send(reply).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let req = request.into_inner();
        if !self.shared.consensus.info().is_leader() {
            let mut client = self.shared.leader_client().await?;
            return client.lease_time_to_live(req).await;
        }
        self.shared.consensus.read_barrier().await?;
        let store = self.shared.sm.store();
        let header = Some(self.shared.header(store.position().revision));
        let Some(lease) = store.lease(req.id) else {
            // etcd answers a missing lease with TTL -1, not an error.
            return Ok(Response::new(LeaseTimeToLiveResponse {
                header,
                id: req.id,
                ttl: -1,
                ..Default::default()
            }));
        };
        let ttl = self
            .shared
            .lessor
            .remaining_seconds(req.id, &lease, Instant::now())
            .unwrap_or(lease.ttl_seconds);
        Ok(Response::new(LeaseTimeToLiveResponse {
            header,
            id: req.id,
            ttl,
            granted_ttl: lease.ttl_seconds,
            keys: if req.keys {
                lease.keys.into_iter().collect()
            } else {
                Vec::new()
            },
        }))
    }

    async fn lease_leases(
        &self,
        _request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        self.shared.consensus.read_barrier().await?;
        let store = self.shared.sm.store();
        Ok(Response::new(LeaseLeasesResponse {
            header: Some(self.shared.header(store.position().revision)),
            leases: store
                .with_leases(|leases| leases.keys().map(|&id| LeaseStatus { id }).collect()),
        }))
    }
}

/// The leader's expiry loop: on every tick, revoke the leases whose
/// deadlines passed. Runs on every member; only the leader acts.
pub async fn run_expiry_loop<C: Consensus>(shared: Arc<Shared<C>>) {
    let mut tick = tokio::time::interval(shared.config.lease_check_every);
    loop {
        tick.tick().await;
        let info = shared.consensus.info();
        let leading = info.is_leader().then_some(info.term);
        let now = Instant::now();
        // Read in place: a copy of the leases holds every key of each. The
        // lessor's lock is taken inside the store's; it never waits for
        // the store itself.
        let expired = shared
            .sm
            .store()
            .with_leases(|leases| shared.lessor.tick(leading, leases, now));
        for id in expired {
            let shared = shared.clone();
            tokio::spawn(async move {
                match shared
                    .propose_as_member(Op::LeaseRevoke(LeaseRevokeRequest { id }))
                    .await
                {
                    Ok(_) | Err(KvError::LeaseNotFound) => {
                        tracing::debug!(lease = id, "expired lease revoked");
                    }
                    Err(e) => {
                        tracing::warn!(lease = id, error = %e, "revoking expired lease failed")
                    }
                }
            });
        }
    }
}
