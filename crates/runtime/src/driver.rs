//! The driver task: the node loop's IO shell. It owns the [`NodeLoop`]
//! (which owns the Raft core) and connects it to the world: it reads the
//! monotonic clock, feeds the loop ticks, peer messages, requests and the
//! reports of the storage and apply threads, and executes the effects the
//! loop returns — messages to the transport, write batches to the storage
//! thread, apply ops to the apply thread, snapshots to publish and send.
//! What happens in which order is the loop's business (`node_loop.rs`);
//! this file only moves values between it and tokio.

use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use keel_raft::{Message, MessageBody, Raft, SnapshotMeta};
use keel_storage::{SnapshotStore, StagedSnapshot};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tracing::{debug, info, trace, warn};

use crate::apply::ApplyOp;
use crate::apply_queue::{ApplyQueue, Refused};
use crate::clock::Moment;
use crate::config::Config;
use crate::error::{Error, StopReason};
use crate::event::Event;
use crate::histogram::LogTimings;
use crate::inbound::Inbound;
use crate::metrics::Metrics;
use crate::node_loop::{Effect, Input, NodeLoop, Request};
use crate::snapshot::SnapshotSource;
use crate::state_machine::StateMachine;
use crate::storage::StorageOp;
use crate::transport::Transport;

/// The driver's connections to the rest of the node.
pub(crate) struct Wiring<S: StateMachine, T> {
    /// Generic rather than `dyn`: the driver calls it for every message.
    pub(crate) transport: Arc<T>,
    pub(crate) snapshots: Arc<dyn SnapshotStore>,
    pub(crate) requests: mpsc::Receiver<Request<S>>,
    pub(crate) inbox: mpsc::Receiver<Inbound>,
    pub(crate) events: mpsc::UnboundedReceiver<Event>,
    pub(crate) events_tx: mpsc::UnboundedSender<Event>,
    pub(crate) storage: mpsc::Sender<StorageOp>,
    pub(crate) apply: ApplyQueue<S>,
    pub(crate) threads: Vec<std::thread::JoinHandle<()>>,
    pub(crate) metrics: watch::Sender<Metrics>,
    /// Written by the storage thread, read when publishing metrics.
    pub(crate) log_timings: Arc<LogTimings>,
    pub(crate) stop_server: oneshot::Sender<()>,
    /// Set once, when the node stops; handles report it.
    pub(crate) stop_reason: Arc<OnceLock<StopReason>>,
}

pub(crate) struct Driver<S: StateMachine, T> {
    node: NodeLoop<S>,
    config: Config,
    io: Wiring<S, T>,
    /// The monotonic instant the loop's [`Moment::ZERO`] stands for.
    started: Instant,
    /// Leaders' snapshots received this turn, awaiting the loop's decision.
    staged: Vec<Box<dyn StagedSnapshot>>,
}

impl<S: StateMachine, T: Transport> Driver<S, T> {
    pub(crate) fn new(raft: Raft, config: Config, io: Wiring<S, T>) -> Driver<S, T> {
        Driver {
            node: NodeLoop::new(raft, config.clone(), read_id_origin()),
            started: Instant::now(),
            staged: Vec::new(),
            config,
            io,
        }
    }

    fn now(&self) -> Moment {
        Moment::since_start(self.started.elapsed())
    }

    /// Drives the node until shutdown or a fatal error, then stops it
    /// gracefully and returns why it stopped.
    pub(crate) async fn run(mut self) -> StopReason {
        let mut ticker = tokio::time::interval(self.config.tick_interval);
        // Missed firings need no burst: each firing gives the core every
        // tick of elapsed time (the loop's `TickClock`).
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let reason = loop {
            if let Err(reason) = self.turn(&mut ticker).await {
                break reason;
            }
            if self.node.stopping() {
                break StopReason::Shutdown;
            }
        };
        self.stop(reason).await
    }

