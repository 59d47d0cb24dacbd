//! Disk space: compaction in bounded steps, the NOSPACE cap, and
//! defragmentation.

use redb::{ReadableDatabase, ReadableTableMetadata};

use super::super::COMPACTION_STEP_ROWS;
use super::super::tables::KV;
use super::*;
use crate::proto::command::CompactionStep;
use crate::proto::etcdserverpb::alarm_request::AlarmAction;

fn rows(store: &Store) -> u64 {
    let txn = store.db().begin_read().unwrap();
    txn.open_table(KV).unwrap().len().unwrap()
}

fn compact(h: &mut Harness, revision: i64) -> Result<Outcome, KvError> {
    h.run(Op::Compaction(CompactionRequest {
        revision,
        physical: false,
    }))
}

fn step(h: &mut Harness) {
    h.run(Op::CompactionStep(CompactionStep {})).unwrap();
}

fn alarm(h: &mut Harness, action: AlarmAction, member_id: u64) -> AlarmResponse {
    let Outcome::Alarm(r) = h
        .run(Op::Alarm(AlarmRequest {
            action: action as i32,
            member_id,
            alarm: AlarmType::Nospace as i32,
        }))
        .unwrap()
    else {
        panic!("not an alarm response")
    };
    r
}

/// 2.5 step's worth of overwrites of 10 keys.
fn overwrite_history(h: &mut Harness) -> usize {
    let writes = COMPACTION_STEP_ROWS * 5 / 2;
    for i in 0..writes {
        h.put(&format!("k{}", i % 10), &i.to_string());
    }
    writes
}

#[test]
fn compaction_takes_effect_at_once_and_steps_delete_the_garbage_in_bounded_batches() {
    let mut h = Harness::new();
    let writes = overwrite_history(&mut h);
    let current = h.store.position().revision;
    let hash_before = h.store.hash_kv(0).unwrap();
    compact(&mut h, current).unwrap();

    // Reads below the compacted revision fail from the entry on, though
    // no row is deleted yet; the current state is whole.
    assert_eq!(rows(&h.store) as usize, writes);
    assert!(matches!(
        h.get("k1", "", current - 1),
        Err(KvError::Compacted)
    ));
    assert_eq!(h.get("k", "l", 0).unwrap().kvs.len(), 10);
    assert!(h.store.compaction_pending());
    let hash_compacted = h.store.hash_kv(0).unwrap();
    assert_ne!(hash_compacted.0, hash_before.0, "garbage is not hashed");

    let mut steps = 0;
    while h.store.compaction_pending() {
        let before = rows(&h.store) as usize;
        step(&mut h);
        steps += 1;
        assert!(
            before - rows(&h.store) as usize <= COMPACTION_STEP_ROWS,
            "a step deletes at most one batch"
        );
        // Any member, however far through the steps, hashes the same.
        assert_eq!(h.store.hash_kv(0).unwrap(), hash_compacted);
        assert!(steps < 10, "steps end");
    }
    assert_eq!(steps, 3);
    assert_eq!(rows(&h.store), 10, "one row per key is left");
    assert_eq!(h.get("k", "l", 0).unwrap().kvs.len(), 10);
    // A step with nothing to do changes nothing.
    step(&mut h);
    assert_eq!(rows(&h.store), 10);
}

#[test]
fn a_store_reopened_or_restored_half_way_through_the_steps_goes_on_alike() {
    let mut h = Harness::new();
    overwrite_history(&mut h);
    let current = h.store.position().revision;
    compact(&mut h, current - 5).unwrap();
    step(&mut h);
    let hash = h.store.hash_kv(0).unwrap();

    let mut snapshot = Vec::new();
    h.store.write_snapshot(&mut snapshot).unwrap();
    let restored = Harness::new();
    restored
        .store
        .restore_snapshot(&mut snapshot.as_slice(), 0)
        .unwrap();
    assert!(restored.store.compaction_pending());
    assert_eq!(restored.store.hash_kv(0).unwrap(), hash);

    h.store.flush().unwrap();
    let Harness { _dir, store, index } = h;
    drop(store);
    let mut reopened = Harness {
        store: Store::open(&_dir.path().join("kv.redb"), false).unwrap(),
        _dir,
        index,
    };
    assert!(reopened.store.compaction_pending());
    assert_eq!(reopened.store.hash_kv(0).unwrap(), hash);
    assert!(matches!(
        reopened.get("k1", "", current - 6),
        Err(KvError::Compacted)
    ));
    for _ in 0..10 {
        step(&mut reopened);
    }
    assert!(!reopened.store.compaction_pending());
    assert_eq!(reopened.store.hash_kv(0).unwrap(), hash);
}

