//! Linearizable reads without writing to the log: ReadIndex (thesis §6.4),
//! leader leases (§6.4.1) and follower reads.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::message::{MessageBody, ReadId};
use crate::ready::{ReadError, ReadOutcome};
use crate::types::{LogIndex, NodeId};

use super::Raft;

/// How a read is to be confirmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// Confirm leadership with a heartbeat round to a quorum (§6.4).
    ReadIndex,
    /// Trust the leader lease if it holds (§6.4.1); otherwise fall back to
    /// a heartbeat round. Requires check-quorum, and fast failover off
    /// (voters acting on a closed connection do not honour the lease).
    Lease,
}

/// Heartbeat rounds whose send time is kept while unconfirmed; bounds memory
/// when no follower answers.
const ROUNDS_REMEMBERED_MAX: usize = 1024;

/// Who asked for a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Requester {
    Local(ReadId),
    /// A follower forwarded its read (§6.4, "reads from followers").
    Remote(NodeId, ReadId),
}

/// A read waiting for a quorum to confirm a heartbeat round.
#[derive(Clone, Copy, Debug)]
struct PendingRead {
    requester: Requester,
    index: LogIndex,
    round: u64,
}

/// Reads in any role: those confirmed and waiting for the state machine,
/// and those forwarded to the leader. Both outlive a change of role: a
/// confirmed read stays valid, and a forwarded one is answered by the
/// leader it went to.
#[derive(Debug, Default)]
pub(super) struct Reads {
    /// Confirmed reads waiting for the state machine to reach their index.
    confirmed: VecDeque<(ReadId, LogIndex)>,
    /// Reads forwarded to the leader, awaiting its answer.
    forwarded: BTreeMap<ReadId, NodeId>,
    /// Reads asked with [`Raft::confirm_read_index`]: released once
    /// confirmed, without waiting for the state machine. An id leaves the
    /// set with the read's outcome.
    index_only: BTreeSet<ReadId>,
}

/// A leader's reads in confirmation, and the heartbeat rounds that confirm
/// them; it lives in [`super::role::Leadership`] and ends with the term.
///
/// Invariant: rounds in `round_sent_at` increase; `pending` reads wait for
/// rounds in increasing order, none before a round already confirmed.
#[derive(Debug, Default)]
pub(super) struct LeaderReads {
    /// Reads that arrived before the first commit of the term.
    awaiting_commit: Vec<(Requester, ReadMode)>,
    /// Reads waiting for a heartbeat round to be confirmed.
    pending: VecDeque<PendingRead>,
    /// The last heartbeat round started this term.
    round: u64,
    /// The tick each not-yet-confirmed round was sent at (and the newest
    /// confirmed one), to measure the lease from.
    round_sent_at: VecDeque<(u64, u64)>,
}

impl Reads {
    /// Whether confirmed reads can be released.
    pub(super) fn has_work(&self, applied: LogIndex) -> bool {
        self.confirmed
            .iter()
            .any(|&(id, index)| self.releasable(id, index, applied))
    }

    /// Whether a confirmed read may leave: its caller waits for the state
    /// machine itself, or the state machine has reached its index.
    fn releasable(&self, id: ReadId, index: LogIndex, applied: LogIndex) -> bool {
        index <= applied || self.index_only.contains(&id)
    }
}

impl LeaderReads {
    pub(super) fn start_round(&mut self, now: u64) -> u64 {
        self.round += 1;
        if self.round_sent_at.len() >= ROUNDS_REMEMBERED_MAX {
            // Forgetting a round only makes a lease look expired.
            self.round_sent_at.pop_front();
        }
        self.round_sent_at.push_back((self.round, now));
        self.round
    }

    /// The last heartbeat round started this term (0 before the first).
    pub(super) fn last_started_round(&self) -> u64 {
        self.round
    }

    /// Whether reads wait for a heartbeat round not yet started, which the
    /// next Ready starts.
    pub(super) fn has_unstarted_round(&self) -> bool {
        self.pending.iter().any(|p| p.round > self.round)
    }

