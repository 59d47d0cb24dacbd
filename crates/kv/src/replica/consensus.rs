//! [`RaftConsensus`]: the etcd services' [`Consensus`] over a `keel` node.
//!
//! Writes go to the leader. A follower does not redirect the client (etcd
//! clients expect any member to take writes): it forwards the encoded
//! command to the leader's *peer* listener (`forward.rs`, served next to
//! Raft behind the same cluster-identity check), in a batch with the other
//! writes waiting for the same leader (`batcher.rs`), and answers once it
//! has applied the command itself, as etcd's followers do. The peer address
//! comes from the Raft configuration, which records every member's from
//! the start: no need to wait for the leader to publish its client URLs.

use std::time::Duration;

use bytes::Bytes;
use keel::{LogIndex, MembershipChange, Metrics, Node, NodeId};
use tokio::sync::watch;
use tokio::time::Instant;

use super::batcher::{ForwardCounters, Forwarder, Verdict};
use super::errors::{is_retryable, to_kv};
use super::machine::RaftMachine;
use crate::consensus::{Consensus, HeaderIds, RaftInfo};
use crate::error::{KvError, decode};
use crate::proto::command::CommandResult;
use crate::server::urls::dial_address;

/// First and largest pause between attempts of a request that can succeed
/// once an election or a membership change finishes.
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(10);
const RETRY_BACKOFF_MAX: Duration = Duration::from_millis(200);
/// etcd promotes a learner only once it holds this share of the leader's log.
const LEARNER_READY_RATIO: f64 = 0.9;

/// Replication through a [`keel::Node`].
pub struct RaftConsensus {
    node: Node<RaftMachine>,
    metrics: watch::Receiver<Metrics>,
    cluster_id: u64,
    /// How long a request may take, retries included.
    request_timeout: Duration,
    forwarder: Forwarder,
}

impl RaftConsensus {
    pub fn new(
        node: Node<RaftMachine>,
        cluster_id: u64,
        request_timeout: Duration,
    ) -> RaftConsensus {
        RaftConsensus {
            metrics: node.metrics(),
            forwarder: Forwarder::new(node.clone()),
            node,
            cluster_id,
            request_timeout,
        }
    }

    pub fn node(&self) -> &Node<RaftMachine> {
        &self.node
    }

    /// Counts of this member's forwarded writes.
    pub fn forward_counters(&self) -> ForwardCounters {
        self.forwarder.counters()
    }

    /// Sends `command` to `leader`, in the next batch for it. `Ok(None)`:
    /// the leader refused it before appending (it no longer leads), so it
    /// may be retried.
    async fn forward(
        &self,
        leader: u64,
        command: &Bytes,
        deadline: Instant,
    ) -> Result<Option<Bytes>, KvError> {
        let result = match self
            .forwarder
            .forward(leader, command.clone(), deadline)
            .await
        {
            Verdict::Applied(result) => result,
            Verdict::Refused => return Ok(None),
            Verdict::Failed(e) => return Err(e),
        };
        let decoded: CommandResult = decode("forwarded command result", &result)?;
        // Answer after applying it here too, so that this member's own
        // (serializable) reads and watches already reflect the write.
        let wait = deadline.saturating_duration_since(Instant::now());
        let _ = self.node.wait_applied(LogIndex(decoded.index), wait).await;
        Ok(Some(result))
    }

    /// The leader, as this member last published it, when that is another
    /// member. Stale at worst by one driver turn: a member that has just
    /// won an election forwards to the old leader, which refuses, and the
    /// retry proposes locally.
    fn leader_elsewhere(&self) -> Option<NodeId> {
        let m = self.metrics.borrow();
        m.leader.filter(|&leader| leader != m.id)
    }

    async fn change(&self, change: MembershipChange) -> Result<(), KvError> {
        let mut backoff = Backoff::until(Instant::now() + self.request_timeout);
        loop {
            match self.node.change_membership(change.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) if is_retryable(&e) && backoff.wait(new_leader(&self.metrics)).await => {}
                Err(e) => return Err(to_kv(e)),
            }
        }
    }
}

impl Consensus for RaftConsensus {
    async fn propose(&self, command: Bytes) -> Result<Bytes, KvError> {
        let mut backoff = Backoff::until(Instant::now() + self.request_timeout);
        loop {
            let attempt = match self.leader_elsewhere() {
                // The driver would refuse it with the same answer; spare it
                // a request and a turn.
                Some(leader) => Err(keel::Error::NotLeader {
                    leader: Some(leader),
                }),
                None => self.node.propose(command.clone()).await,
            };
            let failure = match attempt {
                Ok(result) => return Ok(result),
                Err(keel::Error::NotLeader {
                    leader: Some(leader),
                }) => match self.forward(leader.0, &command, backoff.deadline).await {
                    Ok(Some(result)) => return Ok(result),
                    Ok(None) => KvError::NotLeader,
                    Err(KvError::NoLeader) => KvError::NoLeader,
                    Err(e) => return Err(e),
                },
                Err(e) if is_retryable(&e) => to_kv(e),
                Err(e) => return Err(to_kv(e)),
            };
            if !backoff.wait(new_leader(&self.metrics)).await {
                return Err(failure);
            }
        }
    }

