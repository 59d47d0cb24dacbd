//! A system under test seen through etcd's generated gRPC clients: one
//! endpoint (etcd) or several (the members of a Keel cluster).

use std::time::Duration;

use keel_kv::proto::etcdserverpb::kv_client::KvClient;
use keel_kv::proto::etcdserverpb::lease_client::LeaseClient;
use keel_kv::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use keel_kv::proto::etcdserverpb::{
    DefragmentRequest, LeaseLeasesRequest, RangeRequest, StatusRequest,
};
use tonic::transport::{Channel, Endpoint};

use crate::op::Op;
use crate::reply::Reply;

/// How long one request may take before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest response accepted: a full range may carry a few
/// near-limit values.
const RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Errors of setting up a target.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("invalid endpoint {endpoint:?}: {source}")]
    Endpoint {
        endpoint: String,
        source: tonic::transport::Error,
    },
    #[error("a target needs at least one endpoint")]
    NoEndpoints,
}

/// The clients of one system: one set per endpoint.
pub struct Target {
    members: Vec<Clients>,
}

#[derive(Clone)]
struct Clients {
    kv: KvClient<Channel>,
    lease: LeaseClient<Channel>,
    maintenance: MaintenanceClient<Channel>,
}

impl Target {
    /// Clients to `endpoints` (`host:port` or URLs); connections are made
    /// on first use.
    pub fn new(endpoints: &[String]) -> Result<Target, TargetError> {
        if endpoints.is_empty() {
            return Err(TargetError::NoEndpoints);
        }
        let members = endpoints
            .iter()
            .map(|e| {
                let url = if e.contains("://") {
                    e.clone()
                } else {
                    format!("http://{e}")
                };
                let channel = Endpoint::from_shared(url)
                    .map_err(|source| TargetError::Endpoint {
                        endpoint: e.clone(),
                        source,
                    })?
                    .connect_timeout(Duration::from_secs(2))
                    .timeout(REQUEST_TIMEOUT)
                    .connect_lazy();
                Ok(Clients {
                    kv: KvClient::new(channel.clone())
                        .max_decoding_message_size(RESPONSE_BYTES_MAX),
                    lease: LeaseClient::new(channel.clone())
                        .max_decoding_message_size(RESPONSE_BYTES_MAX),
                    maintenance: MaintenanceClient::new(channel)
                        .max_decoding_message_size(RESPONSE_BYTES_MAX),
                })
            })
            .collect::<Result<_, TargetError>>()?;
        Ok(Target { members })
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Sends `op` to member `member` (modulo the member count) and returns
    /// its answer, an error included.
    pub async fn call(&self, member: usize, op: &Op) -> Reply {
        let mut c = self.members[member % self.members.len()].clone();
        let result = match op.clone() {
            Op::Range(r) => c.kv.range(r).await.map(|r| Reply::Range(r.into_inner())),
            Op::Put(r) => c.kv.put(r).await.map(|r| Reply::Put(r.into_inner())),
            Op::DeleteRange(r) => {
                c.kv.delete_range(r)
                    .await
                    .map(|r| Reply::DeleteRange(r.into_inner()))
            }
            Op::Txn(r) => c.kv.txn(r).await.map(|r| Reply::Txn(r.into_inner())),
            Op::Compact(r) => {
                c.kv.compact(r)
                    .await
                    .map(|r| Reply::Compact(r.into_inner()))
            }
            Op::LeaseGrant(r) => c
                .lease
                .lease_grant(r)
                .await
                .map(|r| Reply::LeaseGrant(r.into_inner())),
            Op::LeaseRevoke(r) => c
                .lease
                .lease_revoke(r)
                .await
                .map(|r| Reply::LeaseRevoke(r.into_inner())),
            Op::LeaseTimeToLive(r) => c
                .lease
                .lease_time_to_live(r)
                .await
                .map(|r| Reply::LeaseTimeToLive(r.into_inner())),
            Op::LeaseLeases => c
                .lease
                .lease_leases(LeaseLeasesRequest {})
                .await
                .map(|r| Reply::LeaseLeases(r.into_inner())),
            Op::Status => c
                .maintenance
                .status(StatusRequest {})
                .await
                .map(|r| Reply::Status(r.into_inner())),
            Op::HashKv(r) => c
                .maintenance
                .hash_kv(r)
                .await
                .map(|r| Reply::HashKv(r.into_inner())),
            Op::Alarm(r) => c
                .maintenance
                .alarm(r)
                .await
                .map(|r| Reply::Alarm(r.into_inner())),
            Op::Defragment => c
                .maintenance
                .defragment(DefragmentRequest {})
                .await
                .map(|r| Reply::Defragment(r.into_inner())),
        };
        result.unwrap_or_else(|status| Reply::error(&status))
    }

    /// Waits until member `member` answers a linearizable read, for at
    /// most `timeout`.
    pub async fn wait_serving(&self, member: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let probe = Op::Range(RangeRequest {
            key: "health".into(),
            ..Default::default()
        });
        loop {
            if matches!(self.call(member, &probe).await, Reply::Range(_)) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
