//! [`Node`]: starting a node, and the handle an application calls.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use keel_raft::{LogIndex, Membership, MembershipChange, NodeId, Raft};
use keel_transport::{ConnectError, PeerChannel, PeerServices};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::applied::{AppliedIndex, ApplyEnded};
use crate::apply::{Applier, ApplyWorker, ReadFn};
use crate::apply_queue::{self, ApplyQueue, SharedWorker};
use crate::config::Config;
use crate::consistency::ReadConsistency;
use crate::driver::{Driver, Wiring};
use crate::error::{Error, InitializeError, PurgeError, SnapshotError, StartError, StopReason};
use crate::grpc::GrpcTransport;
use crate::histogram::LogTimings;
use crate::inbound::PeerInbox;
use crate::leader_changes::LeaderChanges;
use crate::metrics::Metrics;
use crate::node_loop::{ReadIndexWait, Request};
use crate::proposals::Responder;
use crate::restore::{Storage, restore};
use crate::state_machine::StateMachine;
use crate::storage;
use crate::transport::Transport;

/// A handle to a running node. Cheap to clone; the node stops when
/// [`Node::shutdown`] is called or every handle is dropped.
pub struct Node<S: StateMachine> {
    inner: Arc<Inner<S>>,
}

impl<S: StateMachine> Clone for Node<S> {
    fn clone(&self) -> Self {
        Node {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<S: StateMachine> {
    id: NodeId,
    addr: SocketAddr,
    requests: mpsc::Sender<Request<S>>,
    metrics: watch::Receiver<Metrics>,
    applied: Arc<AppliedIndex>,
    /// Addresses given at start (or read from an old data directory's
    /// address book), for members the configuration records none for.
    fallback_peers: BTreeMap<NodeId, String>,
    /// The same transport when it is gRPC's, which alone carries the
    /// application's peer services ([`Node::connect_peer`]).
    grpc: Option<GrpcTransport>,
    request_timeout: Duration,
    stop_reason: Arc<OnceLock<StopReason>>,
    tasks: Mutex<Option<Tasks>>,
}

struct Tasks {
    driver: JoinHandle<StopReason>,
    /// The gRPC peer server; other transports have none.
    server: Option<JoinHandle<()>>,
}

/// A node started but not yet serving its peers.
struct Launched<S: StateMachine> {
    node: Node<S>,
    inbox: PeerInbox,
    /// Fires when the node stops, for the peer server to stop too.
    stop_server: oneshot::Receiver<()>,
}

/// The addresses a node starts with: `given` for members (as
/// [`Node::start`]'s `peers`), `own` for this node in a new cluster's
/// configuration.
struct Peers {
    given: BTreeMap<NodeId, String>,
    own: Option<String>,
}

/// How long a stopping server may take to close its connections.
const SERVER_STOP_TIMEOUT: Duration = Duration::from_secs(2);

impl<S: StateMachine> Node<S> {
    /// Starts a node keeping its state under `data_dir`, listening on
    /// `config.listen_addr`.
    ///
    /// `peers` maps the ids of the other members to their addresses
    /// ("host:port"). On first start, unless `config.join` is set, the node
    /// bootstraps a new cluster whose voters are `peers` and this node,
    /// and whose configuration records their addresses (this node's own
    /// is its advertised address, [`Config::advertise_addr`], or the one
    /// it listens on); every founding member must be started with the
    /// same set, and with the address the others are given for it, so
    /// that every founder writes the same first entry. From then on the configuration, changed through the log,
    /// says where members are: later starts resume it from `data_dir`
    /// and use `peers` only for members it records no address for (a data
    /// directory written before configurations carried addresses).
    pub async fn start(
        config: Config,
        state_machine: S,
        data_dir: impl AsRef<Path>,
        peers: BTreeMap<NodeId, String>,
    ) -> Result<Node<S>, StartError> {
        config.validate()?;
        let storage = Storage::open(data_dir, &config)?;
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .map_err(|source| StartError::Listen {
                addr: config.listen_addr,
                source,
            })?;
        Node::start_with(config, state_machine, storage, peers, listener).await
    }

    /// Like [`Node::start`], with storage opened by the caller (e.g. an
    /// in-memory log) and a listener already bound.
    pub async fn start_with(
        config: Config,
        state_machine: S,
        storage: Storage,
        peers: BTreeMap<NodeId, String>,
        listener: TcpListener,
    ) -> Result<Node<S>, StartError> {
        Node::start_with_services(
            config,
            state_machine,
            storage,
            peers,
            listener,
            |_, none| none,
        )
        .await
    }

    /// Like [`Node::start_with`], and serves the application's own
    /// member-to-member services on the peer listener, next to Raft and
    /// behind the same cluster-identity check. `services` is called once,
    /// before the listener accepts anything, with the new node (for the
    /// services to hold) and an empty set to add them to. Other members
    /// call them through [`Node::connect_peer`].
    ///
    /// A service that holds a clone of the node keeps it running until
    /// [`Node::shutdown`], even once every other handle is dropped.
    pub async fn start_with_services(
        config: Config,
        state_machine: S,
        storage: Storage,
        peers: BTreeMap<NodeId, String>,
        listener: TcpListener,
        services: impl FnOnce(&Node<S>, PeerServices) -> PeerServices,
    ) -> Result<Node<S>, StartError> {
        config.validate()?;
        let addr = listener.local_addr()?;
        let advertise = config
            .advertise_addr
            .clone()
            .unwrap_or_else(|| addr.to_string());
        let grpc = GrpcTransport::new(config.transport_config(advertise.clone()));
        let launched = Node::launch(
            config,
            state_machine,
            storage,
            Peers {
                given: peers,
                own: Some(advertise),
            },
            addr,
            Some(grpc.clone()),
            |_| grpc.clone(),
        )?;
        let Launched {
            node,
            inbox,
            stop_server,
        } = launched;
        let services = services(&node, grpc.peer_services());
        let server = tokio::spawn(async move {
            let stop = async {
                let _ = stop_server.await;
            };
            if let Err(e) = grpc.serve_with(listener, inbox, services, stop).await {
                tracing::error!(error = %e, "the peer server failed");
            }
        });
        match node.tasks().as_mut() {
            Some(tasks) => tasks.server = Some(server),
            // A service shut the node down already.
            None => server.abort(),
        }
        Ok(node)
    }

    /// Starts a node on a transport of the caller's choice instead of
    /// gRPC, e.g. an [`InProcessNetwork`](crate::InProcessNetwork) for
    /// tests, with storage opened by the caller.
    ///
    /// `transport` is called once, before the node sends anything, with
    /// the inbox the transport must deliver peers' traffic to. `peers` are
    /// as for [`Node::start`], their addresses in whatever form the
    /// transport understands; this node's own address, for a new
    /// cluster's configuration, is [`Config::advertise_addr`] if set (a
    /// transport that routes by id needs none). No listener is bound: [`Node::addr`] is
    /// `config.listen_addr` as given, and [`Node::connect_peer`] fails
    /// with [`ConnectError::NotGrpc`] (application services ride on gRPC).
    pub async fn start_with_transport<T: Transport>(
        config: Config,
        state_machine: S,
        storage: Storage,
        peers: BTreeMap<NodeId, String>,
        transport: impl FnOnce(PeerInbox) -> T,
    ) -> Result<Node<S>, StartError> {
        config.validate()?;
        let addr = config.listen_addr;
        let peers = Peers {
            given: peers,
            own: config.advertise_addr.clone(),
        };
        let launched = Node::launch(config, state_machine, storage, peers, addr, None, transport)?;
        Ok(launched.node)
    }

    /// Everything a start does but serve peers: restores the state, starts
    /// the storage and apply threads and the driver over `transport`.
    fn launch<T: Transport>(
        config: Config,
        mut state_machine: S,
        mut storage: Storage,
        peers: Peers,
        addr: SocketAddr,
        grpc: Option<GrpcTransport>,
        transport: impl FnOnce(PeerInbox) -> T,
    ) -> Result<Launched<S>, StartError> {
        let own = peers.own.as_deref();
        let restored = restore(&mut storage, &config, &peers.given, own, &mut state_machine)?;
        let snapshot = restored.state.snapshot.clone();
        let raft = Raft::new(config.raft.clone(), restored.state)?;
        let fallback_peers = restored.peers;

        let (events_tx, events) = mpsc::unbounded_channel();
        let (storage_tx, storage_rx) = mpsc::channel(config.storage_queue_max);
        let (apply_tx, apply_rx) = mpsc::channel(config.apply_queue_max);
        let (requests_tx, requests) = mpsc::channel(config.request_queue_max);
        let (inbox_tx, inbox) = mpsc::channel(config.inbox_batches_max);
        let (stop_server, stop_server_rx) = oneshot::channel::<()>();
        let (metrics_tx, metrics) = watch::channel(Metrics::from_status(raft.status()));
        let snapshots = storage.snapshots;
        let peer_inbox = PeerInbox::new(inbox_tx, snapshots.clone());
        let transport = Arc::new(transport(peer_inbox.clone()));
        // The driver's first turn gives the transport the addresses the
        // configuration records; these fill the members it has none for.
        for (id, peer_addr) in &fallback_peers {
            if raft.membership().address(*id).is_none() {
                transport.set_peer(*id, peer_addr.clone());
            }
        }

        let id = config.raft.id;
        let log = storage.log;
        let storage_events = events_tx.clone();
        let storage_transport = transport.clone();
        // The storage thread sends through the transport, which may spawn
        // a peer's sender task on its first message.
        let runtime = tokio::runtime::Handle::current();
        let log_timings = Arc::new(LogTimings::default());
        let storage_timings = log_timings.clone();
        let storage_thread = std::thread::Builder::new()
            .name(format!("keel-storage-{id}"))
            .spawn(move || {
                let _runtime = runtime.enter();
                storage::run(
                    log,
                    storage_transport.as_ref(),
                    storage_rx,
                    storage_events,
                    storage_timings,
                )
            })?;
        let applied = Arc::new(AppliedIndex::new(snapshot.index));
        let applier = Applier::new(
            state_machine,
            restored.applied_through,
            &snapshot,
            config.snapshot_entries,
        );
        let worker = SharedWorker::new(ApplyWorker::new(
            applier,
            events_tx.clone(),
            snapshots.clone(),
            config.snapshots_kept,
            applied.clone(),
        ));
        let thread_worker = worker.clone();
        let apply_thread = std::thread::Builder::new()
            .name(format!("keel-apply-{id}"))
            .spawn(move || apply_queue::run(thread_worker, apply_rx))?;

        let stop_reason = Arc::new(OnceLock::new());
        let wiring = Wiring {
            transport: transport.clone(),
            snapshots,
            requests,
            inbox,
            events,
            events_tx,
            storage: storage_tx,
            apply: ApplyQueue::new(apply_tx, worker),
            threads: vec![storage_thread, apply_thread],
            metrics: metrics_tx,
            log_timings,
            stop_server,
            stop_reason: stop_reason.clone(),
        };
        let request_timeout = config.request_timeout;
        let driver = tokio::spawn(Driver::new(raft, config, wiring).run());
        let node = Node {
            inner: Arc::new(Inner {
                id,
                addr,
                requests: requests_tx,
                metrics,
                applied,
                fallback_peers,
                grpc,
                request_timeout,
                stop_reason,
                tasks: Mutex::new(Some(Tasks {
                    driver,
                    server: None,
                })),
            }),
        };
        Ok(Launched {
            node,
            inbox: peer_inbox,
            stop_server: stop_server_rx,
        })
    }

    fn tasks(&self) -> MutexGuard<'_, Option<Tasks>> {
        self.inner.tasks.lock().expect("task lock poisoned")
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// The address the node listens on (useful with port 0); on a node
    /// started with [`Node::start_with_transport`], which binds nothing,
    /// `Config::listen_addr` as given.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The address of member `id` (this node included) that the
    /// configuration in force records, e.g. to redirect a client to the
    /// leader named by [`Error::NotLeader`]; for a member it records none
    /// for, the address given at start, if any.
    pub fn peer_addr(&self, id: NodeId) -> Option<String> {
        let metrics = self.inner.metrics.borrow();
        let recorded = metrics.membership.address(id);
        recorded
            .or_else(|| self.inner.fallback_peers.get(&id).map(String::as_str))
            .map(str::to_owned)
    }

    /// A channel to member `id`'s peer listener, connected before it is
    /// returned, whose calls carry this node's identity: for calling the
    /// services members serve with [`Node::start_with_services`]. Callers
    /// keep it for reuse.
    ///
    /// # Errors
    /// [`ConnectError::NotGrpc`] on a node started with
    /// [`Node::start_with_transport`]; otherwise as
    /// [`keel_transport::Transport::connect`].
    pub async fn connect_peer(&self, id: NodeId) -> Result<PeerChannel, ConnectError> {
        match &self.inner.grpc {
            Some(grpc) => grpc.connect(id).await,
            None => Err(ConnectError::NotGrpc),
        }
    }

    /// Replicates `command` and returns the state machine's response to it
    /// once applied, as [`StateMachine::apply`] returned it. Only the
    /// leader accepts proposals.
    pub async fn propose(&self, command: impl Into<Bytes>) -> Result<S::Response, Error> {
        let (sender, answer) = oneshot::channel();
        self.request(Request::Propose {
            data: command.into(),
            responder: Responder::Command(sender),
        })?;
        answer.await.map_err(|_| self.stopped())?
    }

    /// Runs `f` against the state machine once it is fresh enough for
    /// `consistency`, and returns its result. `f` runs on the thread that
    /// applies entries, so a long `f` delays them.
    pub async fn read<R, F>(&self, consistency: ReadConsistency, f: F) -> Result<R, Error>
    where
        F: FnOnce(&S) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let read: ReadFn<S> = Box::new(move |sm: Result<&S, Error>| {
            let _ = tx.send(sm.map(f));
        });
        self.request(Request::Read { consistency, read })?;
        self.answer_within_timeout(rx).await
    }

    /// The index a linearizable read must observe: the leader's commit
    /// index when the read was asked, confirmed by a heartbeat round to a
    /// quorum, so that no other leader can have committed anything beyond
    /// it (ReadIndex, thesis §6.4). A follower asks the leader for it.
    ///
    /// It does *not* wait for this node's state machine: serve a read
    /// from state that has applied at least this index (e.g. once
    /// [`Metrics::applied_index`] reaches it), or call
    /// [`Node::ensure_linearizable`], which waits.
    ///
    /// # Errors
    /// [`Error::NotLeader`] when no leader is known,
    /// [`Error::LeadershipLost`] when leadership changed before the round
    /// was confirmed (retry), [`Error::Timeout`] when no quorum answered
    /// within the request timeout (e.g. a leader cut off from the others).
    pub async fn read_index(&self) -> Result<LogIndex, Error> {
        self.ask_read_index(ReadIndexWait::Confirmed).await
    }

    /// Waits until this node's state machine has applied every write
    /// acknowledged before the call: confirms a [`Node::read_index`] and
    /// returns it once applied here. State read from the state machine
    /// afterwards (through a handle the application kept, e.g. a shared
    /// database) is linearizable. [`Node::read`] with
    /// [`ReadConsistency::Linearizable`] does the same for a closure run
    /// on the state machine itself.
    ///
    /// # Errors
    /// As [`Node::read_index`]; a node that cannot reach a quorum fails or
    /// times out rather than vouching for stale state.
    pub async fn ensure_linearizable(&self) -> Result<LogIndex, Error> {
        self.ask_read_index(ReadIndexWait::Applied).await
    }

    async fn ask_read_index(&self, wait: ReadIndexWait) -> Result<LogIndex, Error> {
        let (reply, answer) = oneshot::channel();
        self.request(Request::ReadIndex { wait, reply })?;
        self.answer_within_timeout(answer).await
    }

    async fn answer_within_timeout<R>(
        &self,
        answer: oneshot::Receiver<Result<R, Error>>,
    ) -> Result<R, Error> {
        match tokio::time::timeout(self.inner.request_timeout, answer).await {
            Ok(answer) => answer.map_err(|_| self.stopped())?,
            Err(_) => Err(Error::Timeout),
        }
    }

    /// Snapshots the state machine now rather than when
    /// [`Config::snapshot_entries`] entries have been applied since the
    /// last snapshot, and returns the index it covers once it is stored:
    /// every entry applied before the call, at least. The log is compacted
    /// behind it as after any snapshot, and the snapshot policy counts from
    /// it. For example before a backup, or to shorten the log a restart
    /// replays after a burst of writes.
    ///
    /// A snapshot still being written finishes first (applying pauses
    /// meanwhile). No request timeout applies: writing a large state
    /// takes as long as it takes.
    ///
    /// # Errors
    /// [`SnapshotError::Node`] when the node does not take the request
    /// ([`Error::Overloaded`], [`Error::Stopped`]: the state machine's
    /// `snapshot` failing stops the node), [`SnapshotError::Write`] when
    /// the store could not write it (the node goes on).
    pub async fn trigger_snapshot(&self) -> Result<LogIndex, SnapshotError> {
        let (reply, answer) = oneshot::channel();
        self.request(Request::Snapshot { reply })?;
        answer.await.map_err(|_| self.stopped())?
    }

    /// Founds a new cluster whose voters are `members` (each id with its
    /// address, which the configuration records), on a node started
    /// without one ([`Config::join`]), and returns once that configuration
    /// is durable here. The node then campaigns and, elected, replicates
    /// the configuration to the other members like any entry, so calling
    /// this on one founding member is enough; the others are started
    /// uninitialized too and learn it from the leader, reaching it first
    /// at the address given as `peers` when they were started (or, over
    /// gRPC, the one its traffic announces). Calling it on several, or
    /// again, with the same members is harmless (the configuration is
    /// already in force: `Ok`).
    ///
    /// Every call, on every member, must name the same members and
    /// addresses: two members founding different clusters would write
    /// different first entries, which Raft cannot reconcile. Each member refuses a set
    /// other than the one it holds, but only the caller can keep two
    /// members from founding different clusters at the same moment.
    ///
    /// # Errors
    /// [`InitializeError::Refused`] when the node already belongs to a
    /// cluster of other members, holds another cluster's log, or is not
    /// among `members` (nothing is written); [`InitializeError::Members`]
    /// for an empty set, node 0 or an empty or overlong address;
    /// [`InitializeError::Node`] when the node does not take the request.
    pub async fn initialize(
        &self,
        members: impl IntoIterator<Item = (NodeId, String)>,
    ) -> Result<(), InitializeError> {
        let addresses: BTreeMap<NodeId, String> = members.into_iter().collect();
        let membership =
            Membership::new(addresses.keys().copied(), [])?.with_addresses(addresses)?;
        let (reply, answer) = oneshot::channel();
        self.request(Request::Initialize { membership, reply })?;
        answer.await.map_err(|_| self.stopped())?
    }

    /// Discards the log through `upto` from the log store, and returns the
    /// index the log now starts after once that is durable. Only entries a
    /// stored snapshot covers can go — the log is the only record of the
    /// rest — so `upto` must not pass the newest snapshot this node took
    /// or received ([`Node::trigger_snapshot`] takes one); a snapshot
    /// covers only applied entries, so nothing unapplied goes either.
    ///
    /// The node compacts its log by itself, one snapshot behind the
    /// newest, so that a follower that fell a little behind catches up
    /// from the log rather than by a snapshot transfer. Purging reaches
    /// further, up to the newest snapshot, e.g. to free disk at once or
    /// before copying a data directory; a follower behind it is then sent
    /// the snapshot. Asking for less than is already purged changes
    /// nothing and returns the index already purged to.
    ///
    /// [`Metrics::first_index`] is the log the node holds in memory, which
    /// follows only once `upto` reaches the newest snapshot: short of it,
    /// only the log store's copy goes.
    ///
    /// # Errors
    /// [`PurgeError::NotCovered`] when `upto` is past the newest stored
    /// snapshot (nothing is discarded), [`PurgeError::Node`] when the node
    /// does not take the request.
    pub async fn purge_log(&self, upto: LogIndex) -> Result<LogIndex, PurgeError> {
        let (reply, answer) = oneshot::channel();
        self.request(Request::PurgeLog { upto, reply })?;
        answer.await.map_err(|_| self.stopped())?
    }

    /// Adds node `id`, reachable at `addr`, as a learner: it receives the
    /// log but does not vote. The address travels in the configuration
    /// entry, so every member (and every later one) knows it. Promote it
    /// with [`MembershipChange::Promote`] once it has caught up.
    pub async fn add_learner(&self, id: NodeId, addr: impl Into<String>) -> Result<(), Error> {
        let addr = Some(addr.into());
        self.change_membership(MembershipChange::AddLearner { id, addr })
            .await
    }

    /// Changes the configuration, one server at a time or through a joint
    /// configuration; returns once the change is applied here. A joint
    /// configuration is left automatically once it commits.
    pub async fn change_membership(&self, change: MembershipChange) -> Result<(), Error> {
        let (sender, answer) = oneshot::channel();
        let responder = Responder::Change(sender);
        self.request(Request::ChangeMembership { change, responder })?;
        answer.await.map_err(|_| self.stopped())?
    }

    /// Hands leadership to `target` and waits until it leads.
    pub async fn transfer_leader(&self, target: NodeId) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.request(Request::TransferLeader { target, reply })?;
        answer.await.map_err(|_| self.stopped())??;
        self.wait_for(self.inner.request_timeout, |m| m.leader == Some(target))
            .await
            .map(|_| ())
    }

    /// The node's latest metrics.
    pub fn status(&self) -> Metrics {
        self.inner.metrics.borrow().clone()
    }

    /// A watch of the node's metrics, updated every tick and on every
    /// change of role, term or leader. On the leader, [`Metrics::peers`]
    /// holds each follower's match index and lag in entries.
    pub fn metrics(&self) -> watch::Receiver<Metrics> {
        self.inner.metrics.clone()
    }

    /// The changes of term and leader this node sees from now on; see
    /// [`LeaderChanges`] for what a slow reader misses.
    pub fn leader_changes(&self) -> LeaderChanges {
        LeaderChanges::new(self.metrics())
    }

    /// Waits until this node's state machine has applied the entry at
    /// `index`, for at most `timeout`: e.g. to answer a write another
    /// member proposed only once this member's own reads reflect it.
    ///
    /// Woken by the apply thread itself, once, rather than by the metrics
    /// (one driver turn later, and waking every [`Node::wait_for`] waiter).
    pub async fn wait_applied(&self, index: LogIndex, timeout: Duration) -> Result<(), Error> {
        match tokio::time::timeout(timeout, self.inner.applied.wait(index)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(ApplyEnded)) => Err(self.stopped()),
            Err(_) => Err(Error::Timeout),
        }
    }

