//! A log that already holds poisoned entries — commands that an older
//! build accepted and that stopped every member at apply — starts: every
//! member applies them as rejections, agrees on the result, and serves.

mod support;

use keel_kv::command::encode;
use keel_kv::proto::command::command::Op;
use keel_kv::proto::etcdserverpb::compare::CompareResult;
use keel_kv::proto::etcdserverpb::kv_client::KvClient;
use keel_kv::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use keel_kv::proto::etcdserverpb::request_op::Request;
use keel_kv::proto::etcdserverpb::{
    CompactionRequest, Compare, HashKvRequest, RangeRequest, RequestOp, StatusRequest, TxnRequest,
};
use keel_raft::{Entry, LogIndex, Payload};
use keel_storage::{FileLogStore, LogConfig, LogStore};
use support::{Cluster, put, range};

/// What the old build let into the log: a txn comparing on target 9, the
/// bytes a stranger sent to the forwarding endpoint, and a txn whose range
/// at a compacted revision came after its put.
fn poisoned_commands() -> Vec<Vec<u8>> {
    let unknown_target = encode(Op::Txn(TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal as i32,
            target: 9,
            key: "a".into(),
            ..Default::default()
        }],
        success: vec![RequestOp {
            request: Some(Request::RequestPut(put("target9", "ran"))),
        }],
        ..Default::default()
    }));
    let compacted_range = encode(Op::Txn(TxnRequest {
        success: vec![
            RequestOp {
                request: Some(Request::RequestPut(put("a", "after"))),
            },
            RequestOp {
                request: Some(Request::RequestRange(RangeRequest {
                    revision: 1,
                    ..range("b")
                })),
            },
        ],
        ..Default::default()
    }));
    vec![
        unknown_target.to_vec(),
        b"\xde\xad\xbe\xef\x00\x01\x02".to_vec(),
        compacted_range.to_vec(),
    ]
}

/// Appends `commands` to the log in `member_dir`, at the last entry's term,
/// as if the leader of that term had replicated them before the upgrade.
fn append_to_log(member_dir: &std::path::Path, commands: &[Vec<u8>]) {
    let mut log = FileLogStore::open(member_dir.join("raft").join("log"), LogConfig::default())
        .expect("the member's log opens");
    let term = log.last_term();
    let first = log.last_index().0 + 1;
    let entries: Vec<Entry> = commands
        .iter()
        .enumerate()
        .map(|(i, data)| Entry {
            term,
            index: LogIndex(first + i as u64),
            payload: Payload::Command(data.clone().into()),
        })
        .collect();
    log.append(&entries);
    let durable = log.sync().expect("the appended entries are durable");
    assert_eq!(
        durable.last_index(),
        LogIndex(first + commands.len() as u64 - 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_whose_logs_hold_poisoned_entries_start_and_agree() {
    let mut cluster = Cluster::start(3, &[]).await;
    let leader = cluster.wait_leader().await;
    let mut kv = KvClient::new(cluster.channel(leader).await);
    kv.put(put("a", "before")).await.unwrap();
    kv.put(put("b", "1")).await.unwrap();
    kv.put(put("b", "2")).await.unwrap();
    kv.compact(CompactionRequest {
        revision: 3,
        physical: true,
    })
    .await
    .unwrap();

    for i in 0..3 {
        cluster.stop(i).await;
    }
    let poison = poisoned_commands();
    for m in &cluster.members {
        append_to_log(&m.dir, &poison);
    }
    for i in 0..3 {
        cluster.spawn(i, "new");
    }
    let leader = cluster.wait_leader().await;
    for i in 0..3 {
        cluster.wait_serving(i).await;
    }

    // A new leader commits the poisoned entries with its first entry; a
    // write after them applies on every member only once they did.
    let mut kv = KvClient::new(cluster.channel(leader).await);
    kv.put(put("after-upgrade", "ok")).await.unwrap();
    for i in 0..3 {
        cluster.wait_serving(i).await;
        let mut kv = KvClient::new(cluster.channel(i).await);
        let a = kv.range(range("a")).await.unwrap().into_inner();
        assert_eq!(a.kvs[0].value, "before", "member {i}: the failed txn wrote");
        let ran = kv.range(range("target9")).await.unwrap().into_inner();
        assert_eq!(ran.kvs.len(), 1, "member {i}: target 9 compares as equal");
        kv.put(put(&format!("m{i}"), "round trip")).await.unwrap();
        let mut maintenance = MaintenanceClient::new(cluster.channel(i).await);
        maintenance.status(StatusRequest {}).await.unwrap();
    }
    assert!(
        cluster_hashes_agree(&cluster).await,
        "members hold different data after applying the poisoned entries"
    );
}

/// Whether every member reports the same KV hash at the same revision,
/// polled for a few seconds while followers catch up.
async fn cluster_hashes_agree(cluster: &Cluster) -> bool {
    for _ in 0..50 {
        let mut seen = Vec::new();
        for i in 0..3 {
            let mut maintenance = MaintenanceClient::new(cluster.channel(i).await);
            if let Ok(h) = maintenance.hash_kv(HashKvRequest { revision: 0 }).await {
                let h = h.into_inner();
                seen.push((h.hash, h.header.map(|h| h.revision)));
            }
        }
        if seen.len() == 3 && seen.windows(2).all(|w| w[0] == w[1]) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}