    /// Takes the reads whose round `confirmed` or an earlier one confirmed.
    fn take_confirmed_through(&mut self, confirmed: u64) -> Vec<PendingRead> {
        let count = self
            .pending
            .iter()
            .take_while(|p| p.round <= confirmed)
            .count();
        self.pending.drain(..count).collect()
    }

    /// The tick at which `round` was sent, forgetting older rounds.
    fn sent_at(&mut self, round: u64) -> Option<u64> {
        while self.round_sent_at.len() > 1 && self.round_sent_at[1].0 <= round {
            self.round_sent_at.pop_front();
        }
        self.round_sent_at
            .front()
            .filter(|(r, _)| *r == round)
            .map(|&(_, tick)| tick)
    }
}

impl Raft {
    /// Asks for a linearizable read. The outcome arrives in
    /// [`crate::Ready::reads`] once the state machine has applied every
    /// write the read must observe.
    pub fn read(&mut self, id: ReadId, mode: ReadMode) {
        match (self.role.is_leader(), self.leader) {
            (true, _) => self.leader_read(Requester::Local(id), mode),
            (_, Some(leader)) => {
                self.reads.forwarded.insert(id, leader);
                self.send(leader, MessageBody::ReadIndexRequest { id });
            }
            (_, None) => self.read_failed(id, ReadError::NotLeader { leader_hint: None }),
        }
    }

    /// Asks for the index a linearizable read must observe, confirmed by a
    /// heartbeat round like a [`ReadMode::ReadIndex`] read (§6.4 steps
    /// 1-3). The outcome arrives in [`crate::Ready::reads`] as soon as the
    /// index is confirmed, *without* waiting for the state machine: the
    /// caller waits until it has applied the index (step 4) before it
    /// serves a read from it.
    pub fn confirm_read_index(&mut self, id: ReadId) {
        self.reads.index_only.insert(id);
        self.read(id, ReadMode::ReadIndex);
    }

    fn read_failed(&mut self, id: ReadId, error: ReadError) {
        self.reads.index_only.remove(&id);
        self.out.reads.push(ReadOutcome {
            id,
            result: Err(error),
        });
    }

    fn leader_read(&mut self, requester: Requester, mode: ReadMode) {
        // Until the leader commits an entry of its term its commit index may
        // lag entries its predecessor committed (§6.4 step 1).
        if !self.log.committed_in_term(self.term) {
            self.leadership_mut()
                .reads
                .awaiting_commit
                .push((requester, mode));
            return;
        }
        let index = self.log.committed();
        let sole_voter = self.membership.has_quorum(|id| id == self.id());
        #[cfg(feature = "fault-injection")]
        let sole_voter = sole_voter || self.config.bugs.read_index_without_heartbeat;
        if sole_voter || (mode == ReadMode::Lease && self.lease_valid()) {
            self.read_confirmed(requester, index);
            return;
        }
        // Wait for a heartbeat round that starts after this request; rounds
        // are started in batches when the caller takes a Ready.
        let reads = &mut self.leadership_mut().reads;
        let round = reads.round + 1;
        debug_assert!(
            reads.pending.back().is_none_or(|last| last.round <= round),
            "pending reads wait for heartbeat rounds in order"
        );
        reads.pending.push_back(PendingRead {
            requester,
            index,
            round,
        });
    }

    /// The lease holds while no other leader can have been elected: voters
    /// ignore vote requests for an election timeout after hearing from us,
    /// measured from when the confirming heartbeat was *sent* (§6.4.1).
    fn lease_valid(&mut self) -> bool {
        let leader = self.role.leadership().expect("only a leader holds a lease");
        if !self.config.check_quorum
            || self.config.fast_failover
            || leader.timeout_now_sent
            || leader.transfer.is_some()
        {
            return false;
        }
        #[cfg(feature = "fault-injection")]
        if self.config.bugs.lease_never_expires {
            return true;
        }
        let confirmed = self.confirmed_round();
        let Some(sent_at) = self.leadership_mut().reads.sent_at(confirmed) else {
            return false;
        };
        let lease_ticks = u64::from(self.config.election_ticks - self.config.lease_drift_ticks);
        self.ticks < sent_at + lease_ticks
    }

