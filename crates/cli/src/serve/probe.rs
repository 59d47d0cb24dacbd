//! What the metrics side-car reads from the member it runs next to: the
//! Raft node's metrics and the database size, in process, through
//! keel-kv's [`MemberMetrics`]. Reading them takes no lock the write path
//! holds and makes no call into the member, so a scrape cannot slow it.

use keel_kv::latency::LatencySnapshot;
use keel_kv::server::MemberMetrics;

use crate::metrics::{
    GrpcCalls, Histogram, LogSpan, Probe, ReplicationCounters, Role, Sample, Sampling,
};

pub struct MemberProbe {
    member: MemberMetrics,
}

impl MemberProbe {
    pub fn new(member: MemberMetrics) -> MemberProbe {
        MemberProbe { member }
    }

    /// `None` once the node stopped: a stopped member does not answer.
    fn take(&self) -> Option<Sample> {
        let m = self.member.raft_metrics().borrow().clone();
        if m.stopped.is_some() {
            return None;
        }
        let t = &m.transport;
        let forwarded = self.member.forwarding();
        Some(Sample {
            member_id: m.id.0,
            role: Role::from_raft(m.role, m.membership.learners().contains(&m.id)),
            term: m.term.0,
            leader_id: m.leader.map(|l| l.0),
            leader_changes: self.member.leader_changes(),
            commit_index: m.commit_index.0,
            applied_index: m.applied_index.0,
            db_size_bytes: self.member.db_size_bytes(),
            disk_free_bytes: self.member.disk_free_bytes(),
            disk_reserve_bytes: self.member.disk_reserve_bytes(),
            keys: self.member.keys()?,
            log: LogSpan {
                first_index: m.first_index.0,
                last_index: m.last_index.0,
            },
            replication: ReplicationCounters {
                proposals_committed: m.proposals_committed,
                proposals_failed: m.proposals_failed,
                proposals_pending: m.pending_proposals as u64,
                peer_send_failures: t.dropped_queue_full
                    + t.dropped_unreachable
                    + t.dropped_unknown_peer,
                snapshots_created: m.snapshots_created,
                snapshots_installed: m.snapshots_installed,
                forwarded_commands: forwarded.commands_sent,
                forwarded_batches: forwarded.batches_sent,
                log_append_seconds: histogram(&m.log_append),
                log_fsync_seconds: histogram(&m.log_sync),
            },
            backend_commit_seconds: snapshot(&self.member.backend_commits()?),
            peer_round_trip_seconds: self
                .member
                .peer_round_trips()
                .iter()
                .map(|(id, trips)| (*id, snapshot(trips)))
                .collect(),
            grpc: self
                .member
                .grpc_calls()
                .into_iter()
                .map(|(method, calls)| GrpcCalls {
                    kind: method.kind(),
                    service: method.service,
                    method: method.method,
                    started: calls.started,
                    handled: calls.handled.into_iter().collect(),
                })
                .collect(),
        })
    }
}

fn histogram(h: &keel::LatencyHistogram) -> Histogram {
    Histogram {
        buckets: h
            .buckets()
            .map(|(bound, n)| (bound.as_secs_f64(), n))
            .collect(),
        sum_seconds: h.sum().as_secs_f64(),
        count: h.count(),
    }
}

fn snapshot(h: &LatencySnapshot) -> Histogram {
    Histogram {
        buckets: h.buckets.clone(),
        sum_seconds: h.sum_seconds,
        count: h.count,
    }
}

impl Probe for MemberProbe {
    fn sample(&self) -> Sampling<'_> {
        Box::pin(std::future::ready(self.take()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn histogram_bounds_become_seconds() {
        let h = histogram(&keel::LatencyHistogram::default());
        assert_eq!(h.buckets.len(), keel::LATENCY_BUCKET_BOUNDS_MICROS.len());
        assert_eq!(h.buckets[0], (Duration::from_micros(100).as_secs_f64(), 0));
        assert_eq!(h.count, 0);
    }
}
