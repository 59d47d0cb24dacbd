//! What a leader knows about each follower's log, and how it replicates to
//! it. All transitions between the three states live in this file: the
//! fields are private, and the leader changes a follower's record only
//! through methods named after what happened.

use crate::types::LogIndex;

/// How the leader is currently replicating to one follower.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// The follower's log position is unknown: send one AppendEntries at a
    /// time and wait for the answer, backing off on conflict (§5.3).
    Probe {
        /// A probe is outstanding; wait for a response or a heartbeat reply.
        paused: bool,
    },
    /// The follower is known to match: stream entries optimistically,
    /// bounded by the in-flight window (pipelining).
    Replicate {
        /// The AppendEntries sent and not yet acknowledged.
        inflight: Inflight,
    },
    /// The entries the follower needs were compacted: a snapshot covering
    /// `pending` is on its way (§7).
    Snapshot {
        /// The index the snapshot being sent covers.
        pending: LogIndex,
    },
}

/// The last index of each AppendEntries sent and not yet acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Inflight {
    last_indexes: std::collections::VecDeque<LogIndex>,
}

impl Inflight {
    pub(crate) fn len(&self) -> usize {
        self.last_indexes.len()
    }

    fn add(&mut self, last: LogIndex) {
        self.last_indexes.push_back(last);
    }

    /// Frees every message whose entries are all acknowledged.
    fn free_through(&mut self, index: LogIndex) {
        while self.last_indexes.front().is_some_and(|&l| l <= index) {
            self.last_indexes.pop_front();
        }
    }
}

/// The leader's record of one follower.
///
/// Invariant: `match_index < next_index`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    match_index: LogIndex,
    next_index: LogIndex,
    state: ProgressState,
    /// Heard from since the last check-quorum round (§6.2).
    recent_active: bool,
    /// The last heartbeat round this follower answered; confirms leadership
    /// for reads and leases.
    acked_round: u64,
}

impl Progress {
    /// A follower about which nothing is known yet; probing starts at the
    /// leader's last index + 1.
    pub(crate) fn new(next_index: LogIndex) -> Progress {
        Progress {
            match_index: LogIndex(0),
            next_index,
            state: ProgressState::Probe { paused: false },
            recent_active: true,
            acked_round: 0,
        }
    }

    /// The highest index known to be replicated on the follower.
    pub fn match_index(&self) -> LogIndex {
        self.match_index
    }

    /// The index of the next entry to send the follower.
    pub fn next_index(&self) -> LogIndex {
        self.next_index
    }

    /// How the leader is replicating to the follower.
    pub fn state(&self) -> &ProgressState {
        &self.state
    }

    /// The last heartbeat round this follower answered.
    pub(crate) fn acked_round(&self) -> u64 {
        self.acked_round
    }

    /// Whether the follower was heard from since the last check-quorum round.
    pub(crate) fn is_recently_active(&self) -> bool {
        self.recent_active
    }

    /// The follower answered something: it is alive for check-quorum.
    pub(crate) fn heard_from(&mut self) {
        self.recent_active = true;
    }

    /// A check-quorum round ended: the follower must be heard from again
    /// before the next one.
    pub(crate) fn start_activity_round(&mut self) {
        self.recent_active = false;
    }

    /// The follower answered heartbeat `round`. Answers may arrive out of
    /// order; the newest round answered is what counts.
    pub(crate) fn heartbeat_acked(&mut self, round: u64) {
        self.acked_round = self.acked_round.max(round);
    }

    /// Whether the leader should hold back new AppendEntries.
    pub(crate) fn is_paused(&self, max_inflight: usize) -> bool {
        match &self.state {
            ProgressState::Probe { paused } => *paused,
            ProgressState::Replicate { inflight } => inflight.len() >= max_inflight,
            ProgressState::Snapshot { .. } => true,
        }
    }

    /// Records an AppendEntries whose last entry is `last` (or which carries
    /// none, `last == next_index - 1`).
    pub(crate) fn sent(&mut self, last: LogIndex) {
        match &mut self.state {
            ProgressState::Probe { paused } => *paused = true,
            ProgressState::Replicate { inflight } => {
                if last >= self.next_index {
                    self.next_index = last.next();
                    inflight.add(last);
                }
            }
            ProgressState::Snapshot { .. } => unreachable!("nothing is sent while snapshotting"),
        }
        self.debug_check();
    }

