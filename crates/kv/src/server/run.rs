//! Starting and stopping a member: the Raft node (whose peer listener also
//! serves write forwarding between members), the KV state machine it
//! drives, and the client-facing gRPC server, wired together.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Router;
use keel::{Config, Metrics, Node, NodeId, Storage};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::ServerError;
use super::config::{ClusterState, MemberConfig};
use super::disk_failure::DiskFailure;
use super::grpc_metrics::{GrpcCounters, GrpcMethod, MethodCalls};
use super::identity::{self, Identity};
use super::ids::{cluster_id, member_id};
use super::serve::{ClientPort, GRPC_OVERHEAD_BYTES, serve_on};
use super::tls::MemberTls;
use super::urls::{HttpUrl, strings};
use crate::latency::LatencySnapshot;
use crate::observe::{
    ClusterObserver, ObserveService, PEER_PROBE_INTERVAL, PeerRoundTrips, db_size_bytes,
    probe_peers,
};
use crate::proto::command::forward_server::ForwardServer;
use crate::proto::command::observe_server::ObserveServer;
use crate::proto::etcdserverpb::Member;
use crate::replica::{ForwardCounters, ForwardService, ForwardStats, RaftConsensus, RaftMachine};
use crate::service::{DiskReserve, Quota, ServiceConfig, Shared, free_bytes};
use crate::state_machine::KvStateMachine;

/// How long open client streams (watches) may delay a stop.
const CLIENT_STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// A running member. Stop it with [`RunningMember::shutdown`]; dropping it
/// leaves it running until the runtime ends.
pub struct RunningMember {
    identity: Identity,
    client_addrs: Vec<SocketAddr>,
    peer_addr: SocketAddr,
    metrics: MemberMetrics,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServerError>>,
}

/// What a metrics exporter reads from a member, in process: the Raft
/// node's own [`Metrics`] (role, term, indexes, log bounds, proposal and
/// snapshot counters, WAL latencies, transport counters), the leader
/// changes it saw, the database size and key count, the free disk space
/// and its reserve, the counts of
/// forwarded writes and of the client port's calls. Cheap to clone, and
/// independent of the [`RunningMember`], which `run_until` consumes; it
/// holds no file or lock open (the store only weakly).
#[derive(Clone, Debug)]
pub struct MemberMetrics {
    raft: watch::Receiver<Metrics>,
    db_path: PathBuf,
    data_dir: PathBuf,
    disk_reserve_bytes: u64,
    store: Weak<KvStateMachine>,
    forward: ForwardCounters,
    grpc: GrpcCounters,
    leader_changes: Arc<AtomicU64>,
    observer: ClusterObserver,
    peer_round_trips: Arc<PeerRoundTrips>,
}

impl MemberMetrics {
    /// The Raft node's metrics, republished every tick (one heartbeat
    /// interval) and on every change of role, term or leader. After the
    /// node stops, the last value stays, with `stopped` set.
    pub fn raft_metrics(&self) -> watch::Receiver<Metrics> {
        self.raft.clone()
    }

    /// The key-value database file's size, as Maintenance/Status reports it.
    pub fn db_size_bytes(&self) -> i64 {
        db_size_bytes(&self.db_path)
    }

    /// The bytes free for this member on the filesystem holding its data
    /// directory, as the disk reserve sees them; `None` if they cannot
    /// be read.
    pub fn disk_free_bytes(&self) -> Option<u64> {
        free_bytes(&self.data_dir).ok()
    }

    /// The free space below which this member raises a NOSPACE alarm
    /// (`--disk-reserve-bytes`; 0: no watch).
    pub fn disk_reserve_bytes(&self) -> u64 {
        self.disk_reserve_bytes
    }

    /// Asks every member of the cluster for its status, for the web view.
    pub fn observer(&self) -> ClusterObserver {
        self.observer.clone()
    }

    /// How many writes this member forwarded to a leader, in how many
    /// batches.
    pub fn forwarding(&self) -> ForwardStats {
        self.forward.stats()
    }

    /// Keys with any history in the store, live or deleted but not yet
    /// compacted; `None` once the member stopped.
    pub fn keys(&self) -> Option<u64> {
        Some(self.store.upgrade()?.store().key_count() as u64)
    }

    /// Times this member saw a new leader (the first one included), as
    /// etcd counts `leader_changes_seen_total`.
    pub fn leader_changes(&self) -> u64 {
        self.leader_changes.load(Ordering::Relaxed)
    }

    /// How long the store's commits took (etcd's backend commit
    /// histogram); `None` once the member stopped.
    pub fn backend_commits(&self) -> Option<LatencySnapshot> {
        Some(self.store.upgrade()?.store().commit_durations())
    }