    /// Waits until the metrics satisfy `condition`, for at most `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&Metrics) -> bool,
    ) -> Result<Metrics, Error> {
        let mut metrics = self.metrics();
        let wait = metrics.wait_for(|m| condition(m) || m.stopped.is_some());
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(m)) if m.stopped.is_none() => Ok(m.clone()),
            Ok(_) => Err(self.stopped()),
            Err(_) => Err(Error::Timeout),
        }
    }

    /// Stops the node gracefully: peers are refused, writes already handed
    /// to storage complete, committed entries are applied and answered,
    /// and other pending requests fail with [`Error::Stopped`]. Returns an
    /// error if the node had already stopped because of a failure.
    pub async fn shutdown(&self) -> Result<(), Error> {
        // A full queue must not keep the node from stopping.
        let _ = self.inner.requests.send(Request::Shutdown).await;
        let tasks = self.tasks().take();
        if let Some(Tasks { driver, server }) = tasks {
            let _ = driver.await;
            if let Some(server) = server {
                stop_server(server).await;
            }
        }
        match self.inner.stop_reason.get() {
            None | Some(StopReason::Shutdown) => Ok(()),
            Some(reason) => Err(Error::Stopped(reason.clone())),
        }
    }

    fn request(&self, request: Request<S>) -> Result<(), Error> {
        self.inner.requests.try_send(request).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Error::Overloaded,
            mpsc::error::TrySendError::Closed(_) => self.stopped(),
        })
    }

    fn stopped(&self) -> Error {
        let reason = self.inner.stop_reason.get().cloned();
        Error::Stopped(reason.unwrap_or(StopReason::Shutdown))
    }
}

/// Waits for the peer server, which the stopped driver told to stop, to
/// close its connections, and aborts it past [`SERVER_STOP_TIMEOUT`].
async fn stop_server(mut server: JoinHandle<()>) {
    if tokio::time::timeout(SERVER_STOP_TIMEOUT, &mut server)
        .await
        .is_err()
    {
        // Aborting only asks; awaiting the handle returns once the task
        // is dropped, and with it the listener, so the caller may start a
        // node on the same address at once.
        server.abort();
        let _ = server.await;
    }
}