    /// One turn: wait for input, take everything else already waiting
    /// (that is the batching), then execute the loop's effects.
    async fn turn(&mut self, ticker: &mut Interval) -> Result<(), StopReason> {
        tokio::select! {
            biased;
            Some(event) = self.io.events.recv() => self.on_event(event)?,
            Some(inbound) = self.io.inbox.recv() => self.on_inbound(inbound),
            _ = ticker.tick() => self.input(Input::Tick),
            request = self.io.requests.recv() => match request {
                Some(request) => self.input(Input::Request(request)),
                // Every handle was dropped.
                None => self.input(Input::Request(Request::Shutdown)),
            },
        }
        self.drain_waiting()?;
        loop {
            let effects = self.node.effects(self.now());
            if effects.is_empty() {
                break;
            }
            for effect in effects {
                self.execute(effect).await?;
            }
        }
        // Staged snapshots the loop did not publish were refused.
        self.staged.clear();
        if self.node.metrics_stale() {
            self.publish_metrics(None);
        }
        Ok(())
    }

    fn input(&mut self, input: Input<S>) {
        let now = self.now();
        self.node.handle(now, input);
    }

    fn drain_waiting(&mut self) -> Result<(), StopReason> {
        while let Ok(event) = self.io.events.try_recv() {
            self.on_event(event)?;
        }
        for _ in 0..self.config.inbox_batches_max {
            let Ok(inbound) = self.io.inbox.try_recv() else {
                break;
            };
            self.on_inbound(inbound);
        }
        for _ in 0..self.config.batch_requests_max {
            let Ok(request) = self.io.requests.try_recv() else {
                break;
            };
            self.input(Input::Request(request));
        }
        Ok(())
    }

    async fn execute(&mut self, effect: Effect<S>) -> Result<(), StopReason> {
        match effect {
            Effect::Send(m) => self.send(m),
            Effect::SendSnapshot(m) => {
                let io = &self.io;
                let task = send_snapshot(
                    io.transport.clone(),
                    io.snapshots.clone(),
                    m,
                    io.events_tx.clone(),
                );
                tokio::spawn(task);
            }
            Effect::PublishSnapshot(meta) => self.publish_staged(&meta).await?,
            Effect::Write(batch) => self.queue_storage(StorageOp::Write(batch)).await?,
            Effect::Compact { index, term } => {
                self.queue_storage(StorageOp::Compact { index, term })
                    .await?;
            }
            Effect::Apply(op) => self.queue_apply(op).await?,
            Effect::SetPeers(addresses) => {
                for (id, addr) in addresses {
                    self.io.transport.set_peer(id, addr);
                }
            }
        }
        Ok(())
    }

    /// Publishes the staged snapshot the loop accepted.
    async fn publish_staged(&mut self, meta: &SnapshotMeta) -> Result<(), StopReason> {
        let at = self
            .staged
            .iter()
            .position(|s| s.info().meta == *meta)
            .expect("the loop publishes only snapshots staged this turn");
        let staged = self.staged.swap_remove(at);
        let (store, keep) = (self.io.snapshots.clone(), self.config.snapshots_kept);
        tokio::task::spawn_blocking(move || crate::snapshot::publish(store.as_ref(), staged, keep))
            .await
            .map_err(|_| StopReason::ThreadEnded("snapshot publishing"))?
            .map_err(|e| StopReason::Storage(Arc::new(e)))?;
        Ok(())
    }

    fn on_event(&mut self, event: Event) -> Result<(), StopReason> {
        let input = match event {
            // The storage thread sent the batch's messages itself.
            Event::Persisted { seq, durable } => Input::Persisted {
                seq,
                durable,
                messages: Vec::new(),
            },
            Event::Applied(index) => Input::Applied(index),
            Event::SnapshotCreated(meta) => Input::SnapshotCreated(meta),
            Event::SnapshotSent { to, ok } => Input::SnapshotSent { to, ok },
            Event::Fatal(reason) => return Err(reason),
        };
        self.input(input);
        Ok(())
    }

    fn on_inbound(&mut self, inbound: Inbound) {
        match inbound {
            Inbound::Messages(messages) => self.input(Input::Messages(messages)),
            Inbound::Disconnected(peer) => self.input(Input::Disconnected(peer)),
            Inbound::SnapshotReady(ready) => {
                let (m, staged) = *ready;
                self.staged.push(staged);
                self.input(Input::SnapshotStaged(m));
            }
        }
    }

    fn send(&mut self, m: Message) {
        let to = m.to;
        let replicating = matches!(m.body, MessageBody::AppendEntries { .. });
        if let Err(e) = self.io.transport.send(m) {
            trace!(error = %e, "message dropped");
            if replicating {
                self.input(Input::Unreachable(to));
            }
        }
    }

