//! `etcdserverpb.Cluster`: members, mapped onto Raft membership changes.
//!
//! Raft knows members by ID only; names and URLs live in the replicated
//! member registry (`MemberSet`/`MemberRemove` commands), which the list
//! joins with Raft's voters and learners. Only the leader changes the
//! configuration, so other members forward Add, Remove and Promote to it
//! (its client URL is in the registry). A new member's ID is derived from
//! its peer URLs and the cluster token (`server::ids`), so the member,
//! started later with the same URLs and token, knows its own ID.

use std::sync::Arc;

use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::{Credentials, Shared};
use crate::consensus::Consensus;
use crate::error::KvError;
use crate::proto::command::command::Op;
use crate::proto::etcdserverpb::cluster_client::ClusterClient;
use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use crate::server::ids::member_id;
use crate::server::urls::dial_address;

pub struct ClusterService<C> {
    shared: Arc<Shared<C>>,
}

impl<C> ClusterService<C> {
    pub fn new(shared: Arc<Shared<C>>) -> Self {
        ClusterService { shared }
    }
}

impl<C: Consensus> Shared<C> {
    /// Every member Raft knows, with the registry's names and URLs.
    pub fn member_list(&self) -> Vec<Member> {
        let info = self.consensus.info();
        let mut registry = self.sm.store().members();
        let mut members: Vec<Member> = info
            .voters
            .iter()
            .map(|id| (id, false))
            .chain(info.learners.iter().map(|id| (id, true)))
            .map(|(&id, is_learner)| {
                let mut m = registry.remove(&id).unwrap_or(Member {
                    id,
                    ..Default::default()
                });
                m.is_learner = is_learner;
                m
            })
            .collect();
        members.sort_by_key(|m| m.id);
        members
    }

    fn revision(&self) -> i64 {
        self.sm.store().position().revision
    }

    async fn register(&self, member: Member) -> Result<(), KvError> {
        self.propose_as_member(Op::MemberSet(member))
            .await
            .map(|_| ())
    }