    /// A heartbeat answer lets a paused probe try again, and frees one slot
    /// of a full pipeline: if those messages were lost, only sending again
    /// (and being rejected) reveals it.
    pub(crate) fn resume(&mut self, max_inflight: usize) {
        match &mut self.state {
            ProgressState::Probe { paused } => *paused = false,
            ProgressState::Replicate { inflight } if inflight.len() >= max_inflight => {
                inflight.last_indexes.pop_front();
            }
            _ => {}
        }
    }

    /// The follower holds everything up to `index`. Returns whether that is
    /// news. A probing or snapshotting follower that matched moves to
    /// `Replicate`.
    pub(crate) fn matched(&mut self, index: LogIndex) -> bool {
        let news = index > self.match_index;
        if news {
            self.match_index = index;
        }
        self.next_index = self.next_index.max(index.next());
        match &mut self.state {
            ProgressState::Probe { .. } => self.become_replicate(),
            ProgressState::Replicate { inflight } => inflight.free_through(index),
            ProgressState::Snapshot { pending } => {
                if self.match_index >= *pending {
                    self.become_replicate();
                }
            }
        }
        self.debug_check();
        news
    }

    /// The follower rejected an AppendEntries at `rejected`; move `next_index`
    /// back to `retry_at` and probe. Returns `false` for a stale rejection
    /// (one about entries already known to match, or from an earlier probe).
    pub(crate) fn rejected(&mut self, rejected: LogIndex, retry_at: LogIndex) -> bool {
        match self.state {
            ProgressState::Replicate { .. } => {
                if rejected <= self.match_index {
                    return false;
                }
            }
            ProgressState::Probe { .. } => {
                if rejected != self.next_index.prev() {
                    return false;
                }
            }
            ProgressState::Snapshot { .. } => return false,
        }
        self.next_index = retry_at.min(rejected).max(self.match_index.next());
        self.state = ProgressState::Probe { paused: false };
        self.debug_check();
        true
    }

    /// The transport could not reach the follower: messages in flight are
    /// probably lost, so stop streaming and probe from what it is known to
    /// hold. A follower already probing or receiving a snapshot is left as
    /// it is.
    pub(crate) fn unreachable(&mut self) {
        if matches!(self.state, ProgressState::Replicate { .. }) {
            self.become_probe();
        }
    }

    /// Probe from the entry after the last one known to match.
    fn become_probe(&mut self) {
        self.state = ProgressState::Probe { paused: false };
        self.next_index = self.match_index.next();
    }

    fn become_replicate(&mut self) {
        self.next_index = self.match_index.next();
        self.state = ProgressState::Replicate {
            inflight: Inflight::default(),
        };
    }

    /// The follower needs the snapshot at `index`.
    pub(crate) fn become_snapshot(&mut self, index: LogIndex) {
        self.state = ProgressState::Snapshot { pending: index };
    }

    /// The caller reports how sending the snapshot went. On failure the
    /// leader probes again, which will ask for a snapshot anew.
    pub(crate) fn snapshot_done(&mut self, success: bool) {
        if let ProgressState::Snapshot { pending } = self.state {
            if success {
                self.next_index = pending.next();
            }
            self.state = ProgressState::Probe { paused: success };
        }
        self.debug_check();
    }

    /// Checks the record's invariant after a transition: the next entry to
    /// send always lies after the last one known to match, or the leader
    /// would resend entries the follower acknowledged as if they were new.
    fn debug_check(&self) {
        debug_assert!(
            self.match_index < self.next_index,
            "progress invariant match < next broken: match {} next {}",
            self.match_index,
            self.next_index
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_pauses_until_an_answer() {
        let mut pr = Progress::new(LogIndex(5));
        assert!(!pr.is_paused(4));
        pr.sent(LogIndex(6));
        assert!(pr.is_paused(4));
        pr.resume(4);
        assert!(!pr.is_paused(4));
    }

    #[test]
    fn replicate_window_bounds_inflight_messages() {
        let mut pr = Progress::new(LogIndex(1));
        pr.matched(LogIndex(0));
        for last in 1..=3 {
            pr.sent(LogIndex(last));
        }
        assert!(pr.is_paused(3));
        assert_eq!(pr.next_index(), LogIndex(4));
        pr.matched(LogIndex(2));
        assert!(!pr.is_paused(3));
    }

    #[test]
    fn stale_rejections_are_ignored() {
        let mut pr = Progress::new(LogIndex(10));
        pr.sent(LogIndex(12));
        assert!(
            !pr.rejected(LogIndex(3), LogIndex(1)),
            "not the outstanding probe"
        );
        assert!(pr.rejected(LogIndex(9), LogIndex(4)));
        assert_eq!(pr.next_index(), LogIndex(4));
    }
}