#[test]
fn a_later_compaction_during_the_steps_starts_them_over() {
    let mut h = Harness::new();
    overwrite_history(&mut h);
    let current = h.store.position().revision;
    compact(&mut h, current / 2).unwrap();
    step(&mut h);
    step(&mut h);
    compact(&mut h, current).unwrap();
    for _ in 0..10 {
        step(&mut h);
    }
    assert!(!h.store.compaction_pending());
    assert_eq!(rows(&h.store), 10);
}

#[test]
fn nospace_alarm_refuses_writes_that_grow_the_store_and_nothing_else() {
    let mut h = Harness::new();
    h.put("a", "1");
    h.run(Op::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 7 }))
        .unwrap();
    let raised = alarm(&mut h, AlarmAction::Activate, 42);
    assert_eq!(raised.alarms.len(), 1);
    assert_eq!(h.store.alarms().len(), 1);

    let put = Op::Put(PutRequest {
        key: "b".into(),
        value: "2".into(),
        ..Default::default()
    });
    assert!(matches!(h.run(put.clone()), Err(KvError::NoSpace)));
    let txn_put = Op::Txn(TxnRequest {
        success: vec![RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: "b".into(),
                ..Default::default()
            })),
        }],
        ..Default::default()
    });
    assert!(matches!(h.run(txn_put), Err(KvError::NoSpace)));
    let grant = Op::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 8 });
    assert!(matches!(h.run(grant), Err(KvError::NoSpace)));
    assert_eq!(h.get("a", "", 0).unwrap().kvs[0].value, "1");

    h.run(Op::DeleteRange(DeleteRangeRequest {
        key: "a".into(),
        ..Default::default()
    }))
    .unwrap();
    let current = h.store.position().revision;
    compact(&mut h, current).unwrap();
    h.run(Op::LeaseRevoke(LeaseRevokeRequest { id: 7 }))
        .unwrap();
    let read_only = Op::Txn(TxnRequest {
        success: vec![RequestOp {
            request: Some(Request::RequestRange(RangeRequest {
                key: "a".into(),
                ..Default::default()
            })),
        }],
        ..Default::default()
    });
    h.run(read_only).unwrap();

    // Disarming someone else's alarm clears nothing; the raiser's does.
    assert!(alarm(&mut h, AlarmAction::Deactivate, 41).alarms.is_empty());
    assert!(matches!(h.run(put.clone()), Err(KvError::NoSpace)));
    assert_eq!(alarm(&mut h, AlarmAction::Deactivate, 42).alarms.len(), 1);
    h.run(put).unwrap();
}

#[test]
fn alarms_survive_a_reopen_and_a_snapshot() {
    let mut h = Harness::new();
    alarm(&mut h, AlarmAction::Activate, 42);
    let mut snapshot = Vec::new();
    h.store.write_snapshot(&mut snapshot).unwrap();
    let other = Harness::new();
    other
        .store
        .restore_snapshot(&mut snapshot.as_slice(), 0)
        .unwrap();
    assert_eq!(other.store.alarms(), h.store.alarms());
    h.store.flush().unwrap();
    let alarms = h.store.alarms();
    let Harness { _dir, store, .. } = h;
    drop(store);
    let reopened = Store::open(&_dir.path().join("kv.redb"), false).unwrap();
    assert_eq!(reopened.alarms(), alarms);
}

