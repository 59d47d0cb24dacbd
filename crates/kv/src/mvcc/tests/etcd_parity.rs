//! Answers that differed from etcd 3.4's until `keel-difftest` found them;
//! each test pins etcd's answer.


use super::Harness;
use crate::error::KvError;
use crate::mvcc::{EntryPayload, Store};
use crate::proto::command::command::Op;
use crate::proto::command::command_result::Result as Outcome;
use crate::proto::etcdserverpb::*;

fn compact(h: &mut Harness, revision: i64) -> Result<Outcome, KvError> {
    h.run(Op::Compaction(CompactionRequest {
        revision,
        physical: false,
    }))
}

#[test]
fn a_store_never_compacted_compacts_at_zero_once_and_says_so_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.redb");
    {
        let store = Store::open(&path, true).unwrap();
        assert_eq!(store.hash_kv(0).unwrap().1, -1);
        // A write, so that the store records its meta.
        let put = crate::command::encode(Op::Put(PutRequest {
            key: "a".into(),
            ..Default::default()
        }));
        store.apply(&[(1, 1, EntryPayload::Command(&put))]).unwrap();
    }
    let store = Store::open(&path, true).unwrap();
    assert_eq!(store.hash_kv(0).unwrap().1, -1);

    let mut h = Harness::new();
    assert!(matches!(compact(&mut h, -1), Err(KvError::Compacted)));
    assert!(matches!(compact(&mut h, 0), Ok(Outcome::Compaction(_))));
    assert_eq!(h.store.hash_kv(0).unwrap().1, 0);
    assert!(matches!(compact(&mut h, 0), Err(KvError::Compacted)));
}

#[test]
fn hash_kv_refuses_the_compacted_revision_itself() {
    let mut h = Harness::new();
    h.put("a", "1");
    h.put("a", "2");
    compact(&mut h, 2).unwrap();
    assert!(matches!(h.store.hash_kv(2), Err(KvError::Compacted)));
    assert_eq!(h.store.hash_kv(3).unwrap().1, 2);
    // A range may still read at the compacted revision.
    assert!(h.get("a", "", 2).is_ok());
}
