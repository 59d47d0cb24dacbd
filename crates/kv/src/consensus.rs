//! What the etcd services need from Raft, as a trait, so that they can be
//! served (and tested) over any consensus: the real `keel` runtime or the
//! single-node [`crate::LocalConsensus`].

use std::future::Future;

use bytes::Bytes;

use crate::error::KvError;

/// A member's view of the cluster, for response headers and status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RaftInfo {
    pub cluster_id: u64,
    pub member_id: u64,
    /// The leader this member believes in, if any.
    pub leader_id: Option<u64>,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

/// What a response header says of the member that answers: its cluster,
/// itself, and the term it is in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeaderIds {
    pub cluster_id: u64,
    pub member_id: u64,
    pub term: u64,
}

impl RaftInfo {
    pub fn is_leader(&self) -> bool {
        self.leader_id == Some(self.member_id)
    }

    pub fn is_learner(&self) -> bool {
        self.learners.contains(&self.member_id)
    }
}

/// Replication and membership, as the KV services use them.
///
/// Implementations apply committed commands to the member's
/// [`crate::KvStateMachine`]; `propose` resolves with the apply result of
/// *this* command on *this* member.
pub trait Consensus: Send + Sync + 'static {
    /// Replicates an encoded `Command` and returns its encoded
    /// `CommandResult` once applied here. Fails with `NotLeader`/`NoLeader`
    /// when the proposal cannot be accepted, or `Timeout`.
    fn propose(&self, command: Bytes) -> impl Future<Output = Result<Bytes, KvError>> + Send;

    /// Returns once this member has applied everything committed before the
    /// call (Raft's ReadIndex), so that a local read is linearizable.
    fn read_barrier(&self) -> impl Future<Output = Result<(), KvError>> + Send;

    /// The member's current view.
    fn info(&self) -> RaftInfo;

    /// The part of [`Consensus::info`] a response header carries. Asked
    /// on every request, so an implementation should not copy the
    /// membership lists to answer it.
    fn header_ids(&self) -> HeaderIds {
        let info = self.info();
        HeaderIds {
            cluster_id: info.cluster_id,
            member_id: info.member_id,
            term: info.term,
        }
    }

    /// Adds a member reachable at `peer_urls`, as a learner (non-voting)
    /// or a voter. Only the leader can.
    fn add_member(
        &self,
        id: u64,
        peer_urls: &[String],
        learner: bool,
    ) -> impl Future<Output = Result<(), KvError>> + Send;

    /// Records that member `id` is now reachable at `peer_urls` (etcd's
    /// MemberUpdate), in the configuration, for every member's transport.
    /// Only the leader can.
    fn update_member(
        &self,
        id: u64,
        peer_urls: &[String],
    ) -> impl Future<Output = Result<(), KvError>> + Send;

    /// Removes a member from the configuration. Only the leader can.
    fn remove_member(&self, id: u64) -> impl Future<Output = Result<(), KvError>> + Send;

    /// Makes a learner a voter once it has caught up. Only the leader can.
    fn promote_member(&self, id: u64) -> impl Future<Output = Result<(), KvError>> + Send;

    /// Asks the leader to hand leadership to `to`.
    fn transfer_leadership(&self, to: u64) -> impl Future<Output = Result<(), KvError>> + Send;
}
