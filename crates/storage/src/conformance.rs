//! The contract of [`LogStore`], as executable checks any implementation
//! can run, so the simulator's in-memory store and the file store are held
//! to the same behaviour. The contract of snapshot stores has its own
//! suite, [`snapshots`].
//!
//! For your own store, one line in a test runs every check:
//! [`check`]`(create, crash_and_recover)`, with a function that makes an
//! empty store and one that does to a store what a power loss and restart
//! would. For more control (per-case harness state, crashes that keep a
//! prefix of the unsynced writes) implement [`Harness`] and call
//! [`run_all`] or [`cases`]; feed [`check_against_model`] random operation
//! sequences (the crate's own tests generate them with proptest). Every
//! check panics with a message naming what differed.
//!
//! The contract lets a crash keep a prefix of the writes made since the
//! last sync. A harness says whether its crashes do
//! ([`Harness::CRASH_KEEPS`]): if they keep nothing, the checks demand that
//! exactly the durable state survives, the sharpest test of where a
//! store's sync boundary lies; if they keep a prefix, the checks accept any
//! prefix and go on from the one that survived.
//!
//! ```
//! use keel_storage::{MemLogStore, conformance::{self, Harness}};
//!
//! struct Mem;
//! impl Harness for Mem {
//!     type Store = MemLogStore;
//!     fn create(&mut self) -> MemLogStore { MemLogStore::new() }
//!     fn crash_and_recover(&mut self, mut store: MemLogStore) -> MemLogStore {
//!         store.crash();
//!         store
//!     }
//! }
//! conformance::run_all(|| Mem);
//! ```

use bytes::Bytes;
use keel_raft::{Entry, HardState, LogIndex, Membership, NodeId, Payload, Term};

use crate::error::StorageError;
use crate::store::LogStore;

mod model;
pub mod snapshots;

use model::{Model, Write, recovered, write_all};
pub use model::{Op, check_against_model};

/// Creates stores and crashes them.
pub trait Harness {
    /// The store under test.
    type Store: LogStore;
    /// What [`Harness::crash_and_recover`] keeps of the writes made since
    /// the last successful sync.
    const CRASH_KEEPS: CrashKeeps = CrashKeeps::Nothing;
    /// A new, empty store.
    fn create(&mut self) -> Self::Store;
    /// Crashes `store`, keeping what [`Harness::CRASH_KEEPS`] says of its
    /// unsynced writes, and returns the store recovered from what the crash
    /// left on its disk.
    fn crash_and_recover(&mut self, store: Self::Store) -> Self::Store;
}

/// What a harness's crash keeps of the writes made since the last
/// successful sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashKeeps {
    /// None of them, as a power loss before the next sync began: the
    /// checks demand exactly the durable state.
    Nothing,
    /// Some prefix of them, in order, possibly ending part way through an
    /// append, as [`crate::CrashKeep`] describes: the checks accept any.
    APrefix,
}

