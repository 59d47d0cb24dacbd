//! Proposals waiting for their entry to be applied.
//!
//! The core answers a proposal with the `(term, index)` its entry got. The
//! proposal succeeded if and only if the entry applied at `index` has that
//! term; any other term there means another leader's entry replaced it.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use keel_raft::{LogIndex, Proposal, Term};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::error::Error;

/// Where a proposal's outcome goes: the state machine's response, or why
/// there is none.
pub(crate) type Responder = oneshot::Sender<Result<Bytes, Error>>;

struct Pending {
    term: Term,
    responder: Responder,
    /// When this node lost the leadership under which the proposal was
    /// made; from then on its fate is unknown until its index is applied.
    orphaned_at: Option<Instant>,
}

/// The proposals of this node, by index, and how the finished ones ended.
///
/// Invariant: at most `capacity` entries.
/// Invariant: every proposal inserted is counted exactly once, in
/// `committed` or `failed`, once it leaves `pending`.
pub(crate) struct Proposals {
    pending: BTreeMap<LogIndex, Pending>,
    capacity: usize,
    /// Since start: proposals whose entry committed with their term.
    committed: u64,
    /// Since start: proposals answered with an error after their entry
    /// was appended. Refusals before appending (not leader, overloaded)
    /// are routing and back-pressure, not failures of the log.
    failed: u64,
}

impl Proposals {
    pub(crate) fn new(capacity: usize) -> Proposals {
        Proposals {
            pending: BTreeMap::new(),
            capacity,
            committed: 0,
            failed: 0,
        }
    }

    pub(crate) fn committed(&self) -> u64 {
        self.committed
    }

    pub(crate) fn failed(&self) -> u64 {
        self.failed
    }

    /// Answers a proposal that left `pending` with `error`; every failure
    /// goes through here so that the count is complete.
    fn fail(&mut self, responder: Responder, error: Error) {
        self.failed += 1;
        let _ = responder.send(Err(error));
    }

    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.pending.len() >= self.capacity
    }

    pub(crate) fn insert(&mut self, proposal: Proposal, responder: Responder) {
        assert!(!self.is_full(), "caller checks capacity before proposing");
        let old = self.pending.insert(
            proposal.index,
            Pending {
                term: proposal.term,
                responder,
                orphaned_at: None,
            },
        );
        if let Some(old) = old {
            // A new leader term reused the index of an entry this node
            // proposed earlier and lost: that entry can no longer commit.
            self.fail(
                old.responder,
                Error::ProposalDropped {
                    index: proposal.index,
                },
            );
        }
    }

    /// The responder waiting for the entry `(index, term)`, which is about
    /// to be applied. A proposal at `index` from another term lost its
    /// place in the log and is told so.
    pub(crate) fn take_committed(&mut self, index: LogIndex, term: Term) -> Option<Responder> {
        let pending = self.pending.remove(&index)?;
        if pending.term == term {
            self.committed += 1;
            return Some(pending.responder);
        }
        self.fail(pending.responder, Error::ProposalDropped { index });
        None
    }

    /// This node stopped leading: start the clock on every proposal.
    pub(crate) fn orphan_all(&mut self, now: Instant) {
        for p in self.pending.values_mut() {
            p.orphaned_at.get_or_insert(now);
        }
    }

    /// Fails orphaned proposals older than `timeout`.
    pub(crate) fn expire(&mut self, now: Instant, timeout: Duration) {
        let expired: Vec<LogIndex> = self
            .pending
            .iter()
            .filter(|(_, p)| {
                p.orphaned_at
                    .is_some_and(|t| now.duration_since(t) >= timeout)
            })
            .map(|(&index, _)| index)
            .collect();
        for index in expired {
            let p = self.pending.remove(&index).expect("collected above");
            self.fail(p.responder, Error::OutcomeUnknown { index });
        }
    }

    /// A snapshot from the leader replaced the log through `index`: whether
    /// the proposals it covers made it in cannot be told.
    pub(crate) fn covered_by_snapshot(&mut self, index: LogIndex) {
        let rest = self.pending.split_off(&index.next());
        for (index, p) in std::mem::replace(&mut self.pending, rest) {
            self.fail(p.responder, Error::OutcomeUnknown { index });
        }
    }

    /// Fails every pending proposal with `error`.
    pub(crate) fn fail_all(&mut self, error: &Error) {
        for (_, p) in std::mem::take(&mut self.pending) {
            self.fail(p.responder, error.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposal(term: u64, index: u64) -> Proposal {
        Proposal {
            term: Term(term),
            index: LogIndex(index),
        }
    }

    #[test]
    fn entry_of_another_term_at_the_index_drops_the_proposal() {
        let mut proposals = Proposals::new(10);
        let (tx, mut rx) = oneshot::channel();
        proposals.insert(proposal(2, 5), tx);
        assert!(proposals.take_committed(LogIndex(5), Term(3)).is_none());
        assert!(matches!(
            rx.try_recv(),
            Ok(Err(Error::ProposalDropped { index: LogIndex(5) }))
        ));
        assert_eq!((proposals.committed(), proposals.failed()), (0, 1));
    }

    #[test]
    fn orphaned_proposal_fails_as_unknown_after_the_timeout() {
        let mut proposals = Proposals::new(10);
        let (tx, mut rx) = oneshot::channel();
        proposals.insert(proposal(2, 5), tx);
        let t0 = Instant::now();
        proposals.orphan_all(t0);
        proposals.expire(t0 + Duration::from_millis(10), Duration::from_secs(1));
        assert!(rx.try_recv().is_err(), "still waiting before the timeout");
        proposals.expire(t0 + Duration::from_secs(1), Duration::from_secs(1));
        assert!(matches!(
            rx.try_recv(),
            Ok(Err(Error::OutcomeUnknown { index: LogIndex(5) }))
        ));
    }

    #[test]
    fn orphaned_proposal_whose_entry_commits_still_succeeds() {
        let mut proposals = Proposals::new(10);
        let (tx, _rx) = oneshot::channel();
        proposals.insert(proposal(2, 5), tx);
        proposals.orphan_all(Instant::now());
        assert!(proposals.take_committed(LogIndex(5), Term(2)).is_some());
        assert_eq!(proposals.len(), 0);
        assert_eq!((proposals.committed(), proposals.failed()), (1, 0));
    }
}
