//! A single-member "consensus": commands are applied as they are proposed.
//!
//! It stands in for Raft in tests and in a single-node dev server, with the
//! same command path (encode, apply, decode) as a replicated member. Its
//! store must fsync every apply, since there is no log to replay.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Mutex;

use crate::consensus::{Consensus, RaftInfo};
use crate::error::{Corruption, KvError};
use crate::mvcc::EntryPayload;
use crate::state_machine::KvStateMachine;

/// The only member of a one-node cluster, always its leader.
pub struct LocalConsensus {
    sm: Arc<KvStateMachine>,
    cluster_id: u64,
    member_id: u64,
    /// The last "log index"; the lock also serializes applies.
    last_index: Mutex<u64>,
}

/// The term a local member reports: there is never an election.
const LOCAL_TERM: u64 = 1;

impl LocalConsensus {
    pub fn new(sm: Arc<KvStateMachine>, cluster_id: u64, member_id: u64) -> LocalConsensus {
        let last_index = sm.position().applied_index;
        LocalConsensus {
            sm,
            cluster_id,
            member_id,
            last_index: Mutex::new(last_index),
        }
    }
}

impl Consensus for LocalConsensus {
    async fn propose(&self, command: Bytes) -> Result<Bytes, KvError> {
        let mut last = self.last_index.lock().await;
        let index = *last + 1;
        let applied = self
            .sm
            .apply(&[(index, LOCAL_TERM, EntryPayload::Command(&command))])?;
        *last = index;
        applied
            .into_iter()
            .next()
            .and_then(|a| a.result)
            .ok_or(KvError::Corrupt {
                what: "apply",
                kind: Corruption::NoApplyResult,
            })
    }

    async fn read_barrier(&self) -> Result<(), KvError> {
        // Applies happen inside `propose`, so waiting for the lock means
        // every earlier proposal is applied.
        drop(self.last_index.lock().await);
        Ok(())
    }

    fn info(&self) -> RaftInfo {
        let applied = self.sm.position().applied_index;
        RaftInfo {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            leader_id: Some(self.member_id),
            term: LOCAL_TERM,
            commit_index: applied,
            applied_index: applied,
            voters: vec![self.member_id],
            learners: Vec::new(),
        }
    }

    async fn add_member(&self, _id: u64, _urls: &[String], _learner: bool) -> Result<(), KvError> {
        Err(KvError::Unsupported(
            "membership change on a single-node server",
        ))
    }

    /// A single node dials no one: the member registry is all there is.
    async fn update_member(&self, _id: u64, _urls: &[String]) -> Result<(), KvError> {
        Ok(())
    }

    async fn remove_member(&self, _id: u64) -> Result<(), KvError> {
        Err(KvError::Unsupported(
            "membership change on a single-node server",
        ))
    }

    async fn promote_member(&self, _id: u64) -> Result<(), KvError> {
        Err(KvError::Unsupported(
            "membership change on a single-node server",
        ))
    }

    async fn transfer_leadership(&self, to: u64) -> Result<(), KvError> {
        if to == self.member_id {
            Ok(())
        } else {
            Err(KvError::MemberNotFound)
        }
    }
}
