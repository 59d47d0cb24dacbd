//! The node loop's unit tests: one loop driven by hand, no threads.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_raft::{Entry, Membership, Payload, RestoredState};
use keel_storage::{LogStore, MemLogStore};

use super::*;
use crate::error::PurgeError;

/// Node 2, a follower of a new three-member cluster.
fn follower() -> NodeLoop<()> {
    let membership = Membership::new([NodeId(1), NodeId(2), NodeId(3)], []).unwrap();
    let raft = Raft::new(
        keel_raft::Config::new(NodeId(2)),
        RestoredState::bootstrap(membership),
    )
    .unwrap();
    let config = Config::new(NodeId(2), 1, "127.0.0.1:0".parse().unwrap());
    NodeLoop::new(raft, config, 0)
}

fn snapshot_at(index: u64) -> (SnapshotMeta, Message) {
    let meta = SnapshotMeta {
        index: LogIndex(index),
        term: Term(2),
        membership: Membership::new([NodeId(1), NodeId(2), NodeId(3)], []).unwrap(),
    };
    let message = Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(2),
        body: MessageBody::InstallSnapshot { meta: meta.clone() },
    };
    (meta, message)
}

/// A leader's snapshot replaces the state machine only once the write
/// that compacts the log to it is durable, and a read that arrives
/// meanwhile waits behind the restore; the loop keeps taking input.
#[test]
fn restore_waits_for_its_write_and_later_applies_wait_behind_it() {
    let mut node = follower();
    let (meta, message) = snapshot_at(10);
    node.handle(Moment::ZERO, Input::SnapshotStaged(message));
    let effects = node.effects(Moment::ZERO);
    let publish = effects
        .iter()
        .position(|e| matches!(e, Effect::PublishSnapshot(m) if *m == meta))
        .expect("the accepted snapshot is published");
    let write = effects
        .iter()
        .position(|e| matches!(e, Effect::Write(b) if b.snapshot.as_ref() == Some(&meta)))
        .expect("the log is compacted to it in a write batch");
    assert!(publish < write, "published before the log depends on it");
    assert!(!effects.iter().any(|e| matches!(e, Effect::Apply(_))));
    let Effect::Write(batch) = &effects[write] else {
        unreachable!()
    };
    let (seq, durable) = (batch.seq, synced(batch));

    let read_ran = Arc::new(Mutex::new(false));
    let flag = read_ran.clone();
    let read: ReadFn<()> = Box::new(move |_| *flag.lock().unwrap() = true);
    let request = Request::Read {
        consistency: ReadConsistency::Stale,
        read,
    };
    node.handle(Moment::ZERO, Input::Request(request));
    assert!(
        !node
            .effects(Moment::ZERO)
            .iter()
            .any(|e| matches!(e, Effect::Apply(_))),
        "the read waits behind the restore"
    );

    let persisted = Input::Persisted {
        seq,
        durable,
        messages: Vec::new(),
    };
    node.handle(Moment::ZERO, persisted);
    let applies: Vec<ApplyOp<()>> = node
        .effects(Moment::ZERO)
        .into_iter()
        .filter_map(|e| match e {
            Effect::Apply(op) => Some(op),
            _ => None,
        })
        .collect();
    assert!(matches!(applies.as_slice(), [ApplyOp::Restore(m), ApplyOp::Read(_)] if *m == meta));
    assert!(!*read_ran.lock().unwrap());
}

/// A snapshot the core refuses (it covers less than the node holds)
/// is never published.
#[test]
fn a_refused_snapshot_is_not_published() {
    let mut node = follower();
    let (_, newer) = snapshot_at(10);
    node.handle(Moment::ZERO, Input::SnapshotStaged(newer));
    assert!(
        node.effects(Moment::ZERO)
            .iter()
            .any(|e| matches!(e, Effect::PublishSnapshot(_)))
    );
    let (_, older) = snapshot_at(5);
    node.handle(Moment::ZERO, Input::SnapshotStaged(older));
    assert!(
        !node
            .effects(Moment::ZERO)
            .iter()
            .any(|e| matches!(e, Effect::PublishSnapshot(_)))
    );
}

/// An AppendEntries from leader 1 in term 2, after `(prev, term 2)`.
fn append(prev: u64, entries: Vec<Entry>, leader_commit: u64) -> Input<()> {
    Input::Messages(vec![Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(2),
        body: MessageBody::AppendEntries {
            prev_log_index: LogIndex(prev),
            prev_log_term: if prev == 0 { Term(0) } else { Term(2) },
            entries,
            leader_commit: LogIndex(leader_commit),
        },
    }])
}