#[test]
fn alarm_requests_etcd_lacks_are_refused_alike_everywhere() {
    let mut h = Harness::new();
    for (action, alarm) in [(1, AlarmType::Corrupt as i32), (1, 0), (1, 9), (7, 1)] {
        let refused = h.run(Op::Alarm(AlarmRequest {
            action,
            member_id: 1,
            alarm,
        }));
        assert!(
            matches!(refused, Err(KvError::Unsupported(_))),
            "{action}/{alarm}: {refused:?}"
        );
    }
    assert!(h.store.alarms().is_empty());
    // Listing or clearing a type etcd does not know finds nothing.
    for action in [AlarmAction::Get, AlarmAction::Deactivate] {
        let Outcome::Alarm(r) = h
            .run(Op::Alarm(AlarmRequest {
                action: action as i32,
                member_id: 1,
                alarm: 9,
            }))
            .unwrap()
        else {
            panic!("not an alarm response")
        };
        assert!(r.alarms.is_empty());
    }
}

#[test]
fn defragment_gives_freed_pages_back_to_the_file_system() {
    let mut h = Harness::new();
    let big = "x".repeat(4096);
    for i in 0..2000 {
        h.put(&format!("k{}", i % 4), &big);
    }
    let current = h.store.position().revision;
    compact(&mut h, current).unwrap();
    while h.store.compaction_pending() {
        step(&mut h);
    }
    h.store.flush().unwrap();
    let before = h.store.usage().unwrap();
    assert!(before.in_use_bytes < before.size_bytes / 4, "{before:?}");
    let after = h.store.defragment().unwrap();
    assert!(
        after.size_bytes < before.size_bytes / 4,
        "{before:?} → {after:?}"
    );
    assert_eq!(h.get("k", "l", 0).unwrap().kvs.len(), 4);
    h.put("k0", "after");
    assert_eq!(h.get("k0", "", 0).unwrap().kvs[0].value, "after");
}

/// Status reports the last count of pages in use without waiting, and at
/// most one caller at a time is asked to count again once it is stale.
#[test]
fn the_pages_in_use_are_counted_once_per_period_and_reported_without_waiting() {
    let h = Harness::new();
    let uncounted = h.store.usage_last_counted();
    assert_eq!(
        uncounted.in_use_bytes, uncounted.size_bytes,
        "before any count the whole file is reported in use"
    );
    let max_age = std::time::Duration::from_secs(3600);
    assert!(h.store.claim_usage_count(max_age), "nothing counted yet");
    assert!(
        !h.store.claim_usage_count(max_age),
        "a second caller is not asked while a count runs"
    );
    let counted = h.store.usage().unwrap();
    assert_eq!(h.store.usage_last_counted(), counted);
    assert!(
        !h.store.claim_usage_count(max_age),
        "a fresh count is not redone"
    );
    assert!(
        h.store.claim_usage_count(std::time::Duration::ZERO),
        "a stale count is redone"
    );
}

/// The size the quota checks on every write is the file's as of the last
/// commit, read once per commit rather than once per request: it follows
/// the file as writes grow it and as a defragmentation shrinks it.
#[test]
fn the_known_size_follows_the_file_through_commits_and_defragmentation() {
    let mut h = Harness::new();
    let path = h._dir.path().join("kv.redb");
    let on_disk = || std::fs::metadata(&path).unwrap().len() as i64;
    let opened = h.store.known_db_size_bytes();
    assert_eq!(opened, on_disk());
    let big = "x".repeat(4096);
    for i in 0..2000 {
        h.put(&format!("k{}", i % 4), &big);
        assert_eq!(h.store.known_db_size_bytes(), on_disk(), "after put {i}");
    }
    let grown = h.store.known_db_size_bytes();
    assert!(grown > opened * 4, "{opened} → {grown}");
    let current = h.store.position().revision;
    compact(&mut h, current).unwrap();
    while h.store.compaction_pending() {
        step(&mut h);
    }
    h.store.flush().unwrap();
    h.store.defragment().unwrap();
    let shrunk = h.store.known_db_size_bytes();
    assert_eq!(shrunk, on_disk());
    assert!(shrunk < grown / 4, "{grown} → {shrunk}");
}