    /// The newest heartbeat round a quorum has answered.
    fn confirmed_round(&self) -> u64 {
        let me = self.id();
        let leader = self
            .role
            .leadership()
            .expect("only a leader's heartbeat rounds are confirmed");
        let own_round = leader.reads.round;
        let progress = &leader.progress;
        self.membership.majority_value(|id| {
            if id == me {
                own_round
            } else {
                progress.get(&id).map_or(0, |p| p.acked_round())
            }
        })
    }

    pub(super) fn handle_read_index_request(&mut self, from: NodeId, id: ReadId) {
        if self.role.is_leader() {
            self.leader_read(Requester::Remote(from, id), ReadMode::ReadIndex);
        } else {
            self.send(from, MessageBody::ReadIndexResponse { id, index: None });
        }
    }

    pub(super) fn handle_read_index_response(&mut self, id: ReadId, index: Option<LogIndex>) {
        if self.reads.forwarded.remove(&id).is_none() {
            return;
        }
        match index {
            Some(index) => self.reads.confirmed.push_back((id, index)),
            None => self.read_failed(
                id,
                ReadError::NotLeader {
                    leader_hint: self.leader,
                },
            ),
        }
    }

    fn read_confirmed(&mut self, requester: Requester, index: LogIndex) {
        match requester {
            Requester::Local(id) => self.reads.confirmed.push_back((id, index)),
            Requester::Remote(to, id) => self.send(
                to,
                MessageBody::ReadIndexResponse {
                    id,
                    index: Some(index),
                },
            ),
        }
    }

    /// Frees reads whose heartbeat round a quorum has answered.
    pub(super) fn confirm_reads(&mut self) {
        let confirmed = self.confirmed_round();
        let reads = &mut self.leadership_mut().reads;
        reads.sent_at(confirmed);
        for read in reads.take_confirmed_through(confirmed) {
            debug_assert!(
                read.index <= self.log.committed(),
                "a read index is a commit index, which never decreases"
            );
            self.read_confirmed(read.requester, read.index);
        }
    }

    pub(super) fn release_reads_awaiting_commit(&mut self) {
        let waiting = std::mem::take(&mut self.leadership_mut().reads.awaiting_commit);
        for (requester, mode) in waiting {
            self.leader_read(requester, mode);
        }
    }

    /// Called when taking a Ready: starts one heartbeat round for all reads
    /// that arrived since the last, and releases reads the state machine
    /// has caught up with.
    pub(super) fn flush_reads(&mut self) {
        if self
            .role
            .leadership()
            .is_some_and(|leader| leader.reads.has_unstarted_round())
        {
            self.broadcast_heartbeat();
        }
        let applied = self.log.applied();
        let reads = &mut self.reads;
        let (ready, waiting): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut reads.confirmed)
            .into_iter()
            .partition(|&(id, index)| reads.releasable(id, index, applied));
        reads.confirmed = waiting;
        for (id, index) in ready {
            reads.index_only.remove(&id);
            self.out.reads.push(ReadOutcome {
                id,
                result: Ok(index),
            });
        }
    }

    /// Leadership or the known leader changed: reads that depended on it
    /// fail and may be retried. `leader_reads` are the reads of the
    /// leadership that just ended, if one did.
    pub(super) fn fail_pending_reads(&mut self, leader_reads: Option<LeaderReads>) {
        let mut failed: Vec<Requester> = Vec::new();
        if let Some(reads) = leader_reads {
            failed.extend(reads.awaiting_commit.into_iter().map(|(r, _)| r));
            failed.extend(reads.pending.into_iter().map(|p| p.requester));
        }
        failed.extend(
            std::mem::take(&mut self.reads.forwarded)
                .into_keys()
                .map(Requester::Local),
        );
        for requester in failed {
            match requester {
                Requester::Local(id) => self.read_failed(id, ReadError::LeadershipLost),
                Requester::Remote(to, id) => {
                    self.send(to, MessageBody::ReadIndexResponse { id, index: None });
                }
            }
        }
    }
}