    async fn queue_storage(&mut self, op: StorageOp) -> Result<(), StopReason> {
        if self.io.storage.send(op).await.is_err() {
            return Err(self.reason_thread_ended("storage"));
        }
        Ok(())
    }

    async fn queue_apply(&mut self, op: ApplyOp<S>) -> Result<(), StopReason> {
        match self.io.apply.push(op).await {
            Ok(()) => Ok(()),
            Err(Refused::ThreadEnded) => Err(self.reason_thread_ended("apply")),
            Err(Refused::Failed(reason)) => Err(reason),
        }
    }

    /// A thread that ended on its own reported why first; find it.
    fn reason_thread_ended(&mut self, thread: &'static str) -> StopReason {
        while let Ok(event) = self.io.events.try_recv() {
            if let Event::Fatal(reason) = event {
                return reason;
            }
        }
        StopReason::ThreadEnded(thread)
    }

    fn publish_metrics(&mut self, stopped: Option<&StopReason>) {
        let mut m = self.node.metrics();
        m.transport = self.io.transport.metrics();
        m.log_append = self.io.log_timings.append.snapshot();
        m.log_sync = self.io.log_timings.sync.snapshot();
        m.stopped = stopped.cloned();
        self.io.metrics.send_if_modified(|current| {
            let changed = *current != m;
            if changed {
                *current = m;
            }
            changed
        });
    }

    /// Graceful stop: refuse peers, let the storage thread finish every
    /// write already handed to it (so nothing acknowledged is lost), let the
    /// apply thread finish its queue (so committed proposals get their
    /// answers), and fail everything else.
    async fn stop(mut self, reason: StopReason) -> StopReason {
        info!(id = %self.node.raft().id(), %reason, "node stopping");
        let _ = self.io.stop_reason.set(reason.clone());
        self.node.fail_all(&Error::Stopped(reason.clone()));
        self.publish_metrics(Some(&reason));
        let Wiring {
            transport,
            storage,
            apply,
            threads,
            metrics,
            stop_server,
            ..
        } = self.io;
        let _ = stop_server.send(());
        transport.close();
        drop(storage);
        drop(apply);
        let joined =
            tokio::task::spawn_blocking(move || threads.into_iter().all(|t| t.join().is_ok()))
                .await;
        if !matches!(joined, Ok(true)) {
            warn!("a node thread panicked while stopping");
        }
        metrics.send_modify(|m| m.stopped = Some(reason.clone()));
        reason
    }
}

/// Streams the stored snapshot that `message` (an InstallSnapshot) names to
/// its recipient, then tells the driver how it went.
async fn send_snapshot<T: Transport>(
    transport: Arc<T>,
    store: Arc<dyn SnapshotStore>,
    message: Message,
    events: mpsc::UnboundedSender<Event>,
) {
    let to = message.to;
    let MessageBody::InstallSnapshot { meta } = &message.body else {
        unreachable!("the loop only emits InstallSnapshot messages as SendSnapshot")
    };
    let index = meta.index;
    let opened = tokio::task::spawn_blocking(move || store.open_reader(index)).await;
    let ok = match opened {
        Ok(Ok(reader)) => {
            let source = SnapshotSource::new(reader);
            match transport.send_snapshot(message, source).await {
                Ok(()) => {
                    debug!(%to, %index, "snapshot sent");
                    true
                }
                Err(e) => {
                    warn!(%to, %index, error = %e, "sending a snapshot failed; the leader will retry");
                    false
                }
            }
        }
        Ok(Err(e)) => {
            warn!(%to, %index, error = %e, "cannot open the snapshot to send");
            false
        }
        Err(e) => {
            warn!(%to, %index, error = %e, "opening the snapshot to send panicked");
            false
        }
    };
    let _ = events.send(Event::SnapshotSent { to, ok });
}

/// The first read id of this incarnation: the wall clock in nanoseconds.
/// It grows between restarts faster than any node issues reads (less than
/// one per nanosecond), so no incarnation reuses an id of an earlier one
/// unless the wall clock is set back by more than the node's uptime.
fn read_id_origin() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX / 2)
        })
}
