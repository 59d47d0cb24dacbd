//! The simulator's faults on `MemLogStore`: crashes that keep a prefix of
//! the unsynced writes (torn appends included) and failed syncs.

use std::io;

use keel_raft::{HardState, LogIndex, NodeId, Term};
use keel_storage::conformance::{entries, entry, persist, read_all};
use keel_storage::{CrashKeep, LogStore, MemLogStore, StorageError};

fn hard_state(term: u64, commit: u64) -> HardState {
    HardState {
        term: Term(term),
        vote: Some(NodeId(1)),
        commit: LogIndex(commit),
    }
}

fn keep(writes: usize, torn_entries: usize) -> CrashKeep {
    CrashKeep {
        writes,
        torn_entries,
    }
}

/// Entries 1..=6 of term 1 synced, then an unsynced overwrite of 3..=6
/// with term 2.
fn synced_log_with_unsynced_overwrite() -> MemLogStore {
    let mut s = MemLogStore::new();
    s.append(&entries(1, 6, 1));
    persist(&mut s);
    s.append(&entries(3, 6, 2));
    s
}

#[test]
fn torn_append_keeps_its_first_entries_and_the_truncation_they_imply() {
    let mut s = synced_log_with_unsynced_overwrite();
    assert_eq!(s.unsynced_append_len(0), Some(4));
    s.crash_keeping(keep(0, 2));
    // As a WAL replays it: the record of entry 3 replaces everything from 3
    // on, the record of entry 4 follows it, and the rest never arrived.
    let expected: Vec<_> = entries(1, 2, 1)
        .into_iter()
        .chain(entries(3, 4, 2))
        .collect();
    assert_eq!(read_all(&s), expected);
    assert_eq!(s.unsynced_writes(), 0);
}

#[test]
fn crash_keeping_no_entry_of_an_overwrite_keeps_the_old_suffix() {
    let mut s = synced_log_with_unsynced_overwrite();
    s.crash();
    assert_eq!(read_all(&s), entries(1, 6, 1));
}

#[test]
fn kept_hard_state_comes_with_the_entries_written_before_it() {
    let mut s = MemLogStore::new();
    s.append(&entries(1, 3, 1));
    s.set_hard_state(hard_state(1, 3));
    s.append(&entries(4, 5, 1));
    assert_eq!(s.unsynced_writes(), 3);
    assert_eq!(
        s.unsynced_append_len(1),
        None,
        "a hard state cannot be torn"
    );

    let mut only_entries = s.clone();
    only_entries.crash_keeping(keep(1, 0));
    assert_eq!(read_all(&only_entries), entries(1, 3, 1));
    assert_eq!(only_entries.hard_state(), &HardState::default());

    let mut with_hard_state = s.clone();
    with_hard_state.crash_keeping(keep(2, 1));
    assert_eq!(read_all(&with_hard_state), entries(1, 4, 1));
    assert_eq!(with_hard_state.hard_state(), &hard_state(1, 3));

    s.crash_keeping(keep(3, 0));
    assert_eq!(read_all(&s), entries(1, 5, 1));
}

#[test]
fn no_crash_loses_a_synced_write() {
    let mut synced = MemLogStore::new();
    synced.append(&entries(1, 4, 1));
    synced.set_hard_state(hard_state(1, 4));
    synced.compact(LogIndex(2), Term(1));
    persist(&mut synced);
    synced.append(&entries(5, 6, 2));
    synced.set_hard_state(hard_state(2, 5));
    synced.append(&entries(7, 9, 2));
    let unsynced = synced.unsynced_writes();
    for writes in 0..=unsynced {
        let tearable = synced.unsynced_append_len(writes).unwrap_or(1);
        for torn_entries in 0..tearable {
            let mut s = synced.clone();
            s.crash_keeping(keep(writes, torn_entries));
            let at = format!("keeping {writes} writes and {torn_entries} torn entries");
            assert_eq!(s.first_index(), LogIndex(3), "{at}");
            assert_eq!(s.term(LogIndex(2)), Some(Term(1)), "{at}");
            assert_eq!(
                s.entries(LogIndex(3), LogIndex(5), u64::MAX).unwrap(),
                entries(3, 4, 1),
                "{at}"
            );
            assert!(s.hard_state().commit >= LogIndex(4), "{at}");
            assert!(s.last_index() >= s.hard_state().commit, "{at}");
        }
    }
}

#[test]
#[should_panic(expected = "cannot keep 2 writes of the 1 unsynced")]
fn keeping_more_writes_than_were_made_is_a_caller_bug() {
    let mut s = MemLogStore::new();
    s.append(&entries(1, 2, 1));
    s.crash_keeping(keep(2, 0));
}

#[test]
#[should_panic(expected = "only an unsynced append can be torn")]
fn tearing_a_hard_state_is_a_caller_bug() {
    let mut s = MemLogStore::new();
    s.set_hard_state(hard_state(1, 0));
    s.crash_keeping(keep(0, 1));
}

#[test]
#[should_panic(expected = "a torn append keeps fewer than its 2 entries")]
fn tearing_an_append_after_all_its_entries_is_a_caller_bug() {
    let mut s = MemLogStore::new();
    s.append(&entries(1, 2, 1));
    s.crash_keeping(keep(0, 2));
}

#[test]
fn failed_sync_makes_nothing_durable_and_poisons_the_store() {
    let mut s = MemLogStore::new();
    s.append(&entries(1, 2, 1));
    persist(&mut s);
    s.fail_next_sync(io::ErrorKind::StorageFull);
    s.append(&entries(3, 3, 1));
    match s.sync() {
        Err(StorageError::Io { op, source, .. }) => {
            assert_eq!(op, "fdatasync");
            assert_eq!(source.kind(), io::ErrorKind::StorageFull);
        }
        other => panic!("expected the injected I/O error, got {other:?}"),
    }
    assert_eq!(s.last_index(), LogIndex(3), "writes are still reported");
    s.append(&entries(4, 4, 1));
    assert!(matches!(
        s.sync(),
        Err(StorageError::Poisoned {
            op: "fdatasync",
            kind: io::ErrorKind::StorageFull,
            ..
        })
    ));
    assert_eq!(s.unsynced_writes(), 2, "nothing became durable");

    let mut lost = s.clone();
    lost.crash();
    assert_eq!(read_all(&lost), entries(1, 2, 1));
    persist(&mut lost); // a restart ends the poisoning

    // The failed fdatasync may still have written some of its batch.
    s.crash_keeping(keep(1, 0));
    assert_eq!(read_all(&s), entries(1, 3, 1));
    s.append(&entries(4, 4, 2));
    let proof = s.sync().expect("the recovered store syncs");
    assert_eq!(proof.last_index(), LogIndex(4));
}

#[test]
fn injected_failure_waits_for_a_sync_that_writes() {
    let mut s = MemLogStore::new();
    s.fail_next_sync(io::ErrorKind::Other);
    persist(&mut s); // nothing to write: returns at once, as the file store does
    s.append(&entries(1, 1, 1));
    assert!(matches!(s.sync(), Err(StorageError::Io { .. })));
}

#[test]
fn crash_clears_an_injected_failure_not_yet_hit() {
    let mut s = MemLogStore::new();
    s.fail_next_sync(io::ErrorKind::Other);
    s.crash();
    s.append(&[entry(1, 1)]);
    persist(&mut s);
}
