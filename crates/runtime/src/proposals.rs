//! Proposals waiting for their entry to be applied.
//!
//! The core answers a proposal with the `(term, index)` its entry got. The
//! proposal succeeded if and only if the entry applied at `index` has that
//! term; any other term there means another leader's entry replaced it.

use std::collections::BTreeMap;
use std::time::Duration;

use keel_raft::{LogIndex, Proposal, Term};
use tokio::sync::oneshot;

use crate::clock::Moment;
use crate::error::Error;

/// Where a proposal's outcome goes: the state machine's response (of type
/// `R`), or for a configuration change only that it took effect; or why
/// neither.
pub enum Responder<R> {
    /// A command's proposer, waiting for the machine's response.
    Command(oneshot::Sender<Result<R, Error>>),
    /// A membership change's proposer, waiting for it to take effect.
    Change(oneshot::Sender<Result<(), Error>>),
}

impl<R> Responder<R> {
    /// Tells the proposer that the proposal failed.
    pub fn fail(self, error: Error) {
        let _ = match self {
            Responder::Command(sender) => sender.send(Err(error)).map_err(drop),
            Responder::Change(sender) => sender.send(Err(error)).map_err(drop),
        };
    }
}

struct Pending<R> {
    term: Term,
    responder: Responder<R>,
    /// When this node lost the leadership under which the proposal was
    /// made; from then on its fate is unknown until its index is applied.
    orphaned_at: Option<Moment>,
}

/// The proposals of this node, by index, and how the finished ones ended.
///
/// Only the commit at a proposal's index decides it: the entry committed
/// there has the proposal's term, or the proposal certainly did not take
/// effect. Nothing else is taken for an answer — in particular not a newer
/// proposal of this node at the same index, which a tracker may be tempted
/// to read as "the old entry was overwritten, it can no longer commit".
/// With this core that situation only arises after a leader's snapshot
/// discarded this node's whole log (a follower's log otherwise never ends
/// below an index it once held: a conflicting append replaces entries, it
/// does not shorten the log), and then the old entry follows one that
/// disagrees with the snapshot's committed prefix, so it can never commit.
/// The tracker does not rely on that argument: several proposals may wait
/// on one index, and the commit there decides each.
///
/// Invariant: at most `capacity` proposals in all.
/// Invariant: at most one proposal per `(index, term)`: a term appends one
/// entry per index.
/// Invariant: every proposal inserted is counted exactly once, in
/// `committed` or `failed`, once it leaves `pending`.
pub(crate) struct Proposals<R> {
    pending: BTreeMap<LogIndex, Vec<Pending<R>>>,
    /// How many proposals `pending` holds, over all indexes.
    count: usize,
    capacity: usize,
    /// Since start: proposals whose entry committed with their term.
    committed: u64,
    /// Since start: proposals answered with an error after their entry
    /// was appended. Refusals before appending (not leader, overloaded)
    /// are routing and back-pressure, not failures of the log.
    failed: u64,
}