/// Writes `batch` to a fresh in-memory store and syncs it: what the
/// storage thread reports for the batch.
fn synced(batch: &WriteBatch) -> Option<DurableWrite> {
    let mut store = MemLogStore::new();
    batch.write_to(&mut store);
    let proof = store.sync().unwrap();
    DurableWrite::after_sync(batch.persisted_up_to, Some(&proof))
}

fn the_write(node: &mut NodeLoop<()>) -> WriteBatch {
    let mut writes = node
        .effects(Moment::ZERO)
        .into_iter()
        .filter_map(|e| match e {
            Effect::Write(batch) => Some(batch),
            _ => None,
        });
    let write = writes.next().expect("a write batch");
    assert!(writes.next().is_none(), "one write batch");
    write
}

fn entry(index: u64) -> Entry {
    Entry {
        term: Term(2),
        index: LogIndex(index),
        payload: Payload::Blank,
    }
}

fn persist(node: &mut NodeLoop<()>, batch: WriteBatch) {
    node.handle(
        Moment::ZERO,
        Input::Persisted {
            seq: batch.seq,
            durable: synced(&batch),
            messages: batch.messages,
        },
    );
}

/// Entries and a new term are synced; a write that only moves the commit
/// index is not, and while an earlier write is in flight the
/// acknowledgement waits its turn behind it.
#[test]
fn only_entries_terms_and_votes_need_a_sync() {
    let mut node = follower();
    node.handle(Moment::ZERO, append(0, vec![entry(1)], 0));
    let first = the_write(&mut node);
    assert!(first.must_sync, "a new term and an entry");

    node.handle(Moment::ZERO, append(1, Vec::new(), 1));
    let commit_only = the_write(&mut node);
    assert!(!commit_only.must_sync, "only the commit index moved");
    assert_eq!(
        commit_only.hard_state.map(|hs| hs.commit),
        Some(LogIndex(1))
    );
    assert!(
        !commit_only.messages.is_empty(),
        "the acknowledgement leaves after the write in flight, in order"
    );
}

/// With every write durable, an AppendEntries that only moves the commit
/// index is acknowledged at once and wakes no storage: the commit index
/// rides with the next write.
#[test]
fn a_commit_with_nothing_in_flight_is_acknowledged_without_a_write() {
    let mut node = follower();
    node.handle(Moment::ZERO, append(0, vec![entry(1)], 0));
    let first = the_write(&mut node);
    persist(&mut node, first);
    node.effects(Moment::ZERO);

    node.handle(Moment::ZERO, append(1, Vec::new(), 1));
    let effects = node.effects(Moment::ZERO);
    assert!(
        !effects.iter().any(|e| matches!(e, Effect::Write(_))),
        "nothing to write on its own"
    );
    assert!(
        effects.iter().any(|e| matches!(
            e,
            Effect::Send(Message {
                to: NodeId(1),
                body: MessageBody::AppendResponse(_),
                ..
            })
        )),
        "the acknowledgement leaves at once"
    );

    node.handle(Moment::ZERO, append(1, vec![entry(2)], 1));
    let next = the_write(&mut node);
    assert_eq!(
        next.hard_state.map(|hs| hs.commit),
        Some(LogIndex(1)),
        "the commit index rides with the next write"
    );
}

