//! The watch hub: a bounded window of recent revisions' events, and a
//! signal that the applied revision moved.
//!
//! Watchers *pull*: each remembers the next revision it owes its client and
//! reads from the window, or from the store's history when the window no
//! longer reaches back that far. A slow watcher therefore never loses or
//! duplicates events, and never makes the hub buffer without bound.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::proto::mvccpb::Event;

/// How many revisions the in-memory window keeps.
const WINDOW_REVISIONS_MAX: usize = 4096;

/// The events of one revision.
pub type RevisionEvents = (i64, Arc<Vec<Event>>);

struct Window {
    revisions: VecDeque<RevisionEvents>,
    /// Every revision `>= covered_from` that has events is in `revisions`.
    covered_from: i64,
}

/// Where applied events meet watchers.
pub struct WatchHub {
    window: Mutex<Window>,
    revision: watch::Sender<i64>,
}

impl WatchHub {
    /// A hub for a store whose current revision is `revision`.
    pub fn new(revision: i64) -> WatchHub {
        WatchHub {
            window: Mutex::new(Window {
                revisions: VecDeque::new(),
                covered_from: revision + 1,
            }),
            revision: watch::Sender::new(revision),
        }
    }

    /// Records the events of `revision`. Called in revision order, before
    /// [`WatchHub::advance`] announces it.
    pub fn publish(&self, revision: i64, events: Vec<Event>) {
        let mut w = self.window.lock().expect("hub lock poisoned");
        debug_assert!(w.revisions.back().is_none_or(|(r, _)| *r < revision));
        w.revisions.push_back((revision, Arc::new(events)));
        while w.revisions.len() > WINDOW_REVISIONS_MAX {
            let (dropped, _) = w.revisions.pop_front().expect("window is not empty");
            w.covered_from = dropped + 1;
        }
    }

    /// Whether anyone is subscribed (a watcher, or a lock or election
    /// waiting on the store): if not, nobody reads the window, and an
    /// apply may skip building events (see [`WatchHub::skip`]).
    pub fn has_subscribers(&self) -> bool {
        self.revision.receiver_count() > 0
    }

    /// Records that revisions through `revision` were applied without
    /// their events: the window no longer covers them, and a watcher that
    /// subscribes later reads them from the store. Called, like
    /// [`WatchHub::publish`], before [`WatchHub::advance`] announces them.
    pub fn skip(&self, revision: i64) {
        let mut w = self.window.lock().expect("hub lock poisoned");
        w.revisions.clear();
        w.covered_from = w.covered_from.max(revision + 1);
    }

    /// Announces that the store reached `revision`.
    pub fn advance(&self, revision: i64) {
        self.revision.send_if_modified(|r| {
            let moved = *r != revision;
            *r = revision;
            moved
        });
    }

    /// Forgets the window after the store was replaced by a snapshot:
    /// watchers then read what they miss from the restored store.
    pub fn reset(&self, revision: i64) {
        let mut w = self.window.lock().expect("hub lock poisoned");
        w.revisions.clear();
        w.covered_from = revision + 1;
        drop(w);
        self.revision.send_replace(revision);
    }

    /// A receiver that wakes when the applied revision moves.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.revision.subscribe()
    }

    /// The newest announced revision.
    pub fn revision(&self) -> i64 {
        *self.revision.borrow()
    }

    /// The events of revisions `from..=to` if the window still covers
    /// `from`; `None` sends the caller to the store.
    pub fn recent(&self, from: i64, to: i64) -> Option<Vec<RevisionEvents>> {
        let w = self.window.lock().expect("hub lock poisoned");
        if from < w.covered_from {
            return None;
        }
        let start = w.revisions.partition_point(|(r, _)| *r < from);
        Some(
            w.revisions
                .range(start..)
                .take_while(|(r, _)| *r <= to)
                .cloned()
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_covers_recent_revisions_only() {
        let hub = WatchHub::new(0);
        for rev in 1..=(WINDOW_REVISIONS_MAX as i64 + 10) {
            hub.publish(rev, Vec::new());
        }
        assert!(hub.recent(5, 20).is_none());
        let tail = hub
            .recent(WINDOW_REVISIONS_MAX as i64 + 5, i64::MAX)
            .unwrap();
        assert_eq!(tail.len(), 6);
    }

    #[test]
    fn skipped_revisions_are_not_covered() {
        let hub = WatchHub::new(0);
        assert!(!hub.has_subscribers());
        hub.publish(1, Vec::new());
        hub.skip(3);
        assert!(hub.recent(1, 3).is_none());
        assert!(hub.recent(3, 3).is_none());
        hub.publish(4, Vec::new());
        assert_eq!(hub.recent(4, 4).unwrap().len(), 1);
        let _subscribed = hub.subscribe();
        assert!(hub.has_subscribers());
    }
}
