//! Assembling a member's gRPC server: the etcd services over one
//! `Consensus`, plus the background tasks a member runs.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;

use crate::consensus::Consensus;
use crate::error::KvError;
use crate::proto::command::command::Op;
use crate::proto::etcdserverpb::Member;
use crate::proto::etcdserverpb::cluster_server::ClusterServer;
use crate::proto::etcdserverpb::kv_server::KvServer;
use crate::proto::etcdserverpb::lease_server::LeaseServer;
use crate::proto::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::proto::etcdserverpb::watch_server::WatchServer;
use crate::service::{
    ClusterService, KvService, LeaseService, MaintenanceService, Shared, WatchService,
    run_expiry_loop,
};

/// Serves the etcd API on `listener` until `shutdown` resolves, and runs
/// the member's background tasks (lease expiry, self-registration).
pub async fn serve<C: Consensus>(
    shared: Arc<Shared<C>>,
    listener: TcpListener,
    me: Member,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let expiry = tokio::spawn(run_expiry_loop(shared.clone()));
    let publish = tokio::spawn(publish_self(shared.clone(), me));
    let result = Server::builder()
        .add_service(KvServer::new(KvService::new(shared.clone())))
        .add_service(WatchServer::new(WatchService::new(shared.clone())))
        .add_service(LeaseServer::new(LeaseService::new(shared.clone())))
        .add_service(ClusterServer::new(ClusterService::new(shared.clone())))
        .add_service(MaintenanceServer::new(MaintenanceService::new(shared)))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await;
    expiry.abort();
    publish.abort();
    result
}

/// Records this member's name and URLs in the replicated registry (as etcd
/// members publish their attributes), retrying until a leader takes it.
async fn publish_self<C: Consensus>(shared: Arc<Shared<C>>, me: Member) {
    let mut retry = tokio::time::interval(std::time::Duration::from_millis(500));
    loop {
        retry.tick().await;
        let registered = shared.sm.store().members().get(&me.id).cloned();
        let wanted = Member {
            is_learner: registered.as_ref().is_some_and(|m| m.is_learner),
            ..me.clone()
        };
        if registered.as_ref() == Some(&wanted) {
            return;
        }
        let command = crate::command::encode(Op::MemberSet(wanted));
        match shared.consensus.propose(command).await {
            Ok(_) => return,
            Err(e @ (KvError::NotLeader | KvError::NoLeader | KvError::Timeout)) => {
                tracing::debug!(error = %e, "member registration waits for a leader");
            }
            Err(e) => {
                tracing::warn!(error = %e, "member registration failed");
                return;
            }
        }
    }
}
