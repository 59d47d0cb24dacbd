//! The Raft state machine of one node: its public inputs, the term rules
//! every message passes through, and role transitions. Each role's handling
//! lives in a sibling module; each role's state lives in its variant of
//! [`RoleState`] (`role.rs`).

mod bootstrap;
mod changes;
mod election;
mod follower;
mod leader;
mod read;
mod role;

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::config::{Config, ConfigError};
use crate::durable::DurabilityProof;
use crate::entry::{Entry, Payload, SnapshotMeta};
use crate::log::RaftLog;
use crate::membership::{Membership, MembershipError};
use crate::message::{Message, MessageBody};
use crate::progress::Progress;
use crate::ready::{ReadOutcome, Ready, SoftState};
use crate::rng::Rng;
use crate::types::{HardState, LogIndex, NodeId, Role, Term};

pub use bootstrap::InitializeError;
pub use read::ReadMode;
use read::Reads;
use role::{Leadership, RoleState};

/// The durable state a node starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoredState {
    /// The durable term, vote and commit index.
    pub hard_state: HardState,
    /// The newest snapshot; for a node that never took one, an empty
    /// snapshot at index 0 carrying the initial configuration.
    pub snapshot: SnapshotMeta,
    /// The durable entries after the snapshot, in order.
    pub entries: Vec<Entry>,
}

impl RestoredState {
    /// The state of a brand-new member of a brand-new cluster.
    pub fn bootstrap(membership: Membership) -> RestoredState {
        RestoredState {
            hard_state: HardState::default(),
            snapshot: SnapshotMeta {
                index: LogIndex(0),
                term: Term(0),
                membership,
            },
            entries: Vec::new(),
        }
    }

    /// The state of a node that will join an existing cluster: it knows no
    /// configuration and waits to hear from a leader.
    pub fn joining() -> RestoredState {
        RestoredState::bootstrap(Membership::default())
    }
}

/// Why a node could not be created from its configuration and state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// The node's configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The restored entries do not follow the snapshot at consecutive indexes.
    #[error(
        "restored entries are not contiguous after the snapshot at {snapshot_index}: \
         expected index {expected}, found {found}; the log store is corrupt"
    )]
    Gap {
        /// The index the restored snapshot covers.
        snapshot_index: LogIndex,
        /// The index the next entry should have.
        expected: LogIndex,
        /// The index it has.
        found: LogIndex,
    },
    /// A restored entry's term is below that of the entry before it.
    #[error(
        "restored entry {index} has term {term}, below the entry before it; the log store is corrupt"
    )]
    TermDecreases {
        /// The entry's index.
        index: LogIndex,
        /// The entry's term.
        term: Term,
    },
}

/// Why a proposal was refused. Nothing was appended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This node is not the leader.
    #[error("this node is not the leader (leader hint: {leader_hint:?})")]
    NotLeader {
        /// The leader this node knows of, if any.
        leader_hint: Option<NodeId>,
    },
    /// The leader is handing leadership to another node.
    #[error("leadership is being transferred to node {target}; retry on the new leader")]
    TransferInProgress {
        /// The node leadership is going to.
        target: NodeId,
    },
    /// An earlier membership change is not committed yet.
    #[error("a membership change is already in progress (entry {pending_index})")]
    ChangePending {
        /// The index of the uncommitted membership entry.
        pending_index: LogIndex,
    },
    /// The leader has not yet committed an entry of its own term.
    #[error("the leader has not committed an entry in its term yet; retry shortly")]
    LeaderNotReady,
    /// The proposed membership change is invalid.
    #[error(transparent)]
    Membership(#[from] MembershipError),
}

/// Why a message was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// The message is addressed to another node.
    #[error("message for node {to} was delivered to node {me}")]
    WrongRecipient {
        /// The node the message is addressed to.
        to: NodeId,
        /// This node.
        me: NodeId,
    },
}

/// Where a proposal landed; if the entry committed at `index` has this
/// `term` the proposal committed, otherwise another leader superseded it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// The term of the appended entry (the leader's term).
    pub term: Term,
    /// The index of the appended entry.
    pub index: LogIndex,
}