    /// The round trips to each other member's peer listener, by member ID
    /// (etcd's peer round trip histogram, `observe/round_trip.rs`).
    pub fn peer_round_trips(&self) -> BTreeMap<u64, LatencySnapshot> {
        self.peer_round_trips.snapshot()
    }

    /// The etcd API's calls on the client port, per method.
    pub fn grpc_calls(&self) -> BTreeMap<GrpcMethod, MethodCalls> {
        self.grpc.calls()
    }
}

/// Counts the leaders this member sees: a known leader other than the last
/// one seen (an election that reinstates the same leader after a spell
/// without one counts too, as in etcd). Ends when the node's metrics end.
async fn count_leader_changes(mut metrics: watch::Receiver<Metrics>, seen: Arc<AtomicU64>) {
    let mut last = None;
    loop {
        let leader = metrics.borrow_and_update().leader;
        if leader.is_some() && leader != last {
            seen.fetch_add(1, Ordering::Relaxed);
        }
        last = leader;
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

impl RunningMember {
    pub fn member_id(&self) -> u64 {
        self.identity.member_id
    }

    pub fn cluster_id(&self) -> u64 {
        self.identity.cluster_id
    }

    /// The bound client addresses, in `listen_client_urls` order (useful
    /// with port 0).
    pub fn client_addrs(&self) -> &[SocketAddr] {
        &self.client_addrs
    }

    /// The bound peer address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// A handle for exporting this member's metrics, valid while it runs.
    pub fn metrics(&self) -> MemberMetrics {
        self.metrics.clone()
    }

    /// Runs until `shutdown` resolves (then stops gracefully) or the
    /// member stops by itself: a fatal storage or state machine error, or
    /// its removal from the cluster ([`ServerError::Removed`]).
    pub async fn run_until(
        mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServerError> {
        tokio::select! {
            () = shutdown => self.shutdown().await,
            ended = &mut self.task => ended.map_err(|_| ServerError::Panicked)?,
        }
    }

    /// Stops serving clients, stops the Raft node (writes in flight
    /// complete), flushes the store, and returns how the member ended.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.map_err(|_| ServerError::Panicked)?
    }
}

/// Runs a member until `shutdown` resolves; see [`start`].
pub async fn run(
    config: MemberConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    start(config).await?.run_until(shutdown).await
}

/// Starts a member: binds its client and peer listeners, opens (or
/// creates) its state under `data_dir`, starts its Raft node, and serves
/// etcd's v3 API. Returns once everything listens.
pub async fn start(config: MemberConfig) -> Result<RunningMember, ServerError> {
    start_with_http(config, |_| Router::new()).await
}

/// Like [`start`], and serves the HTTP routes `http` builds (given the
/// member's metrics) on the client port next to the etcd API, as etcd
/// serves `/metrics` and `/health` there.
pub async fn start_with_http(
    config: MemberConfig,
    http: impl FnOnce(MemberMetrics) -> Router,
) -> Result<RunningMember, ServerError> {
    config.validate()?;
    // Every certificate and key is read before anything binds or starts.
    let tls = MemberTls::load(&config)?;
    std::fs::create_dir_all(&config.data_dir)?;

    let mut client_listeners = Vec::new();
    for url in &config.listen_client_urls {
        client_listeners.push(bind(url).await?);
    }
    let client_addrs: Vec<SocketAddr> = client_listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<Result<_, _>>()?;
    let peer_listener = bind(&config.listen_peer_urls[0]).await?;
    let peer_addr = peer_listener.local_addr()?;
    let scheme = |tls: bool| if tls { "https" } else { "http" };

    let advertise_client = if config.advertise_client_urls.is_empty() {
        client_addrs
            .iter()
            .zip(&tls.client_listeners)
            .map(|(a, tls)| format!("{}://{a}", scheme(tls.is_some())))
            .collect()
    } else {
        strings(&config.advertise_client_urls)
    };
    let (advertise_peer, advertise_peer_addr) = match config.initial_advertise_peer_urls.first() {
        Some(first) => (
            strings(&config.initial_advertise_peer_urls),
            first.authority(),
        ),
        None => (
            vec![format!("{}://{peer_addr}", scheme(tls.peer.is_some()))],
            peer_addr.to_string(),
        ),
    };

    let token = &config.initial_cluster_token;
    let identity = match identity::load(&config.data_dir)? {
        Some(stored) => stored,
        None => {
            let fresh = Identity {
                member_id: member_id(token, &advertise_peer),
                cluster_id: cluster_id(token),
            };
            identity::save(&config.data_dir, fresh)?;
            fresh
        }
    };
    let peers: BTreeMap<NodeId, String> = config
        .founders()
        .into_iter()
        .filter(|(name, _)| *name != config.name)
        .map(|(_, urls)| {
            (
                NodeId(member_id(token, &strings(&urls))),
                urls[0].authority(),
            )
        })
        .collect();

    let sm = KvStateMachine::open(&config.data_dir.join("kv"), false)?;
    let db_path = sm
        .db_path()
        .expect("a member's state machine was opened from its data directory")
        .to_owned();
    let mut node_config = node_config(&config, identity, peer_addr, advertise_peer_addr)?;
    node_config.peer_tls = tls.peer.clone();
    let storage = Storage::open(config.data_dir.join("raft"), &node_config)?;
    // Followers forward writes to the leader's peer listener, in batches;
    // the client port serves the etcd API and nothing else.
    let forward_limit =
        ForwardService::batch_bytes_max(config.max_request_bytes) + GRPC_OVERHEAD_BYTES;
    let node = Node::start_with_services(
        node_config,
        RaftMachine::new(sm.clone()),
        storage,
        peers,
        peer_listener,
        |node, services| {
            let forward = ForwardService::new(node.clone(), config.max_request_bytes);
            let observe = ObserveService::new(config.name.clone(), node.metrics(), db_path.clone());
            services
                .add_service(ForwardServer::new(forward).max_decoding_message_size(forward_limit))
                .add_service(ObserveServer::new(observe))
        },
    )
    .await?;
    info!(
        name = %config.name,
        member = format!("{:x}", identity.member_id),
        cluster = format!("{:x}", identity.cluster_id),
        clients = ?advertise_client,
        peers = ?advertise_peer,
        "serving etcd v3 API"
    );

    let consensus = RaftConsensus::new(node.clone(), identity.cluster_id, config.request_timeout);
    let forward_counters = consensus.forward_counters();
    let service_config = ServiceConfig {
        lease_ttl_min_seconds: config.lease_ttl_min_seconds,
        watch_progress_every: config.watch_progress_notify_interval,
        leader_check_every: config.election_timeout,
        max_request_bytes: config.max_request_bytes,
        cluster_token: config.initial_cluster_token.clone(),
        client_tls: tls.client_out.clone(),
        quota: Quota::from_flag(config.quota_backend_bytes),
        disk_reserve: (config.disk_reserve_bytes > 0).then(|| DiskReserve {
            dir: config.data_dir.clone(),
            reserve_bytes: config.disk_reserve_bytes,
        }),
        auto_compaction: config.auto_compaction,
        bcrypt_cost: config.bcrypt_cost,
        auth_token_ttl: config.auth_token_ttl,
        client_cert_auth: config.client_tls.client_cert_auth,
        ..ServiceConfig::new(&config.data_dir)
    };
    let shared = Shared::new(sm.clone(), Arc::new(consensus), service_config);
    let me = Member {
        id: identity.member_id,
        name: config.name.clone(),
        peer_ur_ls: advertise_peer,
        client_ur_ls: advertise_client,
        is_learner: false,
    };
    let leader_changes = Arc::new(AtomicU64::new(0));
    tokio::spawn(count_leader_changes(node.metrics(), leader_changes.clone()));
    let observer = ClusterObserver::new(node.clone(), config.name.clone(), db_path.clone());
    let peer_round_trips = Arc::new(PeerRoundTrips::default());
    tokio::spawn(probe_peers(
        observer.clone(),
        peer_round_trips.clone(),
        PEER_PROBE_INTERVAL,
    ));
    let metrics = MemberMetrics {
        raft: node.metrics(),
        forward: forward_counters,
        store: Arc::downgrade(&sm),
        grpc: GrpcCounters::default(),
        leader_changes,
        observer,
        peer_round_trips,
        db_path,
        data_dir: config.data_dir.clone(),
        disk_reserve_bytes: config.disk_reserve_bytes,
    };
    let (stop, stop_rx) = oneshot::channel();
    let client_port = ClientPort {
        listeners: client_listeners
            .into_iter()
            .zip(tls.client_listeners)
            .collect(),
        http: http(metrics.clone()),
        grpc_counters: metrics.grpc.clone(),
    };
    let task = tokio::spawn(supervise(
        node,
        shared,
        client_port,
        me,
        metrics.db_path.clone(),
        stop_rx,
    ));
    Ok(RunningMember {
        identity,
        client_addrs,
        peer_addr,
        metrics,
        stop: Some(stop),
        task,
    })
}

async fn bind(url: &HttpUrl) -> Result<TcpListener, ServerError> {
    TcpListener::bind(url.authority())
        .await
        .map_err(|source| ServerError::Listen {
            url: url.to_string(),
            source,
        })
}

/// The runtime's configuration in etcd's terms: the Raft tick is one
/// heartbeat interval, and the election timeout is counted in those ticks.
/// Fast failover is on: Keel KV confirms every linearizable read with
/// ReadIndex and never trusts a lease, so the hint of a closed connection
/// costs nothing and replaces a killed leader within a few heartbeats.
/// Every other setting keeps the runtime's default.
fn node_config(
    config: &MemberConfig,
    identity: Identity,
    peer_addr: SocketAddr,
    advertise_addr: String,
) -> Result<Config, ServerError> {
    let election_ticks = (config.election_timeout.as_millis()
        / config.heartbeat_interval.as_millis().max(1))
    .min(u128::from(u32::MAX)) as u32;
    let mut node = Config::new(NodeId(identity.member_id), identity.cluster_id, peer_addr);
    node.advertise_addr = Some(advertise_addr);
    node.join = config.initial_cluster_state == ClusterState::Existing;
    node.force_new_cluster = config.force_new_cluster;
    node.tick_interval = config.heartbeat_interval;
    node.raft.heartbeat_ticks = 1;
    node.raft.election_ticks = election_ticks;
    node.raft.fast_failover = true;
    node.snapshot_entries = config.snapshot_count;
    node.request_timeout = config.request_timeout;
    node.validate()
        .map_err(|e| ServerError::Start(keel::StartError::Config(e)))?;
    Ok(node)
}

/// Serves until asked to stop, the node fails, or the member is removed;
/// then stops everything in order. How it ended is the first failure: a
/// store that cannot flush after its disk failed says less than the
/// failure itself.
async fn supervise(
    node: Node<RaftMachine>,
    shared: Arc<Shared<RaftConsensus>>,
    client_port: ClientPort,
    me: Member,
    db_path: PathBuf,
    stop: oneshot::Receiver<()>,
) -> Result<(), ServerError> {
    let (stop_clients, clients_stopped) = oneshot::channel::<()>();
    let mut server = tokio::spawn(serve_on(shared.clone(), client_port, me, async {
        let _ = clients_stopped.await;
    }));
    let outcome = tokio::select! {
        _ = stop => Ok(()),
        ended = wait_stopped_or_removed(&node, db_path) => ended,
        served = &mut server => match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ServerError::Serve(e)),
            Err(_) => Err(ServerError::Panicked),
        },
    };
    let _ = stop_clients.send(());
    if tokio::time::timeout(CLIENT_STOP_TIMEOUT, &mut server)
        .await
        .is_err()
    {
        server.abort();
    }
    let stopped = node.shutdown().await;
    let flushed = shared.sm.flush();
    if let Err(e) = &outcome {
        error!("{e}");
        if let Err(flush) = &flushed {
            warn!(error = %flush, "flushing the key-value store failed too");
        }
    }
    info!("member stopped");
    outcome?;
    flushed?;
    stopped.map_err(ServerError::Node)
}

