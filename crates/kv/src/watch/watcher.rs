//! One watcher: follows the applied revision and sends its client every
//! matching event exactly once, in revision order.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use prost::Message;
use tokio::sync::mpsc;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tonic::Status;

use crate::error::KvError;
use crate::mvcc::KeyRange;
use crate::proto::etcdserverpb::{ResponseHeader, WatchResponse};
use crate::proto::mvccpb::{Event, event::EventType};
use crate::state_machine::KvStateMachine;

/// How many events one read of the store's history returns at most.
const HISTORY_BATCH_EVENTS_MAX: usize = 1000;
/// A fragmenting watcher splits responses larger than this.
const RESPONSE_BYTES_MAX: usize = 1536 * 1024;

/// What a watch stream sends its client: a response, or the error that
/// ends the stream.
pub type WatchReply = Result<WatchResponse, Status>;

/// Waits for the next tick of `clock`, or forever without one.
async fn tick(clock: &mut Option<Interval>) {
    match clock {
        Some(clock) => {
            clock.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// What a client asked to watch.
#[derive(Clone, Debug)]
pub struct WatchSpec {
    pub id: i64,
    pub range: KeyRange,
    pub prev_kv: bool,
    pub no_put: bool,
    pub no_delete: bool,
    pub fragment: bool,
    /// The period of progress notifications: a watcher that sent no events
    /// during one gets an empty response naming the revision it reached.
    pub progress_every: Option<Duration>,
}

/// Why a watcher stopped.
#[derive(Debug)]
pub enum WatcherEnd {
    /// Its next revision was compacted away; the client was told.
    Compacted,
    /// The client's stream is gone.
    ClientGone,
    /// Reading the store failed.
    Failed(KvError),
}

/// A watcher's position, shared with its stream for progress reports.
pub struct Watcher {
    pub spec: WatchSpec,
    /// The next revision this watcher owes its client.
    next_revision: Arc<AtomicI64>,
}

impl Watcher {
    pub fn new(spec: WatchSpec, next_revision: i64) -> Watcher {
        Watcher {
            spec,
            next_revision: Arc::new(AtomicI64::new(next_revision)),
        }
    }

    /// The position handle: every revision below it has been sent.
    pub fn progress(&self) -> Arc<AtomicI64> {
        self.next_revision.clone()
    }

    /// Delivers events until the client leaves or history is compacted.
    pub async fn run(
        self,
        sm: Arc<KvStateMachine>,
        out: mpsc::Sender<WatchReply>,
        header: impl Fn(i64) -> ResponseHeader,
    ) -> WatcherEnd {
        let mut announced = sm.hub().subscribe();
        // etcd's rule: at every tick of the progress clock, a watcher that
        // sent no events since the previous tick gets a progress
        // notification. A clock restarted by every new revision would never
        // tick for a quiet range on a busy cluster.
        let mut progress_clock = self.spec.progress_every.map(|every| {
            let mut clock = tokio::time::interval_at(Instant::now() + every, every);
            clock.set_missed_tick_behavior(MissedTickBehavior::Skip);
            clock
        });
        let mut sent_since_tick = false;
        loop {
            let current = *announced.borrow_and_update();
            let next = self.next_revision.load(Ordering::Acquire);
            if next <= current {
                let events = match self.fetch(&sm, next, current).await {
                    Ok(batch) => batch,
                    Err(KvError::Compacted) => {
                        let compacted = sm.store().position().compacted_revision;
                        // etcd 3.4's shape: no revision in the header and
                        // no reason; clients read `compact_revision`.
                        let _ = out
                            .send(Ok(WatchResponse {
                                header: Some(header(0)),
                                watch_id: self.spec.id,
                                canceled: true,
                                compact_revision: compacted,
                                ..Default::default()
                            }))
                            .await;
                        return WatcherEnd::Compacted;
                    }
                    Err(e) => return WatcherEnd::Failed(e),
                };
                let (events, upto) = events;
                if !events.is_empty() {
                    if !self.send(&out, events, header(upto)).await {
                        return WatcherEnd::ClientGone;
                    }
                    sent_since_tick = true;
                }
                self.next_revision.store(upto + 1, Ordering::Release);
                continue;
            }
            tokio::select! {
                changed = announced.changed() => {
                    if changed.is_err() {
                        return WatcherEnd::ClientGone;
                    }
                }
                _ = tick(&mut progress_clock) => {
                    if !sent_since_tick {
                        // Caught up through `next - 1`, and nothing owed.
                        let progress = WatchResponse {
                            header: Some(header(next - 1)),
                            watch_id: self.spec.id,
                            ..Default::default()
                        };
                        if out.send(Ok(progress)).await.is_err() {
                            return WatcherEnd::ClientGone;
                        }
                    }
                    sent_since_tick = false;
                }
                _ = out.closed() => return WatcherEnd::ClientGone,
            }
        }
    }

    /// The matching events of `from..=to` (or a prefix of that range, made of
    /// whole revisions) and the last revision they cover.
    async fn fetch(
        &self,
        sm: &Arc<KvStateMachine>,
        from: i64,
        to: i64,
    ) -> Result<(Vec<Event>, i64), KvError> {
        // The window may still hold compacted revisions; etcd refuses them.
        if from < sm.store().position().compacted_revision {
            return Err(KvError::Compacted);
        }
        if let Some(recent) = sm.hub().recent(from, to) {
            let events = recent
                .iter()
                .flat_map(|(_, events)| events.iter())
                .filter_map(|e| self.accept(e.clone()))
                .collect();
            return Ok((events, to));
        }
        // A catch-up may read every row since `from`: on a blocking thread,
        // not on one of the runtime's few workers (`Shared::read_store`).
        let (store, range) = (sm.clone(), self.spec.range.clone());
        let history = tokio::task::spawn_blocking(move || {
            store
                .store()
                .history(from, to, &range, HISTORY_BATCH_EVENTS_MAX)
        })
        .await
        .map_err(|_| KvError::Stopped)??;
        let upto = if history.len() >= HISTORY_BATCH_EVENTS_MAX {
            history
                .last()
                .and_then(|e| e.kv.as_ref())
                .map_or(to, |kv| kv.mod_revision)
        } else {
            to
        };
        Ok((
            history.into_iter().filter_map(|e| self.accept(e)).collect(),
            upto,
        ))
    }

    fn accept(&self, mut event: Event) -> Option<Event> {
        let key = &event.kv.as_ref()?.key;
        if !self.spec.range.contains(key) {
            return None;
        }
        let is_put = event.r#type == EventType::Put as i32;
        if (is_put && self.spec.no_put) || (!is_put && self.spec.no_delete) {
            return None;
        }
        if !self.spec.prev_kv {
            event.prev_kv = None;
        }
        Some(event)
    }

    /// Sends events, split into fragments if the client allows it and they
    /// are large. Returns false when the client is gone.
    async fn send(
        &self,
        out: &mpsc::Sender<WatchReply>,
        events: Vec<Event>,
        header: ResponseHeader,
    ) -> bool {
        let mut chunks: Vec<Vec<Event>> = vec![Vec::new()];
        let mut bytes = 0;
        for event in events {
            let size = event.encoded_len();
            let last = chunks.last_mut().expect("never empty");
            if self.spec.fragment && !last.is_empty() && bytes + size > RESPONSE_BYTES_MAX {
                chunks.push(vec![event]);
                bytes = size;
            } else {
                last.push(event);
                bytes += size;
            }
        }
        let n = chunks.len();
        for (i, events) in chunks.into_iter().enumerate() {
            let response = WatchResponse {
                header: Some(header),
                watch_id: self.spec.id,
                fragment: i + 1 < n,
                events,
                ..Default::default()
            };
            if out.send(Ok(response)).await.is_err() {
                return false;
            }
        }
        true
    }
}