/// A snapshot of the node's state for monitoring and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// This node's id.
    pub id: NodeId,
    /// Its current role.
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// The node it voted for in the current term, if any.
    pub vote: Option<NodeId>,
    /// The leader it knows of in the current term, if any.
    pub leader: Option<NodeId>,
    /// The commit index.
    pub commit: LogIndex,
    /// The last index the state machine has applied.
    pub applied: LogIndex,
    /// The last index known durable in the log store.
    pub persisted: LogIndex,
    /// The first index held in the log (after the snapshot).
    pub first_index: LogIndex,
    /// The last index in the log.
    pub last_index: LogIndex,
    /// The configuration in effect.
    pub membership: Membership,
    /// Per-follower replication state; empty unless leader.
    pub progress: BTreeMap<NodeId, Progress>,
}

/// Messages and results accumulated until the caller takes a [`Ready`].
#[derive(Debug, Default)]
struct Outbox {
    messages: Vec<Message>,
    persisted_messages: Vec<Message>,
    snapshot: Option<SnapshotMeta>,
    reads: Vec<ReadOutcome>,
    last_hard_state: HardState,
    last_soft_state: Option<SoftState>,
}

/// One Raft node: a deterministic state machine without IO.
///
/// Feed it [`tick`](Raft::tick), [`step`](Raft::step) and proposals; take
/// its output with [`ready`](Raft::ready) and follow [`Ready`]'s contract.
#[derive(Debug)]
pub struct Raft {
    config: Config,
    rng: Rng,
    term: Term,
    vote: Option<NodeId>,
    /// The role, owning the state only that role has.
    role: RoleState,
    leader: Option<NodeId>,
    log: RaftLog,
    /// The configuration in force: the latest one in the log (§4.1).
    membership: Membership,
    /// The index of the entry that set `membership`.
    membership_index: LogIndex,
    election_elapsed: u32,
    heartbeat_elapsed: u32,
    /// This term's randomized election timeout, in
    /// `[election_ticks, 2 * election_ticks)` (§5.2).
    election_timeout: u32,
    /// Ticks since the node started; measures leases.
    ticks: u64,
    /// Whether the node restarted with durable state: it then assumes a
    /// leader may hold a lease and votes only after an election timeout.
    restarted: bool,
    /// Reads that outlive a change of role: those confirmed and waiting for
    /// the state machine, and those forwarded to a leader.
    reads: Reads,
    out: Outbox,
}

impl Raft {
    /// A node with `config` resuming from `state`.
    pub fn new(config: Config, state: RestoredState) -> Result<Raft, RestoreError> {
        config.validate()?;
        let mut expected = state.snapshot.index.next();
        let mut last_term = state.snapshot.term;
        for entry in &state.entries {
            if entry.index != expected {
                return Err(RestoreError::Gap {
                    snapshot_index: state.snapshot.index,
                    expected,
                    found: entry.index,
                });
            }
            if entry.term < last_term {
                return Err(RestoreError::TermDecreases {
                    index: entry.index,
                    term: entry.term,
                });
            }
            last_term = entry.term;
            expected = expected.next();
        }
        let log = RaftLog::restore(state.snapshot, state.entries, state.hard_state.commit);
        let (membership_index, membership) = log.latest_membership();
        let mut hard_state = HardState {
            commit: log.committed(),
            ..state.hard_state
        };
        // A crash between writing a Ready's entries and its hard state can
        // leave entries of a term the hard state never reached. Taking that
        // term is safe with no vote: a vote in it would have been made
        // durable before anyone heard of it, so none was given.
        if log.last_term() > hard_state.term {
            hard_state.term = log.last_term();
            hard_state.vote = None;
        }
        let mut raft = Raft {
            rng: Rng::new(config.seed),
            term: hard_state.term,
            vote: hard_state.vote,
            role: RoleState::Follower,
            leader: None,
            log,
            membership,
            membership_index,
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            election_timeout: config.election_ticks,
            ticks: 0,
            restarted: hard_state.term > Term(0),
            reads: Reads::default(),
            out: Outbox {
                last_hard_state: hard_state,
                ..Outbox::default()
            },
            config,
        };
        raft.reset_election_timer();
        Ok(raft)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// This node's current role.
    pub fn role(&self) -> Role {
        self.role.role()
    }

    /// This node's current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The leader this node knows of in the current term, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The configuration the node was created with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The configuration in effect: the newest one in the log or its
    /// snapshot, committed or not.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The highest index known to be committed (cheaper than `status`).
    pub fn commit_index(&self) -> LogIndex {
        self.log.committed()
    }

    /// The term of the entry at `index`, if the log still knows it (the
    /// snapshot's last entry included).
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        self.log.term(index)
    }