/// Resolves when the node stops by itself (with why: a failed write to
/// this member's disk as a [`DiskFailure`] naming the store file at
/// `db_path` or the log file), or when a configuration without this
/// member applies: like etcd, a removed member stops rather than serve a
/// cluster it no longer belongs to.
async fn wait_stopped_or_removed(
    node: &Node<RaftMachine>,
    db_path: PathBuf,
) -> Result<(), ServerError> {
    let mut metrics = node.metrics();
    let mut was_member = false;
    loop {
        {
            let m = metrics.borrow_and_update();
            if let Some(reason) = &m.stopped {
                return Err(match DiskFailure::of(reason, db_path) {
                    Some(failure) => ServerError::DiskFailed(failure),
                    None => ServerError::Stopped(reason.clone()),
                });
            }
            let member = m.membership.contains(m.id);
            if was_member && !member && m.membership.node_count() > 0 {
                warn!("this member was removed from the cluster; stopping");
                return Err(ServerError::Removed);
            }
            was_member |= member;
        }
        if metrics.changed().await.is_err() {
            return Err(ServerError::NodeVanished);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member started with the default flags runs the runtime's own
    /// defaults: its heartbeat is the runtime's tick and its election
    /// timeout the core's default tick count, nothing restated here.
    #[test]
    fn a_default_member_runs_the_runtimes_default_timing() {
        let member = MemberConfig::new("n1", "/tmp/unused");
        let identity = Identity {
            member_id: 7,
            cluster_id: 9,
        };
        let peer: SocketAddr = "127.0.0.1:2380".parse().unwrap();
        let node = node_config(&member, identity, peer, "127.0.0.1:2380".into()).unwrap();
        let runtime = Config::new(NodeId(7), 9, peer);
        assert_eq!(node.tick_interval, runtime.tick_interval);
        let mut raft = runtime.raft.clone();
        raft.fast_failover = true;
        assert_eq!(node.raft, raft, "the runtime's core, with fast failover");
        assert_eq!(node.heartbeat_interval(), keel::HEARTBEAT_INTERVAL_DEFAULT);
        assert_eq!(node.election_timeout(), keel::ELECTION_TIMEOUT_DEFAULT);
        assert_eq!(node.snapshot_entries, runtime.snapshot_entries);
        assert_eq!(node.request_timeout, runtime.request_timeout);
    }
}