/// One named check of the suite.
pub type Case<H> = (&'static str, fn(&mut H));

/// Every named check, for callers that want to run them one by one.
pub fn cases<H: Harness>() -> Vec<Case<H>> {
    vec![
        ("new_store_is_empty", new_store_is_empty),
        (
            "appends_are_visible_at_once_and_durable_after_sync",
            appends_are_visible_at_once_and_durable_after_sync,
        ),
        (
            "unsynced_writes_are_lost_in_a_crash",
            unsynced_writes_are_lost_in_a_crash,
        ),
        (
            "overwrite_discards_the_conflicting_suffix_durably",
            overwrite_discards_the_conflicting_suffix_durably,
        ),
        (
            "unsynced_overwrite_is_undone_by_a_crash",
            unsynced_overwrite_is_undone_by_a_crash,
        ),
        (
            "hard_state_is_durable_only_after_sync",
            hard_state_is_durable_only_after_sync,
        ),
        (
            "compaction_keeps_the_suffix_and_the_snapshot_term",
            compaction_keeps_the_suffix_and_the_snapshot_term,
        ),
        (
            "compaction_at_a_conflicting_term_discards_the_log",
            compaction_at_a_conflicting_term_discards_the_log,
        ),
        (
            "compaction_beyond_the_log_empties_it",
            compaction_beyond_the_log_empties_it,
        ),
        (
            "entries_respect_max_bytes_but_return_one",
            entries_respect_max_bytes_but_return_one,
        ),
        (
            "entries_outside_the_log_are_typed_errors",
            entries_outside_the_log_are_typed_errors,
        ),
        (
            "every_payload_kind_survives_a_crash",
            every_payload_kind_survives_a_crash,
        ),
        (
            "long_log_with_compactions_survives_crashes",
            long_log_with_compactions_survives_crashes,
        ),
    ]
}

/// Runs every check, each on a fresh harness from `make`.
pub fn run_all<H: Harness>(mut make: impl FnMut() -> H) {
    for (name, case) in cases::<H>() {
        eprintln!("conformance: {name}");
        case(&mut make());
    }
}

/// Runs every check against stores made by `create`, crashing them with
/// `crash_and_recover`, which must return the store as a restart after a
/// power loss would find it: everything its last successful
/// [`LogStore::sync`] covered, and none of the writes since. Panics,
/// naming the check and what differed, if the store breaks the contract.
///
/// ```
/// use keel_storage::{conformance, MemLogStore};
///
/// conformance::check(MemLogStore::new, |mut store: MemLogStore| {
///     store.crash();
///     store
/// });
/// ```
pub fn check<S, C, R>(create: C, crash_and_recover: R)
where
    S: LogStore,
    C: FnMut() -> S,
    R: FnMut(S) -> S,
{
    let mut harness = Closures {
        create,
        crash_and_recover,
    };
    for (name, case) in cases::<Closures<C, R>>() {
        eprintln!("conformance: {name}");
        case(&mut harness);
    }
}

/// The [`Harness`] of [`check`] (and of [`snapshots::check`]): its two
/// functions.
struct Closures<C, R> {
    create: C,
    crash_and_recover: R,
}

impl<S, C, R> Harness for Closures<C, R>
where
    S: LogStore,
    C: FnMut() -> S,
    R: FnMut(S) -> S,
{
    type Store = S;

    fn create(&mut self) -> S {
        (self.create)()
    }

    fn crash_and_recover(&mut self, store: S) -> S {
        (self.crash_and_recover)(store)
    }
}

/// A command entry whose payload names its index and term, so an
/// overwritten entry and its replacement never compare equal.
pub fn entry(index: u64, term: u64) -> Entry {
    Entry {
        term: Term(term),
        index: LogIndex(index),
        payload: Payload::Command(Bytes::from(format!("{index}@{term}"))),
    }
}

/// Entries `from ..= to`, all with `term`.
pub fn entries(from: u64, to: u64, term: u64) -> Vec<Entry> {
    (from..=to).map(|i| entry(i, term)).collect()
}

/// The whole log as the store reports it.
pub fn read_all<S: LogStore>(store: &S) -> Vec<Entry> {
    store
        .entries(store.first_index(), store.last_index().next(), u64::MAX)
        .expect("the whole log is readable")
}

/// Syncs `store`, for checks that need durability but not the proof.
pub fn persist<S: LogStore>(store: &mut S) {
    let _proof = store.sync().expect("sync succeeds");
}

fn hard_state(term: u64, vote: Option<u64>, commit: u64) -> HardState {
    HardState {
        term: Term(term),
        vote: vote.map(NodeId),
        commit: LogIndex(commit),
    }
}

/// A new store is empty: first index 1, last index 0.
pub fn new_store_is_empty<H: Harness>(h: &mut H) {
    let mut s = h.create();
    assert_eq!(s.first_index(), LogIndex(1));
    assert_eq!(s.last_index(), LogIndex(0));
    assert_eq!(s.term(LogIndex(0)), Some(Term(0)));
    assert_eq!(s.term(LogIndex(1)), None);
    assert_eq!(s.last_term(), Term(0));
    assert_eq!(s.hard_state(), &HardState::default());
    assert!(
        s.entries(LogIndex(1), LogIndex(1), u64::MAX)
            .unwrap()
            .is_empty()
    );
    let durable = s.sync().unwrap();
    assert_eq!(
        (durable.last_index(), durable.last_term()),
        (LogIndex(0), Term(0))
    );
}

/// Appended entries read back at once, and survive a crash once synced.
pub fn appends_are_visible_at_once_and_durable_after_sync<H: Harness>(h: &mut H) {
    let mut s = h.create();
    s.append(&entries(1, 3, 1));
    s.append(&entries(4, 5, 2));
    assert_eq!(
        read_all(&s),
        entries(1, 3, 1)
            .into_iter()
            .chain(entries(4, 5, 2))
            .collect::<Vec<_>>()
    );
    assert_eq!((s.last_index(), s.last_term()), (LogIndex(5), Term(2)));
    let durable = s.sync().unwrap();
    assert_eq!(
        (durable.last_index(), durable.last_term()),
        (LogIndex(5), Term(2))
    );
    let s = h.crash_and_recover(s);
    assert_eq!(read_all(&s).len(), 5);
    assert_eq!(s.term(LogIndex(3)), Some(Term(1)));
    assert_eq!(
        s.entries(LogIndex(4), LogIndex(5), u64::MAX).unwrap(),
        vec![entry(4, 2)]
    );
}

/// A crash keeps what the last sync covered, and of later writes only
/// what [`Harness::CRASH_KEEPS`] allows.
pub fn unsynced_writes_are_lost_in_a_crash<H: Harness>(h: &mut H) {
    let mut s = h.create();
    s.append(&entries(1, 2, 1));
    persist(&mut s);
    let durable = Model::of(&s);
    let unsynced = [
        Write::Append(entries(3, 4, 1)),
        Write::HardState(hard_state(5, Some(2), 1)),
    ];
    write_all(&mut s, &unsynced);
    let s = h.crash_and_recover(s);
    recovered::<H>(&s, &durable.crash_outcomes(&unsynced), "after the crash");
}

/// Appending inside the log replaces the entries from there on, and a
/// synced overwrite survives a crash.
pub fn overwrite_discards_the_conflicting_suffix_durably<H: Harness>(h: &mut H) {
    let mut s = h.create();
    s.append(&entries(1, 6, 1));
    persist(&mut s);
    s.append(&entries(4, 4, 2));
    assert_eq!(s.last_index(), LogIndex(4));
    assert_eq!(s.term(LogIndex(5)), None);
    let durable = s.sync().unwrap();
    assert_eq!(
        (durable.last_index(), durable.last_term()),
        (LogIndex(4), Term(2))
    );
    let mut s = h.crash_and_recover(s);
    let expected: Vec<_> = entries(1, 3, 1).into_iter().chain([entry(4, 2)]).collect();
    assert_eq!(read_all(&s), expected);
    // Appending right after the overwrite continues the new suffix.
    s.append(&entries(5, 5, 2));
    persist(&mut s);
    let s = h.crash_and_recover(s);
    assert_eq!(
        s.entries(LogIndex(4), LogIndex(6), u64::MAX).unwrap(),
        vec![entry(4, 2), entry(5, 2)]
    );
}

/// A crash before an overwrite is synced leaves one of the outcomes
/// [`Harness::CRASH_KEEPS`] allows.
pub fn unsynced_overwrite_is_undone_by_a_crash<H: Harness>(h: &mut H) {
    let mut s = h.create();
    s.append(&entries(1, 6, 1));
    persist(&mut s);
    let durable = Model::of(&s);
    let unsynced = [Write::Append(entries(2, 2, 3))];
    write_all(&mut s, &unsynced);
    assert_eq!(s.last_index(), LogIndex(2));
    let s = h.crash_and_recover(s);
    recovered::<H>(&s, &durable.crash_outcomes(&unsynced), "after the crash");
}

/// A hard state survives a crash only once a sync covered it.
pub fn hard_state_is_durable_only_after_sync<H: Harness>(h: &mut H) {
    let mut s = h.create();
    let voted = hard_state(3, Some(2), 0);
    s.set_hard_state(voted.clone());
    assert_eq!(s.hard_state(), &voted, "visible at once");
    let proof = s.sync().unwrap();
    assert_eq!(proof.hard_state(), &voted);
    let durable = Model::of(&s);
    let unsynced = [Write::HardState(hard_state(4, None, 0))];
    write_all(&mut s, &unsynced);
    let mut s = h.crash_and_recover(s);
    recovered::<H>(
        &s,
        &durable.crash_outcomes(&unsynced),
        "the unsynced term-4 state",
    );
    s.set_hard_state(hard_state(4, Some(3), 0));
    persist(&mut s);
    let s = h.crash_and_recover(s);
    assert_eq!(s.hard_state(), &hard_state(4, Some(3), 0));
}

/// Compaction drops the entries up to its index, keeps the rest, and
/// remembers the term at the compaction point.
pub fn compaction_keeps_the_suffix_and_the_snapshot_term<H: Harness>(h: &mut H) {
    let mut s = h.create();
    s.append(&entries(1, 5, 1));
    s.append(&entries(6, 10, 2));
    persist(&mut s);
    s.compact(LogIndex(7), Term(2));
    assert_eq!(s.first_index(), LogIndex(8));
    assert_eq!(s.term(LogIndex(7)), Some(Term(2)));
    assert_eq!(s.term(LogIndex(6)), None);
    s.compact(LogIndex(3), Term(1)); // behind the compaction point: a no-op
    assert_eq!(s.first_index(), LogIndex(8));
    persist(&mut s);
    let mut s = h.crash_and_recover(s);
    assert_eq!(s.first_index(), LogIndex(8));
    assert_eq!(s.term(LogIndex(7)), Some(Term(2)));
    assert_eq!(read_all(&s), entries(8, 10, 2));
    // The first entry after the snapshot may still be overwritten.
    s.append(&entries(8, 8, 3));
    persist(&mut s);
    let s = h.crash_and_recover(s);
    assert_eq!(read_all(&s), vec![entry(8, 3)]);
    assert_eq!(s.term(LogIndex(7)), Some(Term(2)));
}

/// Compacting at an index whose term differs from the log's discards the
/// whole log.
pub fn compaction_at_a_conflicting_term_discards_the_log<H: Harness>(h: &mut H) {
    let mut s = h.create();
    s.append(&entries(1, 10, 1));
    persist(&mut s);
    s.compact(LogIndex(5), Term(4));
    assert_eq!(
        (s.first_index(), s.last_index()),
        (LogIndex(6), LogIndex(5))
    );
    assert_eq!(s.last_term(), Term(4));
    persist(&mut s);
    let mut s = h.crash_and_recover(s);
    assert_eq!(
        (s.first_index(), s.last_index(), s.last_term()),
        (LogIndex(6), LogIndex(5), Term(4))
    );
    s.append(&entries(6, 7, 4));
    persist(&mut s);
    let s = h.crash_and_recover(s);
    assert_eq!(read_all(&s), entries(6, 7, 4));
}

/// Compacting past the last entry (a snapshot ahead of the log) leaves the
/// log empty after it.
pub fn compaction_beyond_the_log_empties_it<H: Harness>(h: &mut H) {
    let mut s = h.create();
    s.append(&entries(1, 3, 1));
    s.compact(LogIndex(100), Term(7));
    assert_eq!(
        (s.first_index(), s.last_index(), s.last_term()),
        (LogIndex(101), LogIndex(100), Term(7))
    );
    let durable = s.sync().unwrap();
    assert_eq!(
        (durable.last_index(), durable.last_term()),
        (LogIndex(100), Term(7))
    );
    let s = h.crash_and_recover(s);
    assert_eq!(
        (s.first_index(), s.last_index(), s.last_term()),
        (LogIndex(101), LogIndex(100), Term(7))
    );
    assert!(read_all(&s).is_empty());
}

/// `entries` stops at `max_bytes`, but returns at least one entry.
pub fn entries_respect_max_bytes_but_return_one<H: Harness>(h: &mut H) {
    let mut s = h.create();
    s.append(&entries(1, 20, 1));
    persist(&mut s);
    let s = h.crash_and_recover(s);
    for (lo, hi) in [(1, 21), (5, 21)] {
        let one = entry(lo, 1).size_bytes();
        let got = s.entries(LogIndex(lo), LogIndex(hi), 0).unwrap();
        assert_eq!(
            got,
            vec![entry(lo, 1)],
            "a zero budget still returns one entry"
        );
        let got = s
            .entries(LogIndex(lo), LogIndex(hi), 3 * one + one / 2)
            .unwrap();
        assert_eq!(got, entries(lo, lo + 2, 1), "three entries fit the budget");
    }
}

/// Reading before the first index or past the last gives
/// [`StorageError::Compacted`] or [`StorageError::Unavailable`].
pub fn entries_outside_the_log_are_typed_errors<H: Harness>(h: &mut H) {
    let mut s = h.create();
    s.append(&entries(1, 10, 1));
    s.compact(LogIndex(4), Term(1));
    persist(&mut s);
    assert!(matches!(
        s.entries(LogIndex(4), LogIndex(6), u64::MAX),
        Err(StorageError::Compacted {
            requested: LogIndex(4),
            first_index: LogIndex(5)
        })
    ));
    assert!(matches!(
        s.entries(LogIndex(9), LogIndex(12), u64::MAX),
        Err(StorageError::Unavailable {
            last_index: LogIndex(10),
            ..
        })
    ));
    assert_eq!(
        s.entries(LogIndex(10), LogIndex(11), u64::MAX).unwrap(),
        vec![entry(10, 1)]
    );
}

/// Blank, command and membership entries read back unchanged after a crash.
pub fn every_payload_kind_survives_a_crash<H: Harness>(h: &mut H) {
    let membership = Membership::from_parts(
        [NodeId(4), NodeId(5)].into(),
        [NodeId(1), NodeId(2), NodeId(3)].into(),
        [NodeId(9)].into(),
    )
    .and_then(|m| {
        m.with_addresses(
            [
                (NodeId(1), "10.0.0.1:2380".to_owned()),
                (NodeId(9), "learner-9.example:2380".to_owned()),
            ]
            .into(),
        )
    })
    .expect("a valid joint configuration");
    let log = vec![
        Entry {
            term: Term(1),
            index: LogIndex(1),
            payload: Payload::Blank,
        },
        Entry {
            term: Term(1),
            index: LogIndex(2),
            payload: Payload::Command(Bytes::new()),
        },
        Entry {
            term: Term(1),
            index: LogIndex(3),
            payload: Payload::Membership(membership),
        },
        Entry {
            term: Term(1),
            index: LogIndex(4),
            payload: Payload::Command(Bytes::from(vec![0xA5; 5000])),
        },
    ];
    let mut s = h.create();
    s.append(&log);
    persist(&mut s);
    let s = h.crash_and_recover(s);
    assert_eq!(read_all(&s), log);
}

/// A long log, compacted and crashed round after round, keeps its synced
/// entries and the hard state set at its start.
pub fn long_log_with_compactions_survives_crashes<H: Harness>(h: &mut H) {
    let mut s = h.create();
    // Set once, early: compaction must never lose it with old log segments.
    let voted = hard_state(2, Some(1), 0);
    s.set_hard_state(voted.clone());
    let mut expected: Vec<Entry> = Vec::new();
    for round in 0..30u64 {
        let from = expected.len() as u64 + 1;
        let batch: Vec<_> = (from..from + 20)
            .map(|i| Entry {
                term: Term(1),
                index: LogIndex(i),
                payload: Payload::Command(Bytes::from(vec![i as u8; 50 + (i as usize * 37) % 400])),
            })
            .collect();
        s.append(&batch);
        expected.extend(batch);
        persist(&mut s);
        if round % 7 == 6 {
            let upto = expected.len() as u64 - 30;
            s.compact(LogIndex(upto), Term(1));
            persist(&mut s);
            s = h.crash_and_recover(s);
            assert_eq!(s.first_index(), LogIndex(upto + 1));
        }
    }
    let s = h.crash_and_recover(s);
    let first = s.first_index().0 as usize;
    assert_eq!(read_all(&s), expected[first - 1..]);
    assert_eq!(s.hard_state(), &voted);
}
