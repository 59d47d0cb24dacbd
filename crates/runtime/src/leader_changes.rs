//! [`LeaderChanges`]: the changes of leader one node sees, as a stream
//! drawn from its metrics watch.

use keel_raft::{NodeId, Term};
use tokio::sync::watch;

use crate::metrics::Metrics;

/// Who leads which term, as one node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderChange {
    /// The node's current term.
    pub term: Term,
    /// The leader of `term`; `None` while the node knows of none (an
    /// election is under way, or it lost touch with the leader).
    pub leader: Option<NodeId>,
}

impl LeaderChange {
    fn of(metrics: &Metrics) -> LeaderChange {
        LeaderChange {
            term: metrics.term,
            leader: metrics.leader,
        }
    }
}

/// The leader changes a node sees, from [`crate::Node::leader_changes`].
///
/// It is drawn from the node's metrics, which the node publishes on every
/// change of term or leader: each change is returned once, in order, and
/// terms never decrease. A reader slower than the changes skips to the
/// latest one rather than queueing them up, so memory stays bounded and
/// what it sees last is always the node's current view.
pub struct LeaderChanges {
    metrics: watch::Receiver<Metrics>,
    current: LeaderChange,
}

impl LeaderChanges {
    pub(crate) fn new(mut metrics: watch::Receiver<Metrics>) -> LeaderChanges {
        let current = LeaderChange::of(&metrics.borrow_and_update());
        LeaderChanges { metrics, current }
    }

    /// The last change returned, or the view when the stream was made.
    pub fn current(&self) -> LeaderChange {
        self.current
    }

    /// Waits for the next change of term or leader after
    /// [`LeaderChanges::current`]; `None` once the node has stopped.
    pub async fn next(&mut self) -> Option<LeaderChange> {
        let current = self.current;
        let seen = self
            .metrics
            .wait_for(|m| m.stopped.is_some() || LeaderChange::of(m) != current)
            .await
            .ok()?;
        if seen.stopped.is_some() {
            return None;
        }
        self.current = LeaderChange::of(&seen);
        Some(self.current)
    }
}