/// A snapshot compacts the log only when the next one is taken: the
/// entries between the two stay, so that a follower that fell behind
/// by less than a snapshot interval catches up from the log.
#[test]
fn the_log_is_compacted_one_snapshot_behind() {
    let mut node = follower();
    let entries = (1..=20)
        .map(|i| Entry {
            term: Term(2),
            index: LogIndex(i),
            payload: Payload::Blank,
        })
        .collect();
    node.handle(Moment::ZERO, append(0, entries, 20));
    let write = the_write(&mut node);
    node.handle(
        Moment::ZERO,
        Input::Persisted {
            seq: write.seq,
            durable: synced(&write),
            messages: write.messages,
        },
    );
    node.effects(Moment::ZERO);
    node.handle(Moment::ZERO, Input::Applied(LogIndex(20)));
    let taken = |index| SnapshotMeta {
        index: LogIndex(index),
        term: Term(2),
        membership: node.raft().membership().clone(),
    };
    let (first, second) = (taken(10), taken(20));

    node.handle(Moment::ZERO, Input::SnapshotCreated(first));
    let compactions = |node: &mut NodeLoop<()>| {
        node.effects(Moment::ZERO)
            .into_iter()
            .filter_map(|e| match e {
                Effect::Compact { index, .. } => Some(index),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(compactions(&mut node), Vec::new());
    assert_eq!(node.raft().status().first_index, LogIndex(1));

    node.handle(Moment::ZERO, Input::SnapshotCreated(second));
    assert_eq!(compactions(&mut node), vec![LogIndex(10)]);
    assert_eq!(node.raft().status().first_index, LogIndex(11));
}

/// Ticks follow the time the inputs carry, not the number of ticks.
#[test]
fn one_tick_input_after_a_stall_gives_every_tick_elapsed() {
    let mut node = follower();
    // Campaigning needs at least an election timeout of ticks: one
    // tick input after a long stall must bring them.
    node.handle(Moment::ZERO + Duration::from_secs(10), Input::Tick);
    node.effects(Moment::ZERO + Duration::from_secs(10));
    assert_ne!(
        node.raft().role(),
        Role::Follower,
        "the stall's ticks were given"
    );
}

/// Node 2 holding entries 1..=20, all applied, with a snapshot through 10
/// that the log is not yet compacted to (one snapshot behind).
fn follower_with_a_snapshot_at_10() -> NodeLoop<()> {
    let mut node = follower();
    let entries = (1..=20)
        .map(|i| Entry {
            term: Term(2),
            index: LogIndex(i),
            payload: Payload::Blank,
        })
        .collect();
    node.handle(Moment::ZERO, append(0, entries, 20));
    let write = the_write(&mut node);
    node.handle(
        Moment::ZERO,
        Input::Persisted {
            seq: write.seq,
            durable: synced(&write),
            messages: write.messages,
        },
    );
    node.effects(Moment::ZERO);
    node.handle(Moment::ZERO, Input::Applied(LogIndex(20)));
    let meta = SnapshotMeta {
        index: LogIndex(10),
        term: Term(2),
        membership: node.raft().membership().clone(),
    };
    node.handle(Moment::ZERO, Input::SnapshotCreated(meta));
    node.effects(Moment::ZERO);
    node
}

fn purge(node: &mut NodeLoop<()>, upto: u64) -> oneshot::Receiver<Result<LogIndex, PurgeError>> {
    let (reply, answer) = oneshot::channel();
    let upto = LogIndex(upto);
    node.handle(
        Moment::ZERO,
        Input::Request(Request::PurgeLog { upto, reply }),
    );
    answer
}

/// A purge compacts the store, and answers only once the sync behind
/// the compaction returned: the barrier batch queued after it.
#[test]
fn a_purge_answers_once_its_compaction_is_synced() {
    let mut node = follower_with_a_snapshot_at_10();
    let mut answer = purge(&mut node, 5);
    let effects = node.effects(Moment::ZERO);
    let [Effect::Compact { index, term }, Effect::Write(barrier)] = effects.as_slice() else {
        panic!("a compaction, then a barrier");
    };
    assert_eq!((*index, *term), (LogIndex(5), Term(2)));
    assert!(barrier.entries.is_empty() && barrier.messages.is_empty());
    assert!(answer.try_recv().is_err(), "not before the sync");
    assert_eq!(
        node.raft().status().first_index,
        LogIndex(1),
        "the core keeps its log"
    );

    let seq = barrier.seq;
    node.handle(
        Moment::ZERO,
        Input::Persisted {
            seq,
            durable: None,
            messages: Vec::new(),
        },
    );
    assert_eq!(answer.try_recv().unwrap().unwrap(), LogIndex(5));
}

/// Nothing past the newest snapshot goes; up to it, the core's log goes
/// too; less than already purged changes nothing.
#[test]
fn a_purge_reaches_the_newest_snapshot_and_no_further() {
    let mut node = follower_with_a_snapshot_at_10();
    let mut beyond = purge(&mut node, 11);
    assert!(node.effects(Moment::ZERO).is_empty());
    let refused = beyond.try_recv().unwrap();
    assert!(
        matches!(
            refused,
            Err(PurgeError::NotCovered {
                upto: LogIndex(11),
                snapshot: LogIndex(10)
            })
        ),
        "{refused:?}"
    );

    let _answer = purge(&mut node, 10);
    let effects = node.effects(Moment::ZERO);
    let compacted: Vec<LogIndex> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Compact { index, .. } => Some(*index),
            _ => None,
        })
        .collect();
    assert_eq!(compacted, vec![LogIndex(10)]);
    assert_eq!(node.raft().status().first_index, LogIndex(11));

    let mut again = purge(&mut node, 7);
    assert!(node.effects(Moment::ZERO).is_empty());
    assert_eq!(again.try_recv().unwrap().unwrap(), LogIndex(10));
}

/// The founding entry goes out in a write batch, and the caller hears
/// only once that batch is durable.
#[test]
fn initialize_answers_once_the_founding_entry_is_durable() {
    let raft = Raft::new(keel_raft::Config::new(NodeId(2)), RestoredState::joining()).unwrap();
    let config = Config::new(NodeId(2), 1, "127.0.0.1:0".parse().unwrap());
    let mut node: NodeLoop<()> = NodeLoop::new(raft, config, 0);
    let (reply, mut answer) = oneshot::channel();
    let membership = Membership::new([NodeId(1), NodeId(2), NodeId(3)], []).unwrap();
    let request = Request::Initialize {
        membership: membership.clone(),
        reply,
    };
    node.handle(Moment::ZERO, Input::Request(request));
    let write = the_write(&mut node);
    assert_eq!(write.entries.len(), 1);
    assert_eq!(write.entries[0].payload, Payload::Membership(membership));
    assert!(
        answer.try_recv().is_err(),
        "not before the write is durable"
    );

    node.handle(
        Moment::ZERO,
        Input::Persisted {
            seq: write.seq,
            durable: synced(&write),
            messages: write.messages,
        },
    );
    answer.try_recv().unwrap().unwrap();
}

/// The peers' addresses of the configuration in force.
fn peer_updates(effects: &[Effect<()>]) -> Vec<BTreeMap<NodeId, String>> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::SetPeers(addresses) => Some(addresses.clone()),
            _ => None,
        })
        .collect()
}