impl<R> Proposals<R> {
    pub(crate) fn new(capacity: usize) -> Proposals<R> {
        Proposals {
            pending: BTreeMap::new(),
            count: 0,
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
    fn fail(&mut self, responder: Responder<R>, error: Error) {
        self.failed += 1;
        responder.fail(error);
    }

    pub(crate) fn len(&self) -> usize {
        self.count
    }

    pub(crate) fn is_full(&self) -> bool {
        self.count >= self.capacity
    }

    pub(crate) fn insert(&mut self, proposal: Proposal, responder: Responder<R>) {
        assert!(!self.is_full(), "caller checks capacity before proposing");
        let waiting = self.pending.entry(proposal.index).or_default();
        assert!(
            waiting.iter().all(|p| p.term != proposal.term),
            "a term appends one entry per index"
        );
        waiting.push(Pending {
            term: proposal.term,
            responder,
            orphaned_at: None,
        });
        self.count += 1;
    }

    /// The responder waiting for the entry `(index, term)`, which is about
    /// to be applied. Proposals at `index` from other terms certainly did
    /// not take effect (the committed entry there is another) and are told
    /// so.
    pub(crate) fn take_committed(&mut self, index: LogIndex, term: Term) -> Option<Responder<R>> {
        let waiting = self.pending.remove(&index)?;
        self.count -= waiting.len();
        let mut winner = None;
        for p in waiting {
            if p.term == term {
                self.committed += 1;
                winner = Some(p.responder);
            } else {
                self.fail(p.responder, Error::ProposalDropped { index });
            }
        }
        winner
    }

    /// This node stopped leading: start the clock on every proposal.
    pub(crate) fn orphan_all(&mut self, now: Moment) {
        for p in self.pending.values_mut().flatten() {
            p.orphaned_at.get_or_insert(now);
        }
    }

    /// Fails orphaned proposals older than `timeout`.
    pub(crate) fn expire(&mut self, now: Moment, timeout: Duration) {
        let expired = |p: &Pending<R>| {
            p.orphaned_at
                .is_some_and(|t| now.saturating_since(t) >= timeout)
        };
        let indexes: Vec<LogIndex> = self
            .pending
            .iter()
            .filter(|(_, waiting)| waiting.iter().any(expired))
            .map(|(&index, _)| index)
            .collect();
        for index in indexes {
            let waiting = self.pending.remove(&index).expect("collected above");
            let (gone, kept): (Vec<Pending<R>>, Vec<Pending<R>>) =
                waiting.into_iter().partition(|p| expired(p));
            self.count -= gone.len();
            for p in gone {
                self.fail(p.responder, Error::OutcomeUnknown { index });
            }
            if !kept.is_empty() {
                self.pending.insert(index, kept);
            }
        }
    }

    /// A snapshot from the leader replaced the log through `index`: whether
    /// the proposals it covers made it in cannot be told.
    pub(crate) fn covered_by_snapshot(&mut self, index: LogIndex) {
        let rest = self.pending.split_off(&index.next());
        for (index, waiting) in std::mem::replace(&mut self.pending, rest) {
            self.count -= waiting.len();
            for p in waiting {
                self.fail(p.responder, Error::OutcomeUnknown { index });
            }
        }
    }

    /// Fails every pending proposal with `error`.
    pub(crate) fn fail_all(&mut self, error: &Error) {
        self.count = 0;
        for p in std::mem::take(&mut self.pending).into_values().flatten() {
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
        let mut proposals = Proposals::<&str>::new(10);
        let (tx, mut rx) = oneshot::channel();
        proposals.insert(proposal(2, 5), Responder::Command(tx));
        assert!(proposals.take_committed(LogIndex(5), Term(3)).is_none());
        assert!(matches!(
            rx.try_recv(),
            Ok(Err(Error::ProposalDropped { index: LogIndex(5) }))
        ));
        assert_eq!((proposals.committed(), proposals.failed()), (0, 1));
    }

    #[test]
    fn orphaned_proposal_fails_as_unknown_after_the_timeout() {
        let mut proposals = Proposals::<&str>::new(10);
        let (tx, mut rx) = oneshot::channel();
        proposals.insert(proposal(2, 5), Responder::Command(tx));
        let t0 = Moment::ZERO;
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
        let mut proposals = Proposals::<&str>::new(10);
        let (tx, _rx) = oneshot::channel();
        proposals.insert(proposal(2, 5), Responder::Command(tx));
        proposals.orphan_all(Moment::ZERO);
        assert!(proposals.take_committed(LogIndex(5), Term(2)).is_some());
        assert_eq!(proposals.len(), 0);
        assert_eq!((proposals.committed(), proposals.failed()), (1, 0));
    }

    /// Figure 8 on five members: the leader of term 2 appends P at 11 and
    /// only one follower receives it; it loses and regains leadership, and
    /// its term-4 entry Q lands at 11 too. P may still commit (through that
    /// follower), so it must not be failed as dropped until 11 commits.
    #[test]
    fn an_overwritten_proposal_waits_for_its_index_to_commit() {
        let mut proposals = Proposals::<&str>::new(10);
        let (p_tx, mut p_rx) = oneshot::channel();
        let (q_tx, mut q_rx) = oneshot::channel();
        proposals.insert(proposal(2, 11), Responder::Command(p_tx));
        proposals.insert(proposal(4, 11), Responder::Command(q_tx));
        assert!(p_rx.try_recv().is_err(), "P's fate is not known yet");
        assert_eq!(proposals.len(), 2);

        // The follower that held P won term 3 and committed P at 11.
        let Some(Responder::Command(winner)) = proposals.take_committed(LogIndex(11), Term(2))
        else {
            panic!("P's proposer waits for its response");
        };
        winner.send(Ok("P")).unwrap();
        assert!(matches!(p_rx.try_recv(), Ok(Ok(_))));
        assert!(matches!(
            q_rx.try_recv(),
            Ok(Err(Error::ProposalDropped {
                index: LogIndex(11)
            }))
        ));
        assert_eq!(proposals.len(), 0);
        assert_eq!((proposals.committed(), proposals.failed()), (1, 1));
    }

    #[test]
    fn expiry_fails_only_the_orphaned_proposals_at_an_index() {
        let mut proposals = Proposals::<&str>::new(10);
        let (old_tx, mut old_rx) = oneshot::channel();
        let (new_tx, mut new_rx) = oneshot::channel();
        proposals.insert(proposal(2, 7), Responder::Command(old_tx));
        let t0 = Moment::ZERO;
        proposals.orphan_all(t0);
        proposals.insert(proposal(3, 7), Responder::Command(new_tx));
        proposals.expire(t0 + Duration::from_secs(1), Duration::from_secs(1));
        assert!(matches!(
            old_rx.try_recv(),
            Ok(Err(Error::OutcomeUnknown { index: LogIndex(7) }))
        ));
        assert!(new_rx.try_recv().is_err());
        assert_eq!(proposals.len(), 1);
        assert!(proposals.take_committed(LogIndex(7), Term(3)).is_some());
    }
}
