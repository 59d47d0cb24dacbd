//! What the metrics side-car reads from a running member: the member's own
//! Maintenance/Status, asked over loopback gRPC like any client would.
//!
//! keel-kv's `RunningMember` does not publish the Raft node's metrics
//! (log bounds, counters, latencies) yet, so the side-car reports what the
//! etcd API carries; see `metrics::Sample` for the series that wait on it.

use std::net::SocketAddr;
use std::time::Duration;

use keel_kv::proto::etcdserverpb::StatusRequest;
use keel_kv::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use tonic::transport::{Channel, Endpoint};

use crate::metrics::{Probe, Role, Sample, Sampling};

/// A scrape must not hang on a stuck member.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);

pub struct StatusProbe {
    channel: Channel,
}

impl StatusProbe {
    /// A probe of the member serving clients on `client_addr`.
    pub fn new(client_addr: SocketAddr) -> StatusProbe {
        // A wildcard bind is dialed on loopback.
        let host = if client_addr.ip().is_unspecified() {
            SocketAddr::new(
                match client_addr {
                    SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                },
                client_addr.port(),
            )
        } else {
            client_addr
        };
        let channel = Endpoint::from_shared(format!("http://{host}"))
            .expect("a socket address is a valid URI authority")
            .connect_timeout(STATUS_TIMEOUT)
            .timeout(STATUS_TIMEOUT)
            .connect_lazy();
        StatusProbe { channel }
    }

    async fn status(&self) -> Option<Sample> {
        let status = MaintenanceClient::new(self.channel.clone())
            .status(StatusRequest {})
            .await
            .ok()?
            .into_inner();
        let member_id = status.header.map_or(0, |h| h.member_id);
        Some(Sample {
            member_id,
            role: Role::from_status(member_id, status.leader, status.is_learner),
            term: status.raft_term,
            leader_id: (status.leader != 0).then_some(status.leader),
            commit_index: status.raft_index,
            applied_index: status.raft_applied_index,
            db_size_bytes: status.db_size,
            log: None,
            replication: None,
        })
    }
}

impl Probe for StatusProbe {
    fn sample(&self) -> Sampling<'_> {
        Box::pin(self.status())
    }
}