    /// The node's state, for monitoring and tests.
    pub fn status(&self) -> Status {
        Status {
            id: self.id(),
            role: self.role(),
            term: self.term,
            vote: self.vote,
            leader: self.leader,
            commit: self.log.committed(),
            applied: self.log.applied(),
            persisted: self.log.persisted(),
            first_index: self.log.first_index(),
            last_index: self.log.last_index(),
            membership: self.membership.clone(),
            progress: self
                .role
                .leadership()
                .map(|leader| leader.progress.clone())
                .unwrap_or_default(),
        }
    }

    /// The entry at `index`, if still held (tests and debugging).
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        self.log.entry(index)
    }

    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        self.ticks += 1;
        if self.role.is_leader() {
            self.tick_leader();
        } else {
            self.tick_election();
        }
    }

    /// Starts an election now, as if the election timeout had passed
    /// (with a pre-vote first when configured).
    pub fn campaign(&mut self) {
        if !self.role.is_leader() && self.is_promotable() {
            self.start_campaign(self.config.pre_vote);
        }
    }

    /// The transport saw its connection from `peer` close. With
    /// [`Config::fast_failover`], a follower of `peer` takes it as a hint
    /// that the leader is gone and campaigns within a few ticks; otherwise,
    /// or for any other peer, nothing changes.
    pub fn peer_disconnected(&mut self, peer: NodeId) {
        self.leader_maybe_lost(peer);
    }

    /// Appends `data` to the log if this node leads.
    pub fn propose(&mut self, data: Bytes) -> Result<Proposal, ProposeError> {
        self.check_can_propose()?;
        let index = self.log.push(self.term, Payload::Command(data));
        self.after_leader_append();
        Ok(Proposal {
            term: self.term,
            index,
        })
    }

    /// Processes a message from another node.
    pub fn step(&mut self, m: Message) -> Result<(), StepError> {
        if m.to != self.id() {
            return Err(StepError::WrongRecipient {
                to: m.to,
                me: self.id(),
            });
        }
        if m.term > self.term {
            if !self.accept_higher_term(&m) {
                return Ok(());
            }
        } else if m.term < self.term {
            self.answer_stale_term(&m);
            return Ok(());
        }
        self.dispatch(m);
        Ok(())
    }

    /// The caller made this node's log durable up to `up_to`, the
    /// `(index, term)` of [`Ready::persisted_up_to`], as its store's `proof`
    /// shows.
    ///
    /// Entries the proof does not cover are not acknowledged: a later write
    /// in the same sync replaced them (a follower overwriting a conflicting
    /// suffix), and the log no longer holds them either. Acknowledgements
    /// for entries since replaced are ignored for the same reason.
    pub fn persisted(&mut self, up_to: (LogIndex, Term), proof: &impl DurabilityProof) {
        let (index, term) = up_to;
        let (durable_index, durable_term) = proof.durable_through();
        let covered = index < durable_index || (index == durable_index && term == durable_term);
        if !covered {
            return;
        }
        if self.log.persisted_to(index, term) && self.role.is_leader() {
            self.maybe_commit();
        }
    }

    /// The caller's state machine applied every entry up to `index`.
    pub fn applied(&mut self, index: LogIndex) {
        self.log.applied_to(index);
    }

    /// A snapshot covering the log up to `meta.index` is durable; entries it
    /// covers may be forgotten (§7).
    pub fn snapshot_created(&mut self, meta: SnapshotMeta) {
        self.log.compact(meta);
    }

    /// Whether [`ready`](Raft::ready) has anything for the caller.
    pub fn has_ready(&self) -> bool {
        let out = &self.out;
        !out.messages.is_empty()
            || !out.persisted_messages.is_empty()
            || out.snapshot.is_some()
            || !out.reads.is_empty()
            || self.log.has_unpersisted()
            || self.log.has_committed_to_apply()
            || self.hard_state() != out.last_hard_state
            || Some(self.soft_state()) != out.last_soft_state
            || self.reads.has_work(self.log.applied())
            || self
                .role
                .leadership()
                .is_some_and(Leadership::has_unsent_work)
    }

    /// Takes the work accumulated since the last call.
    pub fn ready(&mut self) -> Ready {
        if let Some(leader) = self.role.leadership_mut() {
            let announce_commit = std::mem::take(&mut leader.commit_unannounced);
            let send_entries = std::mem::take(&mut leader.entries_unsent);
            if announce_commit || send_entries {
                self.broadcast_append(announce_commit);
            }
        }
        self.flush_reads();
        let hard_state = self.hard_state();
        let soft_state = self.soft_state();
        let out = &mut self.out;
        let ready = Ready {
            soft_state: (out.last_soft_state.as_ref() != Some(&soft_state))
                .then(|| soft_state.clone()),
            messages: std::mem::take(&mut out.messages),
            snapshot: out.snapshot.take(),
            entries: self.log.take_unpersisted(),
            hard_state: (hard_state != out.last_hard_state).then(|| hard_state.clone()),
            persisted_messages: std::mem::take(&mut out.persisted_messages),
            committed_entries: self.log.take_committed(),
            reads: std::mem::take(&mut out.reads),
        };
        out.last_hard_state = hard_state;
        out.last_soft_state = Some(soft_state);
        ready
    }

    fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed(),
        }
    }

    fn soft_state(&self) -> SoftState {
        SoftState {
            role: self.role(),
            term: self.term,
            leader: self.leader,
        }
    }

    /// Rules for a message from a higher term (Figure 2, "all servers").
    /// Returns whether to go on processing it.
    fn accept_higher_term(&mut self, m: &Message) -> bool {
        match m.body {
            MessageBody::VoteRequest {
                transfer, pre_vote, ..
            } => {
                // Leader stickiness (§4.2.3, §9.6): while a leader is believed
                // alive, a vote request is most likely from a node that was
                // partitioned away or removed; ignoring it keeps it from
                // deposing a healthy leader.
                if !transfer && self.in_leader_lease() {
                    return false;
                }
                if !pre_vote {
                    self.become_follower(m.term, None);
                }
            }
            // Our own pre-vote granted in the term we would campaign in.
            MessageBody::VoteResponse {
                pre_vote: true,
                granted: true,
            } => {}
            MessageBody::AppendEntries { .. }
            | MessageBody::Commit { .. }
            | MessageBody::Heartbeat { .. }
            | MessageBody::InstallSnapshot { .. } => self.become_follower(m.term, Some(m.from)),
            _ => self.become_follower(m.term, None),
        }
        true
    }

    /// A message from an older term is dropped, but a stale leader is told
    /// the current term so it steps down, and a stale pre-candidate learns
    /// it lost.
    fn answer_stale_term(&mut self, m: &Message) {
        match m.body {
            MessageBody::AppendEntries { .. }
            | MessageBody::Commit { .. }
            | MessageBody::Heartbeat { .. } => {
                self.send(m.from, MessageBody::HeartbeatResponse { round: 0 });
            }
            MessageBody::VoteRequest { pre_vote: true, .. } => {
                self.send(
                    m.from,
                    MessageBody::VoteResponse {
                        pre_vote: true,
                        granted: false,
                    },
                );
            }
            // The follower forwarded a read to a leader that has moved on;
            // tell it, or the read would wait forever.
            MessageBody::ReadIndexRequest { id } => {
                self.send(m.from, MessageBody::ReadIndexResponse { id, index: None });
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, m: Message) {
        let from = m.from;
        match m.body {
            MessageBody::VoteRequest {
                pre_vote,
                last_log_index,
                last_log_term,
                ..
            } => self.handle_vote_request(from, m.term, pre_vote, last_log_index, last_log_term),
            MessageBody::VoteResponse { pre_vote, granted } => {
                self.handle_vote_response(from, m.term, pre_vote, granted);
            }
            MessageBody::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
            } => {
                self.follow(from);
                self.handle_append(from, prev_log_index, prev_log_term, &entries, leader_commit);
            }
            MessageBody::Commit {
                prev_log_index,
                prev_log_term,
                leader_commit,
            } => {
                self.follow(from);
                self.handle_commit(from, prev_log_index, prev_log_term, leader_commit);
            }
            MessageBody::Heartbeat { commit, round } => {
                self.follow(from);
                self.handle_heartbeat(from, commit, round);
            }
            MessageBody::InstallSnapshot { meta } => {
                self.follow(from);
                self.handle_snapshot(from, meta);
            }
            MessageBody::AppendResponse(result) => self.handle_append_response(from, result),
            MessageBody::HeartbeatResponse { round } => self.handle_heartbeat_response(from, round),
            MessageBody::TimeoutNow => self.handle_timeout_now(),
            MessageBody::ReadIndexRequest { id } => self.handle_read_index_request(from, id),
            MessageBody::ReadIndexResponse { id, index } => {
                self.handle_read_index_response(id, index);
            }
        }
    }

    /// A message from the leader of the current term arrived.
    fn follow(&mut self, leader: NodeId) {
        if !matches!(self.role, RoleState::Follower) {
            self.become_follower(self.term, Some(leader));
        }
        self.leader = Some(leader);
        self.election_elapsed = 0;
    }

    /// Queues a message in our current term.
    fn send(&mut self, to: NodeId, body: MessageBody) {
        self.send_in_term(to, self.term, body);
    }

    /// Queues a message. Only what changes durable state waits for
    /// persistence: real votes (the vote and term must be on disk, §5.2) and
    /// acknowledgements of entries (the leader counts them toward commit).
    fn send_in_term(&mut self, to: NodeId, term: Term, body: MessageBody) {
        #[cfg(feature = "fault-injection")]
        let body_is_early_vote = self.config.bugs.vote_before_persist
            && matches!(body, MessageBody::VoteResponse { granted: true, .. });
        #[cfg(not(feature = "fault-injection"))]
        let body_is_early_vote = false;
        let after_persist = !body_is_early_vote
            && matches!(
                body,
                MessageBody::VoteRequest {
                    pre_vote: false,
                    ..
                } | MessageBody::VoteResponse {
                    pre_vote: false,
                    ..
                } | MessageBody::AppendResponse(_)
            );
        let m = Message {
            from: self.id(),
            to,
            term,
            body,
        };
        if after_persist {
            self.out.persisted_messages.push(m);
        } else {
            self.out.messages.push(m);
        }
    }

    fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        let base = self.config.election_ticks;
        self.election_timeout = self.rng.in_range(base, 2 * base);
    }

    /// Whether this node may campaign: only voters may (§4.2.1).
    fn is_promotable(&self) -> bool {
        self.membership.is_voter(self.id())
    }

    /// Whether this node believes a leader is alive and should be left
    /// alone (requires check-quorum, which makes leaders that lost their
    /// quorum step down).
    fn in_leader_lease(&self) -> bool {
        self.config.check_quorum
            && self.election_elapsed < self.config.election_ticks
            && (self.leader.is_some()
                || (self.restarted && self.ticks < u64::from(self.config.election_ticks)))
    }

    /// Follows `leader` (or waits to hear of one) in `term`. Whatever the
    /// previous role held goes with it; only a leader's reads in
    /// confirmation need an answer.
    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        assert!(
            term >= self.term,
            "terms never decrease (§5.1): following term {term} in term {}",
            self.term
        );
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        let previous = std::mem::replace(&mut self.role, RoleState::Follower);
        self.leader = leader;
        self.reset_election_timer();
        let leader_reads = match previous {
            RoleState::Leader(leadership) => Some(leadership.reads),
            _ => None,
        };
        self.fail_pending_reads(leader_reads);
    }

    /// Re-reads the configuration after the log changed; a leader tracks
    /// progress for exactly the configuration's members.
    fn refresh_membership(&mut self) {
        let (index, membership) = self.log.latest_membership();
        self.membership_index = index;
        if membership == self.membership {
            return;
        }
        self.membership = membership;
        let me = self.id();
        let next = self.log.last_index().next();
        if let Some(leader) = self.role.leadership_mut() {
            let nodes = self.membership.nodes();
            leader.progress.retain(|id, _| nodes.contains(id));
            for id in nodes.into_iter().filter(|&id| id != me) {
                leader
                    .progress
                    .entry(id)
                    .or_insert_with(|| Progress::new(next));
            }
        }
    }

    fn check_can_propose(&self) -> Result<(), ProposeError> {
        let Some(leader) = self.role.leadership() else {
            return Err(ProposeError::NotLeader {
                leader_hint: self.leader,
            });
        };
        if let Some(target) = leader.transfer {
            return Err(ProposeError::TransferInProgress { target });
        }
        Ok(())
    }
}
