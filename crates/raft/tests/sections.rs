//! Unit tests of single rules, each named after the section of the Raft
//! paper or Ongaro's thesis it checks.

use bytes::Bytes;
use keel_raft::{
    AppendResult, Config, DurabilityProof, Entry, HardState, LogIndex, Membership, Message,
    MessageBody, NodeId, Payload, ProposeError, Raft, ReadId, ReadMode, RestoreError,
    RestoredState, Role, StepError, Term,
};

fn three() -> Membership {
    Membership::new([NodeId(1), NodeId(2), NodeId(3)], []).unwrap()
}

fn node(id: u64, pre_vote: bool) -> Raft {
    let mut config = Config::new(NodeId(id));
    config.pre_vote = pre_vote;
    config.check_quorum = false;
    Raft::new(config, RestoredState::bootstrap(three())).unwrap()
}

fn vote_request(from: u64, to: u64, term: u64, last: (u64, u64)) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(term),
        body: MessageBody::VoteRequest {
            pre_vote: false,
            last_log_index: LogIndex(last.0),
            last_log_term: Term(last.1),
            transfer: false,
        },
    }
}

fn granted(msgs: &[Message]) -> Vec<(u64, bool)> {
    msgs.iter()
        .filter_map(|m| match m.body {
            MessageBody::VoteResponse { granted, .. } => Some((m.to.0, granted)),
            _ => None,
        })
        .collect()
}

#[test]
fn section_5_2_one_vote_per_term() {
    let mut n = node(1, false);
    n.step(vote_request(2, 1, 1, (0, 0))).unwrap();
    n.step(vote_request(3, 1, 1, (0, 0))).unwrap();
    let ready = n.ready();
    assert_eq!(
        granted(&ready.persisted_messages),
        vec![(2, true), (3, false)]
    );
}

#[test]
fn section_5_2_vote_is_durable_before_the_response_leaves() {
    let mut n = node(1, false);
    n.step(vote_request(2, 1, 1, (0, 0))).unwrap();
    let ready = n.ready();
    assert!(
        granted(&ready.messages).is_empty(),
        "a vote must not leave before persisting"
    );
    assert_eq!(granted(&ready.persisted_messages), vec![(2, true)]);
    assert_eq!(
        ready.hard_state,
        Some(HardState {
            term: Term(1),
            vote: Some(NodeId(2)),
            commit: LogIndex(0),
        })
    );
}

#[test]
fn section_5_2_election_timeout_is_randomized_in_one_to_two_timeouts() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..200 {
        let mut config = Config::new(NodeId(1));
        config.seed = seed;
        config.pre_vote = false;
        let mut n = Raft::new(config, RestoredState::bootstrap(three())).unwrap();
        let mut ticks = 0;
        while n.role() == Role::Follower {
            n.tick();
            ticks += 1;
            assert!(ticks < 20, "no campaign within two election timeouts");
        }
        assert!(
            ticks >= 10,
            "campaigned after {ticks} ticks, before one election timeout"
        );
        seen.insert(ticks);
    }
    assert!(seen.len() > 5, "timeouts are not spread out: {seen:?}");
}

#[test]
fn section_5_4_1_stale_candidate_is_refused() {
    let entries = vec![Entry {
        term: Term(2),
        index: LogIndex(1),
        payload: Payload::Blank,
    }];
    let state = RestoredState {
        hard_state: HardState {
            term: Term(2),
            vote: None,
            commit: LogIndex(0),
        },
        entries,
        ..RestoredState::bootstrap(three())
    };
    let mut config = Config::new(NodeId(1));
    config.check_quorum = false;
    let mut n = Raft::new(config, state).unwrap();
    // Longer log, older last term: less up to date.
    n.step(vote_request(2, 1, 3, (5, 1))).unwrap();
    let ready = n.ready();
    assert_eq!(granted(&ready.persisted_messages), vec![(2, false)]);
}

#[test]
fn section_9_6_pre_vote_does_not_change_the_term() {
    let mut n = node(1, true);
    n.campaign();
    assert_eq!(n.role(), Role::PreCandidate);
    assert_eq!(n.term(), Term(0));
    let ready = n.ready();
    assert!(
        ready.hard_state.is_none(),
        "pre-vote must not touch durable state"
    );
    let asks: Vec<Term> = ready.messages.iter().map(|m| m.term).collect();
    assert_eq!(asks, vec![Term(1), Term(1)], "pre-votes name the next term");
}

