//! Assembling a member's gRPC server: the etcd services over one
//! `Consensus`, plus the background tasks every member runs.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use keel::tls::{self, ServerTls};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::StreamMap;
use tonic::service::Routes;
use tonic::transport::Server;

use super::authority::AuthorityRepair;
use super::gateway;
use super::grpc_metrics::{GrpcCounters, count_calls};

use crate::consensus::Consensus;
use crate::error::KvError;
use crate::proto::command::command::Op;
use crate::proto::etcdserverpb::Member;
use crate::proto::etcdserverpb::auth_server::AuthServer;
use crate::proto::etcdserverpb::cluster_server::ClusterServer;
use crate::proto::etcdserverpb::kv_server::KvServer;
use crate::proto::etcdserverpb::lease_server::LeaseServer;
use crate::proto::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::proto::etcdserverpb::watch_server::WatchServer;
use crate::proto::v3electionpb::election_server::ElectionServer;
use crate::proto::v3lockpb::lock_server::LockServer;
use crate::service::{
    AuthService, ClusterService, ElectionService, KvService, LeaseService, LockService,
    MaintenanceService, Shared, WatchService, run_compactor, run_disk_watch, run_expiry_loop,
};

/// Room for the gRPC framing around the largest request, as etcd allows
/// (`grpcOverheadBytes`): the size limit proper is checked on the command.
pub(crate) const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// Serves the etcd API on `listener` until `shutdown` resolves, and runs
/// the member's background tasks (lease expiry, the compactor,
/// self-registration, the free-space watch).
pub async fn serve<C: Consensus>(
    shared: Arc<Shared<C>>,
    listener: TcpListener,
    me: Member,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let client_port = ClientPort {
        listeners: vec![(listener, None)],
        http: Router::new(),
        grpc_counters: GrpcCounters::default(),
    };
    serve_on(shared, client_port, me, shutdown).await
}

/// What the client port serves besides the etcd API.
pub(crate) struct ClientPort {
    /// Each plain or TLS (`https://`).
    pub listeners: Vec<(TcpListener, Option<ServerTls>)>,
    /// Plain HTTP routes (`/metrics`, `/health`, …), served next to gRPC
    /// over HTTP/1.1 and HTTP/2 alike, as etcd serves them.
    pub http: Router,
    /// Where the etcd API's calls are counted.
    pub grpc_counters: GrpcCounters,
}

/// Like [`serve`], on several listeners, with `port.http` next to the
/// etcd API. Member-to-member calls (write forwarding) are never served
/// here: they are on the peer listener, behind its cluster-identity check
/// (`server/run.rs`).
pub(crate) async fn serve_on<C: Consensus>(
    shared: Arc<Shared<C>>,
    port: ClientPort,
    me: Member,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let expiry = tokio::spawn(run_expiry_loop(shared.clone()));
    let compactor = tokio::spawn(run_compactor(shared.clone()));
    let publish = tokio::spawn(publish_self(shared.clone(), me));
    let disk_watch = shared
        .config
        .disk_reserve
        .clone()
        .map(|reserve| tokio::spawn(run_disk_watch(shared.clone(), reserve)));
    let limit = shared.config.max_request_bytes + GRPC_OVERHEAD_BYTES;
    let mut incoming = StreamMap::new();
    // `tls::incoming` turns Nagle's algorithm off on every connection: a
    // gRPC response is several small writes (headers, data, trailers), and
    // with Nagle on the last one waits for the client's delayed ACK, adding
    // ~40 ms to a request. Each connection is then wrapped so that a
    // request whose `:authority` is a URL, as etcdctl sends with URL
    // endpoints, is served rather than reset (`authority/`).
    for (i, (listener, tls)) in port.listeners.into_iter().enumerate() {
        incoming.insert(i, tls::incoming(listener, tls));
    }
    let etcd_api =
        Routes::new(KvServer::new(KvService::new(shared.clone())).max_decoding_message_size(limit))
            .add_service(
                WatchServer::new(WatchService::new(shared.clone()))
                    .max_decoding_message_size(limit),
            )
            .add_service(
                LeaseServer::new(LeaseService::new(shared.clone()))
                    .max_decoding_message_size(limit),
            )
            .add_service(
                ClusterServer::new(ClusterService::new(shared.clone()))
                    .max_decoding_message_size(limit),
            )
            .add_service(
                MaintenanceServer::new(MaintenanceService::new(shared.clone()))
                    .max_decoding_message_size(limit),
            )
            .add_service(LockServer::new(LockService::new(shared.clone())))
            .add_service(AuthServer::new(AuthService::new(shared.clone())))
            .add_service(ElectionServer::new(ElectionService::new(shared.clone())));
    let gateway = gateway::routes(shared);
    // The HTTP routes are merged after the counting layer, so that only
    // the etcd API's gRPC calls are counted; requests are told apart by
    // path.
    let routes = etcd_api
        .into_axum_router()
        .layer(axum::middleware::from_fn_with_state(
            port.grpc_counters,
            count_calls,
        ))
        .merge(gateway)
        .merge(port.http);
    let result = Server::builder()
        .accept_http1(true)
        .add_routes(Routes::from(routes))
        .serve_with_incoming_shutdown(
            incoming.map(|(_, conn)| conn.map(AuthorityRepair::new)),
            shutdown,
        )
        .await;
    expiry.abort();
    compactor.abort();
    publish.abort();
    if let Some(watch) = disk_watch {
        watch.abort();
    }
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
        let command =
            crate::command::encode_as(Op::MemberSet(wanted), crate::command::member_caller());
        match shared.consensus.propose(command).await {
            Ok(_) => return,
            Err(
                e @ (KvError::NotLeader
                | KvError::NoLeader
                | KvError::Timeout
                | KvError::LeaderChanged
                | KvError::LeaderFailed),
            ) => {
                tracing::debug!(error = %e, "member registration waits for a leader");
            }
            Err(e) => {
                tracing::warn!(error = %e, "member registration failed");
                return;
            }
        }
    }
}