    async fn unregister(&self, id: u64) -> Result<(), KvError> {
        match self
            .propose_as_member(Op::MemberRemove(MemberRemoveRequest { id }))
            .await
        {
            Ok(_) | Err(KvError::MemberNotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A client of the leader's Cluster service when this member does not
    /// lead, `None` when it does.
    async fn cluster_leader(&self) -> Result<Option<ClusterClient<Channel>>, KvError> {
        if self.consensus.info().is_leader() {
            return Ok(None);
        }
        Ok(Some(ClusterClient::new(self.leader_channel().await?)))
    }
}

#[tonic::async_trait]
impl<C: Consensus> Cluster for ClusterService<C> {
    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let credentials = Credentials::of(&request);
        self.shared.admit_admin(&credentials).await?;
        let req = request.into_inner();
        if req.peer_ur_ls.is_empty() {
            return Err(KvError::InvalidRequest("peer URLs are required").into());
        }
        if req.peer_ur_ls.iter().any(|u| dial_address(u).is_none()) {
            return Err(KvError::InvalidRequest("a peer URL must be http(s)://host:port").into());
        }
        if let Some(mut leader) = self.shared.cluster_leader().await? {
            return leader.member_add(credentials.relay(req)).await;
        }
        let current = self.shared.member_list();
        let taken = current
            .iter()
            .any(|m| m.peer_ur_ls.iter().any(|u| req.peer_ur_ls.contains(u)));
        if taken {
            return Err(KvError::PeerUrlExists.into());
        }
        let id = member_id(&self.shared.config.cluster_token, &req.peer_ur_ls);
        if current.iter().any(|m| m.id == id) {
            return Err(KvError::MemberExists.into());
        }
        let member = Member {
            id,
            peer_ur_ls: req.peer_ur_ls,
            is_learner: req.is_learner,
            ..Default::default()
        };
        // Registry first, so that the new member finds its own record.
        self.shared.register(member.clone()).await?;
        self.shared
            .consensus
            .add_member(member.id, &member.peer_ur_ls, req.is_learner)
            .await?;
        Ok(Response::new(MemberAddResponse {
            header: Some(self.shared.header(self.shared.revision())),
            member: Some(member),
            members: self.shared.member_list(),
        }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let credentials = Credentials::of(&request);
        self.shared.admit_admin(&credentials).await?;
        let req = request.into_inner();
        if !self.shared.member_list().iter().any(|m| m.id == req.id) {
            return Err(KvError::MemberNotFound.into());
        }
        if let Some(mut leader) = self.shared.cluster_leader().await? {
            return leader.member_remove(credentials.relay(req)).await;
        }
        // The registry entry goes second, so that a refused removal leaves
        // the member listed as it was; but a leader removing itself can
        // propose nothing afterwards, so it drops its entry first.
        let removing_self = req.id == self.shared.consensus.info().member_id;
        if removing_self {
            self.shared.unregister(req.id).await?;
        }
        self.shared.consensus.remove_member(req.id).await?;
        if !removing_self {
            self.shared.unregister(req.id).await?;
        }
        Ok(Response::new(MemberRemoveResponse {
            header: Some(self.shared.header(self.shared.revision())),
            members: self.shared.member_list(),
        }))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let credentials = Credentials::of(&request);
        self.shared.admit_admin(&credentials).await?;
        let req = request.into_inner();
        if req.peer_ur_ls.is_empty() {
            return Err(KvError::InvalidRequest("peer URLs are required").into());
        }
        if req.peer_ur_ls.iter().any(|u| dial_address(u).is_none()) {
            return Err(KvError::InvalidRequest("a peer URL must be http(s)://host:port").into());
        }
        let current = self.shared.member_list();
        let mut member = current
            .iter()
            .find(|m| m.id == req.id)
            .cloned()
            .ok_or(KvError::MemberNotFound)?;
        let taken = current
            .iter()
            .filter(|m| m.id != req.id)
            .any(|m| m.peer_ur_ls.iter().any(|u| req.peer_ur_ls.contains(u)));
        if taken {
            return Err(KvError::PeerUrlExists.into());
        }
        if let Some(mut leader) = self.shared.cluster_leader().await? {
            return leader.member_update(credentials.relay(req)).await;
        }
        // The Raft configuration first: it is what members dial, and the
        // change the leader may refuse (another change pending).
        self.shared
            .consensus
            .update_member(req.id, &req.peer_ur_ls)
            .await?;
        member.peer_ur_ls = req.peer_ur_ls;
        self.shared.register(member).await?;
        Ok(Response::new(MemberUpdateResponse {
            header: Some(self.shared.header(self.shared.revision())),
            members: self.shared.member_list(),
        }))
    }

    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if request.into_inner().linearizable {
            self.shared.consensus.read_barrier().await?;
        }
        Ok(Response::new(MemberListResponse {
            header: Some(self.shared.header(self.shared.revision())),
            members: self.shared.member_list(),
        }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let credentials = Credentials::of(&request);
        self.shared.admit_admin(&credentials).await?;
        let req = request.into_inner();
        let member = self
            .shared
            .member_list()
            .into_iter()
            .find(|m| m.id == req.id)
            .ok_or(KvError::MemberNotFound)?;
        if !member.is_learner {
            return Err(KvError::MemberNotLearner.into());
        }
        if let Some(mut leader) = self.shared.cluster_leader().await? {
            return leader.member_promote(credentials.relay(req)).await;
        }
        self.shared.consensus.promote_member(req.id).await?;
        self.shared
            .register(Member {
                is_learner: false,
                ..member
            })
            .await?;
        Ok(Response::new(MemberPromoteResponse {
            header: Some(self.shared.header(self.shared.revision())),
            members: self.shared.member_list(),
        }))
    }
}