/// Elects node 1 of three by hand and returns it with a follower.
/// A write these tests declare durable: they keep no disk.
struct Written(LogIndex, Term);

impl DurabilityProof for Written {
    fn durable_through(&self) -> (LogIndex, Term) {
        (self.0, self.1)
    }
}

fn elected() -> (Raft, Raft) {
    let mut leader = node(1, false);
    let mut follower = node(2, false);
    leader.campaign();
    let ready = leader.ready();
    let request = ready
        .persisted_messages
        .into_iter()
        .find(|m| m.to == NodeId(2))
        .unwrap();
    follower.step(request).unwrap();
    let answer = follower.ready().persisted_messages.pop().unwrap();
    leader.step(answer).unwrap();
    assert_eq!(leader.role(), Role::Leader);
    (leader, follower)
}

#[test]
fn section_10_2_1_leader_sends_entries_before_its_own_write() {
    let (mut leader, _) = elected();
    leader.propose(Bytes::from_static(b"x")).unwrap();
    let ready = leader.ready();
    assert_eq!(
        ready.entries.len(),
        2,
        "blank and proposal still have to be persisted"
    );
    let appends = ready
        .messages
        .iter()
        .filter(|m| matches!(&m.body, MessageBody::AppendEntries { entries, .. } if !entries.is_empty()))
        .count();
    assert_eq!(
        appends, 2,
        "followers get entries while the leader writes them"
    );
}

#[test]
fn section_5_4_2_leader_counts_itself_only_once_persisted() {
    let (mut leader, mut follower) = elected();
    let ready = leader.ready();
    let durable = ready.persisted_up_to().unwrap();
    let to_follower: Vec<Message> = ready
        .messages
        .into_iter()
        .filter(|m| m.to == NodeId(2))
        .collect();
    for m in to_follower {
        follower.step(m).unwrap();
    }
    let follower_ready = follower.ready();
    for m in follower_ready.persisted_messages {
        leader.step(m).unwrap();
    }
    assert_eq!(
        leader.status().commit,
        LogIndex(0),
        "one of three durable is no majority"
    );
    leader.persisted(durable, &Written(durable.0, durable.1));
    assert_eq!(leader.status().commit, LogIndex(1));
}

#[test]
fn section_5_4_2_leader_counts_itself_only_for_what_the_proof_covers() {
    let (mut leader, mut follower) = elected();
    let ready = leader.ready();
    let written = ready.persisted_up_to().unwrap();
    for m in ready.messages.into_iter().filter(|m| m.to == NodeId(2)) {
        follower.step(m).unwrap();
    }
    for m in follower.ready().persisted_messages {
        leader.step(m).unwrap();
    }
    leader.persisted(written, &Written(LogIndex(0), Term(0)));
    assert_eq!(
        leader.status().commit,
        LogIndex(0),
        "the store vouched for nothing, so the leader's entry does not count"
    );
    leader.persisted(written, &Written(written.0, written.1));
    assert_eq!(leader.status().commit, LogIndex(1));
}

#[test]
fn section_5_1_followers_redirect_proposals_to_the_leader() {
    let (_, mut follower) = elected();
    let err = follower.propose(Bytes::from_static(b"x")).unwrap_err();
    assert_eq!(err, ProposeError::NotLeader { leader_hint: None });
}

#[test]
fn message_for_another_node_is_refused() {
    let mut n = node(1, false);
    let err = n.step(vote_request(2, 3, 1, (0, 0))).unwrap_err();
    assert_eq!(
        err,
        StepError::WrongRecipient {
            to: NodeId(3),
            me: NodeId(1)
        }
    );
}

#[test]
fn restore_refuses_a_log_with_a_gap() {
    let entries = vec![Entry {
        term: Term(1),
        index: LogIndex(2),
        payload: Payload::Blank,
    }];
    let state = RestoredState {
        entries,
        ..RestoredState::bootstrap(three())
    };
    let err = Raft::new(Config::new(NodeId(1)), state).unwrap_err();
    assert!(matches!(err, RestoreError::Gap { .. }), "{err}");
}

