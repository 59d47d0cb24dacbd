//! `etcdserverpb.Watch`: one bidirectional stream carries many watchers.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use super::{Credentials, Shared};
use crate::auth::Required;
use crate::consensus::Consensus;
use crate::error::KvError;
use crate::mvcc::KeyRange;
use crate::proto::etcdserverpb::watch_create_request::FilterType;
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::watch_server::Watch;
use crate::proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use crate::watch::{WatchReply, WatchSpec, Watcher, WatcherEnd};

/// Responses queued per stream before watchers wait for the client.
const STREAM_QUEUE_RESPONSES: usize = 128;
/// etcd's `clientv3.InvalidWatchID`: marks a stream-wide progress response.
const PROGRESS_WATCH_ID: i64 = -1;
/// The metadata key of etcd's require-leader option.
const REQUIRE_LEADER_KEY: &str = "hasleader";
/// Leader checks in a row without a leader before a require-leader stream
/// ends (etcd's `maxNoLeaderCnt`).
const NO_LEADER_CHECKS_MAX: u32 = 3;

pub struct WatchService<C> {
    shared: Arc<Shared<C>>,
}

impl<C> WatchService<C> {
    pub fn new(shared: Arc<Shared<C>>) -> Self {
        WatchService { shared }
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = WatchReply> + Send>>;

#[tonic::async_trait]
impl<C: Consensus> Watch for WatchService<C> {
    type WatchStream = ResponseStream;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let require_leader = requires_leader(request.metadata());
        let credentials = Credentials::of(&request);
        if require_leader && self.shared.consensus.info().leader_id.is_none() {
            return Err(KvError::NoLeader.into());
        }
        let replies = self.open(credentials, require_leader, request.into_inner());
        Ok(Response::new(Box::pin(replies)))
    }
}

impl<C: Consensus> WatchService<C> {
    /// Serves one client's stream of requests, for the gRPC call and for
    /// the JSON gateway's `/v3/watch` alike: the replies, which end when
    /// the requests end, when the replies are no longer read, or (with
    /// `require_leader`) once the member has had no leader for a while.
    pub(crate) fn open(
        &self,
        credentials: Credentials,
        require_leader: bool,
        inbound: impl Stream<Item = Result<WatchRequest, Status>> + Send + Unpin + 'static,
    ) -> ReceiverStream<WatchReply> {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE_RESPONSES);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let leader_lost = leader_lost(shared.clone(), require_leader);
            let mut stream = WatchStream {
                shared,
                credentials,
                out: tx,
                watchers: HashMap::new(),
                next_id: 0,
            };
            stream.serve(inbound, leader_lost).await;
            stream.stop_all();
        });
        ReceiverStream::new(rx)
    }
}

/// A gRPC code as grpc-go names it, for messages etcd formats with it.
fn go_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

/// Whether the client asked, with etcd's `hasleader: true` metadata
/// (clientv3's `WithRequireLeader`, which Kubernetes uses), that the stream
/// fail rather than go quiet while this member has no leader.
fn requires_leader(metadata: &MetadataMap) -> bool {
    metadata
        .get(REQUIRE_LEADER_KEY)
        .is_some_and(|v| v.as_bytes() == b"true")
}

/// Resolves once this member has seen no leader at
/// `NO_LEADER_CHECKS_MAX` checks in a row, one per
/// `leader_check_every` (an election timeout); never if the stream did not
/// ask. As in etcd, a stream outlives a short election: reconnecting costs
/// a client more than a late event.
async fn leader_lost<C: Consensus>(shared: Arc<Shared<C>>, required: bool) {
    if !required {
        return std::future::pending().await;
    }
    let mut without_leader = 0;
    loop {
        tokio::time::sleep(shared.config.leader_check_every).await;
        if shared.consensus.info().leader_id.is_some() {
            without_leader = 0;
        } else {
            without_leader += 1;
            if without_leader >= NO_LEADER_CHECKS_MAX {
                return;
            }
        }
    }
}

/// One client stream and its watchers.
struct WatchStream<C> {
    shared: Arc<Shared<C>>,
    out: mpsc::Sender<WatchReply>,
    watchers: HashMap<i64, (JoinHandle<()>, Arc<AtomicI64>)>,
    next_id: i64,
    /// Who opened the stream: each create looks its token up again, as
    /// etcd does, so a token that expired or was revoked stops new watches.
    credentials: Credentials,
}

impl<C: Consensus> WatchStream<C> {
    /// Serves the client's requests until it leaves (its requests end, or
    /// it stops reading the replies), or until `leader_lost` resolves:
    /// then the stream ends with etcd's no-leader error.
    async fn serve(
        &mut self,
        mut inbound: impl Stream<Item = Result<WatchRequest, Status>> + Unpin,
        leader_lost: impl Future<Output = ()>,
    ) {
        let mut leader_lost = std::pin::pin!(leader_lost);
        let out = self.out.clone();
        loop {
            let req = tokio::select! {
                req = inbound.next() => match req {
                    Some(Ok(req)) => req,
                    _ => return,
                },
                () = out.closed() => return,
                () = &mut leader_lost => {
                    let _ = self.out.send(Err(KvError::NoLeader.into())).await;
                    return;
                }
            };
            self.watchers.retain(|_, (task, _)| !task.is_finished());
            let sent = match req.request_union {
                Some(RequestUnion::CreateRequest(create)) => self.create(create).await,
                Some(RequestUnion::CancelRequest(cancel)) => self.cancel(cancel.watch_id).await,
                Some(RequestUnion::ProgressRequest(_)) => self.progress().await,
                None => true,
            };
            if !sent {
                return;
            }
        }
    }

