//! A member's answer to `Observe/Status`, built from its own metrics.

use std::path::{Path, PathBuf};

use keel::Metrics;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::proto::command::observe_server::Observe;
use crate::proto::command::{FollowerProgress, MemberStatus, Role, StatusRequest};

/// The size of the key-value database file at `path`, as
/// Maintenance/Status reports it (0 if it cannot be read).
pub(crate) fn db_size_bytes(path: &Path) -> i64 {
    std::fs::metadata(path).map_or(0, |m| m.len() as i64)
}

/// What the member says about itself.
pub fn member_status(name: &str, m: &Metrics, db_size_bytes: i64) -> MemberStatus {
    let learner = m.membership.learners().contains(&m.id);
    let role = match m.role {
        keel::Role::Leader => Role::Leader,
        keel::Role::Candidate => Role::Candidate,
        keel::Role::PreCandidate => Role::PreCandidate,
        keel::Role::Follower if learner => Role::Learner,
        keel::Role::Follower => Role::Follower,
    };
    MemberStatus {
        id: m.id.0,
        name: name.to_owned(),
        role: role.into(),
        term: m.term.0,
        leader: m.leader.map_or(0, |l| l.0),
        commit_index: m.commit_index.0,
        applied_index: m.applied_index.0,
        last_index: m.last_index.0,
        snapshot_index: m.first_index.0.saturating_sub(1),
        followers: m
            .peers
            .iter()
            .filter(|(id, _)| **id != m.id)
            .map(|(id, p)| FollowerProgress {
                id: id.0,
                match_index: p.match_index.0,
                next_index: p.next_index.0,
            })
            .collect(),
        pre_votes_started: m.elections.pre_votes_started,
        votes_started: m.elections.votes_started,
        elections_won: m.elections.elections_won,
        proposals_committed: m.proposals_committed,
        log_syncs: m.log_sync.count(),
        log_sync_micros: u64::try_from(m.log_sync.sum().as_micros()).unwrap_or(u64::MAX),
        db_size_bytes,
        voters: m.membership.voters().iter().map(|v| v.0).collect(),
        learners: m.membership.learners().iter().map(|l| l.0).collect(),
    }
}

/// Serves `Observe/Status` from the member's metrics.
pub(crate) struct ObserveService {
    name: String,
    metrics: watch::Receiver<Metrics>,
    db_path: PathBuf,
}

impl ObserveService {
    pub(crate) fn new(
        name: String,
        metrics: watch::Receiver<Metrics>,
        db_path: PathBuf,
    ) -> ObserveService {
        ObserveService {
            name,
            metrics,
            db_path,
        }
    }
}

#[tonic::async_trait]
impl Observe for ObserveService {
    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<MemberStatus>, Status> {
        let metrics = self.metrics.borrow().clone();
        if let Some(reason) = &metrics.stopped {
            return Err(Status::unavailable(format!("member stopped: {reason}")));
        }
        let status = member_status(&self.name, &metrics, db_size_bytes(&self.db_path));
        Ok(Response::new(status))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use keel::{LogIndex, Membership, NodeId, PeerMetrics, Term};

    use super::*;

    fn metrics(id: u64, role: keel::Role, membership: Membership) -> Metrics {
        Metrics {
            id: NodeId(id),
            role,
            term: Term(4),
            leader: Some(NodeId(1)),
            commit_index: LogIndex(9),
            applied_index: LogIndex(8),
            persisted_index: LogIndex(10),
            last_index: LogIndex(10),
            first_index: LogIndex(6),
            membership,
            peers: BTreeMap::new(),
            pending_proposals: 0,
            proposals_committed: 3,
            proposals_failed: 0,
            snapshots_created: 1,
            snapshots_installed: 0,
            elections: keel::ElectionCounters::default(),
            transport: Default::default(),
            log_append: Default::default(),
            log_sync: Default::default(),
            stopped: None,
        }
    }

    #[test]
    fn a_leader_reports_its_followers_but_not_itself() {
        let mut m = metrics(
            1,
            keel::Role::Leader,
            Membership::new([1, 2, 3].map(NodeId), []).unwrap(),
        );
        for id in [1, 2, 3] {
            let progress = PeerMetrics {
                match_index: LogIndex(7 + id),
                next_index: LogIndex(8 + id),
                lag: 0,
            };
            m.peers.insert(NodeId(id), progress);
        }
        let s = member_status("m1", &m, 4096);
        assert_eq!(s.role(), Role::Leader);
        assert_eq!(
            (s.term, s.leader, s.commit_index, s.applied_index),
            (4, 1, 9, 8)
        );
        assert_eq!(s.snapshot_index, 5, "the log starts after the snapshot");
        let followers: Vec<(u64, u64)> =
            s.followers.iter().map(|f| (f.id, f.match_index)).collect();
        assert_eq!(followers, [(2, 9), (3, 10)]);
        assert_eq!(
            (s.voters.as_slice(), s.db_size_bytes),
            (&[1, 2, 3][..], 4096)
        );
    }

    #[test]
    fn a_learner_is_reported_as_one_though_the_core_calls_it_a_follower() {
        let membership = Membership::new([1, 2].map(NodeId), [NodeId(3)]).unwrap();
        let s = member_status("m3", &metrics(3, keel::Role::Follower, membership), 0);
        assert_eq!(s.role(), Role::Learner);
        assert_eq!(s.learners, [3]);
    }
}