#[test]
fn restart_keeps_term_vote_and_log() {
    let entries = vec![Entry {
        term: Term(3),
        index: LogIndex(1),
        payload: Payload::Command(Bytes::from_static(b"x")),
    }];
    let hard_state = HardState {
        term: Term(4),
        vote: Some(NodeId(2)),
        commit: LogIndex(9),
    };
    let state = RestoredState {
        hard_state,
        entries,
        ..RestoredState::bootstrap(three())
    };
    let n = Raft::new(Config::new(NodeId(1)), state).unwrap();
    let s = n.status();
    assert_eq!((s.term, s.vote), (Term(4), Some(NodeId(2))));
    assert_eq!(
        s.commit,
        LogIndex(1),
        "a stored commit beyond the log is clamped"
    );
    assert_eq!(s.last_index, LogIndex(1));
}

/// Found by the simulator (seed 583): a crash between persisting a Ready's
/// entries and its hard state leaves entries of a newer term than the
/// stored one. The node must adopt that term (with no vote) rather than
/// run with a term below its own log's.
#[test]
fn restart_with_entries_ahead_of_the_hard_state_adopts_their_term() {
    let entries = vec![Entry {
        term: Term(6),
        index: LogIndex(1),
        payload: Payload::Blank,
    }];
    let hard_state = HardState {
        term: Term(5),
        vote: Some(NodeId(2)),
        commit: LogIndex(0),
    };
    let state = RestoredState {
        hard_state,
        entries,
        ..RestoredState::bootstrap(three())
    };
    let n = Raft::new(Config::new(NodeId(1)), state).unwrap();
    assert_eq!((n.term(), n.status().vote), (Term(6), None));
    n.check_invariants().unwrap();
}

/// Elects node 1 and commits its blank entry with node 2's help; the leader
/// has applied it, so reads can be served.
fn elected_and_committed() -> (Raft, Raft) {
    let (mut leader, follower) = committed_in_term();
    assert_eq!(leader.ready().committed_entries.len(), 1);
    leader.applied(LogIndex(1));
    (leader, follower)
}

fn from_node_3(leader: &Raft, body: MessageBody) -> Message {
    Message {
        from: NodeId(3),
        to: NodeId(1),
        term: leader.status().term,
        body,
    }
}

#[test]
fn a_match_beyond_the_leaders_log_is_ignored() {
    let (mut leader, _) = elected();
    let ready = leader.ready();
    let written = ready.persisted_up_to().unwrap();
    leader.persisted(written, &Written(written.0, written.1));
    let forged = AppendResult::Success {
        match_index: LogIndex(1_000),
    };
    leader
        .step(from_node_3(&leader, MessageBody::AppendResponse(forged)))
        .unwrap();
    assert_eq!(
        leader.status().commit,
        LogIndex(0),
        "node 3 cannot hold entries the leader never had, so it counts for nothing"
    );
}

#[test]
fn an_acknowledged_round_never_started_is_ignored() {
    let (mut leader, _) = elected_and_committed();
    // Counted, node 3's claim would confirm every later round with the
    // leader's own, whether node 3 ever heard of it or not.
    leader
        .step(from_node_3(
            &leader,
            MessageBody::HeartbeatResponse { round: u64::MAX },
        ))
        .unwrap();
    leader.read(ReadId(7), ReadMode::ReadIndex);
    let ready = leader.ready();
    assert!(
        ready
            .messages
            .iter()
            .any(|m| matches!(m.body, MessageBody::Heartbeat { .. })),
        "the read starts a heartbeat round"
    );
    leader
        .step(from_node_3(
            &leader,
            MessageBody::HeartbeatResponse { round: 0 },
        ))
        .unwrap();
    assert!(
        leader.ready().reads.is_empty(),
        "no follower has answered the read's round"
    );
}

/// A leader of nodes 1 and 2 (of three) whose blank entry committed, and
/// its follower; the leader has not applied anything.
fn committed_in_term() -> (Raft, Raft) {
    let (mut leader, mut follower) = elected();
    let ready = leader.ready();
    let written = ready.persisted_up_to().unwrap();
    for m in ready.messages.into_iter().filter(|m| m.to == NodeId(2)) {
        follower.step(m).unwrap();
    }
    for m in follower.ready().persisted_messages {
        leader.step(m).unwrap();
    }
    leader.persisted(written, &Written(written.0, written.1));
    assert_eq!(leader.status().commit, LogIndex(1));
    assert_eq!(leader.status().applied, LogIndex(0));
    (leader, follower)
}