fn addresses(pairs: &[(u64, &str)]) -> BTreeMap<NodeId, String> {
    pairs
        .iter()
        .map(|&(id, addr)| (NodeId(id), addr.to_owned()))
        .collect()
}

/// The transport follows the configuration in force: at start, when an
/// appended entry changes it (before any message that may need it), and
/// when a new leader's entry truncates that change away. This node's own
/// address is never handed to its transport.
#[test]
fn the_transport_follows_the_configuration_in_force() {
    let founding = Membership::new([NodeId(1), NodeId(2), NodeId(3)], [])
        .unwrap()
        .with_addresses(addresses(&[(1, "a:1"), (2, "b:2"), (3, "c:3")]))
        .unwrap();
    let raft = Raft::new(
        keel_raft::Config::new(NodeId(2)),
        RestoredState::bootstrap(founding.clone()),
    )
    .unwrap();
    let config = Config::new(NodeId(2), 1, "127.0.0.1:0".parse().unwrap());
    let mut node: NodeLoop<()> = NodeLoop::new(raft, config, 0);
    assert_eq!(
        peer_updates(&node.effects(Moment::ZERO)),
        vec![addresses(&[(1, "a:1"), (3, "c:3")])]
    );
    assert!(peer_updates(&node.effects(Moment::ZERO)).is_empty());

    let grown = founding
        .apply(&MembershipChange::AddLearner {
            id: NodeId(4),
            addr: Some("d:4".to_owned()),
        })
        .unwrap()
        .apply(&MembershipChange::SetAddress {
            id: NodeId(3),
            addr: "c:33".to_owned(),
        })
        .unwrap();
    let change = Entry {
        term: Term(2),
        index: LogIndex(1),
        payload: Payload::Membership(grown),
    };
    node.handle(Moment::ZERO, append(0, vec![change], 0));
    let effects = node.effects(Moment::ZERO);
    assert_eq!(
        peer_updates(&effects),
        vec![addresses(&[(3, "c:33"), (4, "d:4")])]
    );
    let first_send = effects.iter().position(|e| matches!(e, Effect::Send(_)));
    let set_peers = effects
        .iter()
        .position(|e| matches!(e, Effect::SetPeers(_)));
    assert!(set_peers < first_send.or(Some(usize::MAX)));

    // A leader of term 3 replaces the uncommitted change.
    let replaced = Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(3),
        body: MessageBody::AppendEntries {
            prev_log_index: LogIndex(0),
            prev_log_term: Term(0),
            entries: vec![Entry {
                term: Term(3),
                index: LogIndex(1),
                payload: Payload::Blank,
            }],
            leader_commit: LogIndex(0),
        },
    };
    node.handle(Moment::ZERO, Input::Messages(vec![replaced]));
    assert_eq!(node.raft().membership(), &founding);
    assert_eq!(
        peer_updates(&node.effects(Moment::ZERO)),
        vec![addresses(&[(3, "c:3")])]
    );
}
