//! The requests that used to break a cluster, sent by a stock gRPC client
//! to a real three-member cluster: each gets etcd's answer or error, and
//! afterwards every member still runs, answers `Status`, and serves a put/get
//! round trip.

mod support;

use std::time::Duration;

use keel_kv::proto::etcdserverpb::compare::CompareResult;
use keel_kv::proto::etcdserverpb::kv_client::KvClient;
use keel_kv::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use keel_kv::proto::etcdserverpb::request_op::Request;
use keel_kv::proto::etcdserverpb::watch_client::WatchClient;
use keel_kv::proto::etcdserverpb::watch_request::RequestUnion;
use keel_kv::proto::etcdserverpb::{
    CompactionRequest, Compare, RangeRequest, RequestOp, StatusRequest, TxnRequest,
    WatchCreateRequest, WatchRequest,
};
use support::{Cluster, put, range};
use tonic::Code;

/// Every member runs, answers Status, and takes a write and reads it back.
async fn every_member_serves(cluster: &mut Cluster, round: &str) {
    for i in 0..cluster.members.len() {
        assert!(cluster.members[i].is_running(), "{round}: member {i} died");
        let mut maintenance = MaintenanceClient::new(cluster.channel(i).await);
        maintenance
            .status(StatusRequest {})
            .await
            .unwrap_or_else(|e| panic!("{round}: member {i} status: {e}"));
        let mut kv = KvClient::new(cluster.channel(i).await);
        let key = format!("{round}-m{i}");
        kv.put(put(&key, "v")).await.unwrap();
        let got = kv.range(range(&key)).await.unwrap().into_inner();
        assert_eq!(got.kvs[0].value, "v", "{round}: member {i}");
    }
}

fn put_op(key: &str, value: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(put(key, value))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_once_stopped_members_get_etcds_answers() {
    let mut cluster = Cluster::start(3, &[]).await;
    let leader = cluster.wait_leader().await;
    let follower = (leader + 1) % 3;

    // 1. A compare on target 9, outside the enum: etcd compares it as
    //    equal, so the success branch runs. Sent to a follower and to the
    //    leader.
    for i in [follower, leader] {
        let mut kv = KvClient::new(cluster.channel(i).await);
        let txn = TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal as i32,
                target: 9,
                key: "a".into(),
                ..Default::default()
            }],
            success: vec![put_op("target9", "ran")],
            failure: vec![],
        };
        let answer = kv.txn(txn).await.expect("etcd answers this txn");
        assert!(answer.into_inner().succeeded);
        every_member_serves(&mut cluster, &format!("target9-via-{i}")).await;
    }

    // 3. A txn whose range at a compacted revision follows a put: refused
    //    as a whole, with no write and no watch event.
    let mut kv = KvClient::new(cluster.channel(follower).await);
    kv.put(put("a", "before")).await.unwrap();
    kv.put(put("b", "1")).await.unwrap();
    let compacted = kv.put(put("b", "2")).await.unwrap().into_inner();
    let at = compacted.header.unwrap().revision;
    kv.compact(CompactionRequest {
        revision: at,
        physical: true,
    })
    .await
    .unwrap();

    let mut watch = WatchClient::new(cluster.channel(leader).await);
    let (requests, inbox) = tokio::sync::mpsc::channel(1);
    requests
        .send(WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: "a".into(),
                ..Default::default()
            })),
        })
        .await
        .unwrap();
    let mut events = watch
        .watch(tokio_stream::wrappers::ReceiverStream::new(inbox))
        .await
        .unwrap()
        .into_inner();
    let created = events.message().await.unwrap().unwrap();
    assert!(created.created);

    let txn = TxnRequest {
        success: vec![
            put_op("a", "after"),
            RequestOp {
                request: Some(Request::RequestRange(RangeRequest {
                    revision: at - 1,
                    ..range("b")
                })),
            },
        ],
        ..Default::default()
    };
    let refused = kv
        .txn(txn)
        .await
        .expect_err("a compacted range refuses the txn");
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");
    assert!(
        refused.message().contains("compacted"),
        "{}",
        refused.message()
    );
    for i in 0..3 {
        let mut kv = KvClient::new(cluster.channel(i).await);
        let a = kv.range(range("a")).await.unwrap().into_inner();
        assert_eq!(
            a.kvs[0].value, "before",
            "member {i} holds the refused write"
        );
    }
    // The next event on `a` is a later write, not the refused one.
    kv.put(put("a", "final")).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), events.message())
        .await
        .expect("the watch sees the later write")
        .unwrap()
        .unwrap();
    let kv_seen = next.events[0].kv.as_ref().unwrap();
    assert_eq!(kv_seen.value, "final");
    drop(requests);
    every_member_serves(&mut cluster, "compacted-range").await;
}