/// Delivers the leader's heartbeats to the follower and its answers back.
fn heartbeat_round(leader: &mut Raft, follower: &mut Raft) -> Vec<keel_raft::ReadOutcome> {
    let ready = leader.ready();
    let mut reads = ready.reads;
    for m in ready.messages.into_iter().filter(|m| m.to == NodeId(2)) {
        follower.step(m).unwrap();
    }
    let answers = follower.ready();
    for m in answers
        .messages
        .into_iter()
        .chain(answers.persisted_messages)
    {
        leader.step(m).unwrap();
    }
    reads.extend(leader.ready().reads);
    reads
}

#[test]
fn section_6_4_confirmed_read_index_is_released_before_the_state_machine_applies_it() {
    use keel_raft::ReadOutcome;
    let (mut leader, mut follower) = committed_in_term();
    leader.confirm_read_index(ReadId(7));
    leader.read(ReadId(8), ReadMode::ReadIndex);
    let released = heartbeat_round(&mut leader, &mut follower);
    assert_eq!(
        released,
        vec![ReadOutcome {
            id: ReadId(7),
            result: Ok(LogIndex(1))
        }],
        "the index is confirmed by the round; the plain read waits for apply"
    );
    leader.applied(LogIndex(1));
    assert_eq!(
        leader.ready().reads,
        vec![ReadOutcome {
            id: ReadId(8),
            result: Ok(LogIndex(1))
        }]
    );
}

#[test]
fn section_6_4_read_index_is_not_confirmed_without_a_quorum() {
    let (mut leader, _) = committed_in_term();
    leader.confirm_read_index(ReadId(7));
    let ready = leader.ready();
    assert!(ready.reads.is_empty(), "{:?}", ready.reads);
    assert!(
        ready
            .messages
            .iter()
            .any(|m| matches!(m.body, MessageBody::Heartbeat { .. })),
        "the read starts a heartbeat round"
    );
    assert!(leader.ready().reads.is_empty(), "no answer, no index");
}

/// §5.3: followers learn the commit index from the leader. With nothing
/// new to send, a leader tells a replicating follower in a `Commit`, which
/// the follower answers only if it lacks the entry it names, so that the
/// leader backs off as after a rejected AppendEntries.
#[test]
fn section_5_3_a_commit_is_answered_only_by_a_follower_lacking_its_entry() {
    let (mut leader, mut follower) = committed_in_term();
    let to_follower: Vec<Message> = leader
        .ready()
        .messages
        .into_iter()
        .filter(|m| m.to == NodeId(2))
        .collect();
    let [commit] = to_follower.as_slice() else {
        panic!("one message for node 2: {to_follower:?}");
    };
    assert!(
        matches!(
            commit.body,
            MessageBody::Commit {
                prev_log_index: LogIndex(1),
                leader_commit: LogIndex(1),
                ..
            }
        ),
        "{commit:?}"
    );
    follower.step(commit.clone()).unwrap();
    let ready = follower.ready();
    assert!(ready.messages.is_empty() && ready.persisted_messages.is_empty());
    assert_eq!(follower.status().commit, LogIndex(1));

    let ahead = Message {
        from: NodeId(1),
        to: NodeId(2),
        term: leader.status().term,
        body: MessageBody::Commit {
            prev_log_index: LogIndex(3),
            prev_log_term: leader.status().term,
            leader_commit: LogIndex(3),
        },
    };
    follower.step(ahead).unwrap();
    let ready = follower.ready();
    let answers: Vec<Message> = ready
        .messages
        .into_iter()
        .chain(ready.persisted_messages)
        .collect();
    assert!(
        matches!(
            answers.as_slice(),
            [Message {
                body: MessageBody::AppendResponse(AppendResult::Conflict {
                    rejected: LogIndex(3),
                    ..
                }),
                ..
            }]
        ),
        "{answers:?}"
    );
    assert_eq!(
        follower.status().commit,
        LogIndex(1),
        "nothing it lacks is committed"
    );
}