    async fn read_barrier(&self) -> Result<(), KvError> {
        let mut backoff = Backoff::until(Instant::now() + self.request_timeout);
        loop {
            let failure = match self.node.ensure_linearizable().await {
                Ok(_) => return Ok(()),
                Err(e @ keel::Error::NotLeader { .. }) => to_kv(e),
                Err(e) if is_retryable(&e) => to_kv(e),
                Err(e) => return Err(to_kv(e)),
            };
            if !backoff.wait(new_leader(&self.metrics)).await {
                return Err(failure);
            }
        }
    }

    fn header_ids(&self) -> HeaderIds {
        let m = self.metrics.borrow();
        HeaderIds {
            cluster_id: self.cluster_id,
            member_id: m.id.0,
            term: m.term.0,
        }
    }

    fn info(&self) -> RaftInfo {
        let m = self.metrics.borrow();
        let membership = &m.membership;
        RaftInfo {
            cluster_id: self.cluster_id,
            member_id: m.id.0,
            leader_id: m.leader.map(|l| l.0),
            term: m.term.0,
            commit_index: m.commit_index.0,
            applied_index: m.applied_index.0,
            voters: membership
                .voters()
                .union(membership.outgoing())
                .map(|id| id.0)
                .collect(),
            learners: membership.learners().iter().map(|id| id.0).collect(),
        }
    }

    async fn add_member(
        &self,
        id: u64,
        peer_urls: &[String],
        learner: bool,
    ) -> Result<(), KvError> {
        let (id, addr) = (NodeId(id), Some(peer_address(peer_urls)?));
        let change = if learner {
            MembershipChange::AddLearner { id, addr }
        } else {
            MembershipChange::AddVoter { id, addr }
        };
        self.change(change).await
    }

    async fn update_member(&self, id: u64, peer_urls: &[String]) -> Result<(), KvError> {
        let addr = peer_address(peer_urls)?;
        self.change(MembershipChange::SetAddress {
            id: NodeId(id),
            addr,
        })
        .await
    }

    async fn remove_member(&self, id: u64) -> Result<(), KvError> {
        self.change(MembershipChange::Remove(NodeId(id))).await
    }

    async fn promote_member(&self, id: u64) -> Result<(), KvError> {
        let status = self.node.status();
        if status.leader != Some(status.id) {
            return Err(KvError::NotLeader);
        }
        let matched = status.peers.get(&NodeId(id)).map_or(0, |p| p.match_index.0);
        if (matched as f64) < status.last_index.0 as f64 * LEARNER_READY_RATIO {
            return Err(KvError::LearnerNotReady);
        }
        self.change(MembershipChange::Promote(NodeId(id))).await
    }

    async fn transfer_leadership(&self, to: u64) -> Result<(), KvError> {
        if !self.info().voters.contains(&to) {
            return Err(KvError::MemberNotFound);
        }
        self.node.transfer_leader(NodeId(to)).await.map_err(to_kv)
    }
}

/// The address the transport dials for a member: its first peer URL's
/// `host:port`, recorded in the Raft configuration with the change.
fn peer_address(peer_urls: &[String]) -> Result<String, KvError> {
    peer_urls
        .first()
        .and_then(|url| dial_address(url))
        .ok_or(KvError::InvalidRequest(
            "a peer URL must be http://host:port",
        ))
}

/// Exponential pauses between retries, up to a deadline, cut short when a
/// new leader becomes known: most retries wait for an election, and a
/// request that slept through the end of one would add up to a whole
/// pause to the failover.
struct Backoff {
    deadline: Instant,
    next: Duration,
}

impl Backoff {
    fn until(deadline: Instant) -> Backoff {
        Backoff {
            deadline,
            next: RETRY_BACKOFF_MIN,
        }
    }

    /// Pauses before the next attempt, until the pause is over or
    /// `new_leader` completes (which starts the pauses over); `false` once
    /// the deadline is near.
    async fn wait(&mut self, new_leader: impl Future<Output = ()>) -> bool {
        let wake = Instant::now() + self.next;
        if wake >= self.deadline {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {
                self.next = (self.next * 2).min(RETRY_BACKOFF_MAX);
            }
            () = new_leader => self.next = RETRY_BACKOFF_MIN,
        }
        true
    }
}

/// Completes once `metrics` name a leader other than the one they name
/// now; never if the node stops.
fn new_leader(metrics: &watch::Receiver<Metrics>) -> impl Future<Output = ()> + use<> {
    let mut metrics = metrics.clone();
    let before = metrics.borrow_and_update().leader;
    async move {
        while metrics.changed().await.is_ok() {
            let leader = metrics.borrow_and_update().leader;
            if leader.is_some() && leader != before {
                return;
            }
        }
        std::future::pending().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pauses_grow_until_the_deadline() {
        let start = Instant::now();
        let mut backoff = Backoff::until(start + Duration::from_millis(100));
        let mut slept = Vec::new();
        while backoff.wait(std::future::pending()).await {
            slept.push(start.elapsed().as_millis());
        }
        assert_eq!(slept, vec![10, 30, 70]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_leader_ends_the_pause_and_starts_the_pauses_over() {
        let start = Instant::now();
        let mut backoff = Backoff::until(start + Duration::from_secs(10));
        backoff.next = RETRY_BACKOFF_MAX;
        assert!(
            backoff
                .wait(tokio::time::sleep(Duration::from_millis(5)))
                .await
        );
        assert_eq!(start.elapsed(), Duration::from_millis(5));
        assert_eq!(backoff.next, RETRY_BACKOFF_MIN);
    }
}
