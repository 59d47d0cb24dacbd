//! The state machine's applied index, told by the apply thread straight to
//! whoever waits for a given index.
//!
//! A caller that must not answer before this node applied an entry (Keel
//! KV's follower, answering a write the leader applied, so that its own
//! serializable reads already see it) could watch the node's metrics, but
//! those are published by the driver after the apply thread reports, one
//! hop later, and every publication wakes every watcher to re-check its
//! condition: with many writes waiting, most wake-ups are for nothing.
//! Here each waiter is woken once, by the thread that applied its entry.

use std::collections::BTreeMap;
use std::sync::Mutex;

use keel_raft::LogIndex;
use tokio::sync::oneshot;

/// The last index applied, and who waits for which later one.
#[derive(Debug)]
pub(crate) struct AppliedIndex {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    applied: LogIndex,
    /// Waiters by the index they wait for; dropped (so each sees its
    /// channel closed) once the apply thread ends.
    waiters: BTreeMap<LogIndex, Vec<oneshot::Sender<()>>>,
    ended: bool,
}

/// Why an index will not be applied on this node.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ApplyEnded;

impl AppliedIndex {
    /// Starts at `applied`, what the state machine holds when the node starts.
    pub(crate) fn new(applied: LogIndex) -> AppliedIndex {
        AppliedIndex {
            state: Mutex::new(State {
                applied,
                waiters: BTreeMap::new(),
                ended: false,
            }),
        }
    }

    /// Records that everything through `index` is applied and wakes the
    /// waiters it satisfies.
    pub(crate) fn advance(&self, index: LogIndex) {
        let satisfied = {
            let mut state = self.lock();
            state.applied = state.applied.max(index);
            let later = state
                .waiters
                .split_off(&LogIndex(index.0.saturating_add(1)));
            std::mem::replace(&mut state.waiters, later)
        };
        for sender in satisfied.into_values().flatten() {
            let _ = sender.send(());
        }
    }

    /// No more entries will be applied: every waiter, present and future,
    /// learns so.
    pub(crate) fn end(&self) {
        let mut state = self.lock();
        state.ended = true;
        state.waiters.clear();
    }

    /// Returns once `index` is applied, or fails once it cannot be.
    pub(crate) async fn wait(&self, index: LogIndex) -> Result<(), ApplyEnded> {
        let receiver = {
            let mut state = self.lock();
            if state.applied >= index {
                return Ok(());
            }
            if state.ended {
                return Err(ApplyEnded);
            }
            let (sender, receiver) = oneshot::channel();
            state.waiters.entry(index).or_default().push(sender);
            receiver
        };
        receiver.await.map_err(|_| ApplyEnded)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("applied index lock poisoned")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn index(i: u64) -> LogIndex {
        LogIndex(i)
    }

    #[tokio::test]
    async fn an_applied_index_needs_no_wait() {
        let applied = AppliedIndex::new(index(5));
        assert_eq!(applied.wait(index(5)).await, Ok(()));
        assert_eq!(applied.wait(index(3)).await, Ok(()));
    }

    #[tokio::test]
    async fn waiters_wake_when_their_index_is_applied_and_not_before() {
        let applied = std::sync::Arc::new(AppliedIndex::new(index(1)));
        let early = tokio::spawn({
            let applied = applied.clone();
            async move { applied.wait(index(3)).await }
        });
        let late = tokio::spawn({
            let applied = applied.clone();
            async move { applied.wait(index(7)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        applied.advance(index(4));
        assert_eq!(early.await.unwrap(), Ok(()));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!late.is_finished(), "index 7 is not applied yet");
        applied.advance(index(7));
        assert_eq!(late.await.unwrap(), Ok(()));
    }

    #[tokio::test]
    async fn the_applied_index_never_goes_back() {
        let applied = AppliedIndex::new(index(1));
        applied.advance(index(9));
        applied.advance(index(4));
        assert_eq!(applied.wait(index(9)).await, Ok(()));
    }

    #[tokio::test]
    async fn waiters_fail_once_applying_ends() {
        let applied = std::sync::Arc::new(AppliedIndex::new(index(1)));
        let waiting = tokio::spawn({
            let applied = applied.clone();
            async move { applied.wait(index(2)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        applied.end();
        assert_eq!(waiting.await.unwrap(), Err(ApplyEnded));
        assert_eq!(applied.wait(index(2)).await, Err(ApplyEnded));
        assert_eq!(applied.wait(index(1)).await, Ok(()));
    }
}