    fn stop_all(&mut self) {
        for (task, _) in self.watchers.values() {
            task.abort();
        }
        self.watchers.clear();
    }

    async fn send(&self, response: WatchResponse) -> bool {
        self.out.send(Ok(response)).await.is_ok()
    }

    /// etcd's answer to a create it refuses: created and canceled at
    /// once, with no watch ID and `reason`.
    async fn refuse(&self, current: i64, reason: String) -> bool {
        self.send(WatchResponse {
            header: Some(self.shared.header(current)),
            watch_id: -1,
            created: true,
            canceled: true,
            cancel_reason: reason,
            ..Default::default()
        })
        .await
    }

    /// The ID a create gets, or why it gets none. As etcd's: IDs the
    /// server picks start at 0 and are never handed out twice on one
    /// stream, skipping any a client chose; a client's own choice must not
    /// be in use.
    fn assign_id(&mut self, requested: i64) -> Result<i64, &'static str> {
        match requested {
            0 => {
                while self.watchers.contains_key(&self.next_id) {
                    self.next_id += 1;
                }
                let id = self.next_id;
                self.next_id += 1;
                Ok(id)
            }
            // Replies with a negative ID are the stream's own (-1: a
            // progress report or a refusal); etcd would take one anyway.
            id if id < 0 => {
                Err("keel: a watch ID must not be negative (0 lets the server pick one)")
            }
            id if self.watchers.contains_key(&id) => {
                Err("mvcc: duplicate watch ID provided on the WatchStream")
            }
            id => Ok(id),
        }
    }

    async fn create(&mut self, mut req: WatchCreateRequest) -> bool {
        if req.key.is_empty() {
            // As etcd: an empty key is the smallest key, `\0`.
            req.key = Bytes::from_static(b"\0");
        }
        let current = self.shared.sm.store().position().revision;
        // etcd's order: permission, then the range, then the ID.
        if let Err(e) = self.admit(&req).await {
            // etcd refuses a watch it does not permit with the gRPC
            // error's text (as Go prints it) as the reason.
            let status = Status::from(e);
            let reason = format!(
                "rpc error: code = {} desc = {}",
                go_code_name(status.code()),
                status.message()
            );
            return self.refuse(current, reason).await;
        }
        let range = KeyRange::new(req.key.clone(), req.range_end.clone());
        if range.is_empty() {
            return self
                .refuse(current, "mvcc: watcher range is empty".into())
                .await;
        }
        let id = match self.assign_id(req.watch_id) {
            Ok(id) => id,
            Err(reason) => return self.refuse(current, reason.into()).await,
        };
        let header = Some(self.shared.header(current));
        let start = if req.start_revision > 0 {
            req.start_revision
        } else {
            current + 1
        };
        let spec = WatchSpec {
            id,
            range,
            prev_kv: req.prev_kv,
            no_put: req.filters.contains(&(FilterType::Noput as i32)),
            no_delete: req.filters.contains(&(FilterType::Nodelete as i32)),
            fragment: req.fragment,
            progress_every: req
                .progress_notify
                .then_some(self.shared.config.watch_progress_every),
        };
        // "created" must reach the client before any event of this watcher.
        if !self
            .send(WatchResponse {
                header,
                watch_id: id,
                created: true,
                ..Default::default()
            })
            .await
        {
            return false;
        }
        let watcher = Watcher::new(spec, start);
        let progress = watcher.progress();
        let shared = self.shared.clone();
        let out = self.out.clone();
        let task = tokio::spawn(async move {
            let header_shared = shared.clone();
            let end = watcher
                .run(shared.sm.clone(), out, move |rev| header_shared.header(rev))
                .await;
            if let WatcherEnd::Failed(e) = end {
                tracing::error!(error = %e, watch_id = id, "watcher failed");
            }
        });
        self.watchers.insert(id, (task, progress));
        true
    }

    /// Whether the stream's caller may read what `req` watches.
    async fn admit(&self, req: &WatchCreateRequest) -> Result<(), KvError> {
        let caller = self.shared.caller(&self.credentials).await?;
        self.shared
            .authorize(&caller, &Required::watch(&req.key, &req.range_end))
    }

    async fn cancel(&mut self, id: i64) -> bool {
        let Some((task, _)) = self.watchers.remove(&id) else {
            return true;
        };
        task.abort();
        let revision = self.shared.sm.store().position().revision;
        self.send(WatchResponse {
            header: Some(self.shared.header(revision)),
            watch_id: id,
            canceled: true,
            ..Default::default()
        })
        .await
    }

    /// Reports the revision every watcher of the stream has caught up to.
    async fn progress(&mut self) -> bool {
        let current = self.shared.sm.store().position().revision;
        let caught_up = self
            .watchers
            .values()
            .map(|(_, next)| next.load(Ordering::Acquire) - 1)
            .min()
            .unwrap_or(current)
            .min(current);
        self.send(WatchResponse {
            header: Some(self.shared.header(caught_up)),
            watch_id: PROGRESS_WATCH_ID,
            ..Default::default()
        })
        .await
    }
}
