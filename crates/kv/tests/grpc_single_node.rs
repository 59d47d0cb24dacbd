//! The etcd services through a real tonic client, against a single-member
//! server on 127.0.0.1 (`LocalConsensus` in place of Raft).

mod support;

use std::time::Duration;

use keel_kv::KvStateMachine;
use keel_kv::proto::etcdserverpb::kv_client::KvClient;
use keel_kv::proto::etcdserverpb::lease_client::LeaseClient;
use keel_kv::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use keel_kv::proto::etcdserverpb::watch_client::WatchClient;
use keel_kv::proto::etcdserverpb::watch_request::RequestUnion;
use keel_kv::proto::etcdserverpb::*;
use keel_kv::service::ServiceConfig;
use support::single_node::{self, CLUSTER_ID, MEMBER_ID};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::Channel;

const TEST_TIMEOUT: Duration = Duration::from_secs(30);

struct Server {
    _dir: tempfile::TempDir,
    channel: Channel,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let config = ServiceConfig {
        lease_ttl_min_seconds: 1,
        watch_progress_every: Duration::from_millis(200),
        lease_check_every: Duration::from_millis(100),
        ..ServiceConfig::new(dir.path())
    };
    let addr = single_node::start(dir.path(), config).await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Server { _dir: dir, channel }
}

fn put(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.to_owned().into(),
        value: value.to_owned().into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn put_range_txn_and_headers() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let server = start().await;
        let mut kv = KvClient::new(server.channel.clone());
        let resp = kv.put(put("a", "1")).await.unwrap().into_inner();
        let header = resp.header.unwrap();
        assert_eq!(
            (
                header.cluster_id,
                header.member_id,
                header.revision,
                header.raft_term
            ),
            (CLUSTER_ID, MEMBER_ID, 2, 1)
        );
        kv.put(put("b", "2")).await.unwrap();
        let range = kv
            .range(RangeRequest {
                key: "a".into(),
                range_end: "z".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(range.kvs.len(), 2);
        assert_eq!(range.header.unwrap().revision, 3);

        let empty = kv.put(put("", "x")).await.unwrap_err();
        assert_eq!(empty.code(), Code::InvalidArgument);
        assert_eq!(empty.message(), "etcdserver: key is not provided");

        let dup = kv
            .txn(TxnRequest {
                success: vec![
                    RequestOp {
                        request: Some(request_op::Request::RequestPut(put("k", "1"))),
                    },
                    RequestOp {
                        request: Some(request_op::Request::RequestPut(put("k", "2"))),
                    },
                ],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            dup.message(),
            "etcdserver: duplicate key given in txn request"
        );

        kv.compact(CompactionRequest {
            revision: 3,
            physical: true,
        })
        .await
        .unwrap();
        let old = kv
            .range(RangeRequest {
                key: "a".into(),
                revision: 1,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(old.code(), Code::OutOfRange);
        assert_eq!(
            old.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
    })
    .await
    .unwrap();
}

async fn open_watch(
    channel: Channel,
    create: WatchCreateRequest,
) -> (mpsc::Sender<WatchRequest>, tonic::Streaming<WatchResponse>) {
    let (tx, rx) = mpsc::channel(8);
    tx.send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(create)),
    })
    .await
    .unwrap();
    let stream = WatchClient::new(channel)
        .watch(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    (tx, stream)
}

#[tokio::test]
async fn watch_replays_history_then_follows_live_writes_exactly_once() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let server = start().await;
        let mut kv = KvClient::new(server.channel.clone());
        for i in 0..5 {
            kv.put(put("w", &i.to_string())).await.unwrap();
        }
        let (_tx, mut stream) = open_watch(
            server.channel.clone(),
            WatchCreateRequest {
                key: "w".into(),
                start_revision: 3,
                prev_kv: true,
                ..Default::default()
            },
        )
        .await;
        let created = stream.next().await.unwrap().unwrap();
        assert!(created.created);
        for i in 5..8 {
            kv.put(put("w", &i.to_string())).await.unwrap();
        }
        let mut revisions = Vec::new();
        while revisions.len() < 7 {
            let resp = stream.next().await.unwrap().unwrap();
            for e in resp.events {
                let kv = e.kv.unwrap();
                assert_eq!(e.prev_kv.unwrap().mod_revision, kv.mod_revision - 1);
                revisions.push(kv.mod_revision);
            }
        }
        assert_eq!(revisions, (3..=9).collect::<Vec<_>>());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn watch_on_compacted_revision_is_canceled_with_compact_revision() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let server = start().await;
        let mut kv = KvClient::new(server.channel.clone());
        for i in 0..4 {
            kv.put(put("c", &i.to_string())).await.unwrap();
        }
        kv.compact(CompactionRequest {
            revision: 3,
            physical: false,
        })
        .await
        .unwrap();
        let (_tx, mut stream) = open_watch(
            server.channel.clone(),
            WatchCreateRequest {
                key: "c".into(),
                start_revision: 1,
                ..Default::default()
            },
        )
        .await;
        assert!(stream.next().await.unwrap().unwrap().created);
        let canceled = stream.next().await.unwrap().unwrap();
        assert!(canceled.canceled);
        assert_eq!(canceled.compact_revision, 3);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn watch_progress_request_reports_caught_up_revision() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let server = start().await;
        let mut kv = KvClient::new(server.channel.clone());
        kv.put(put("p", "1")).await.unwrap();
        let (tx, mut stream) = open_watch(
            server.channel.clone(),
            WatchCreateRequest {
                key: "other".into(),
                ..Default::default()
            },
        )
        .await;
        assert!(stream.next().await.unwrap().unwrap().created);
        tx.send(WatchRequest {
            request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
        })
        .await
        .unwrap();
        let progress = stream.next().await.unwrap().unwrap();
        assert_eq!(progress.watch_id, -1);
        assert_eq!(progress.header.unwrap().revision, 2);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn expired_lease_deletes_its_keys_and_keepalive_postpones_expiry() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let server = start().await;
        let mut kv = KvClient::new(server.channel.clone());
        let mut lease = LeaseClient::new(server.channel.clone());
        let short = lease
            .lease_grant(LeaseGrantRequest { ttl: 1, id: 0 })
            .await
            .unwrap()
            .into_inner();
        let long = lease
            .lease_grant(LeaseGrantRequest { ttl: 1, id: 0 })
            .await
            .unwrap()
            .into_inner();
        for (key, id) in [("s", short.id), ("l", long.id)] {
            kv.put(PutRequest {
                lease: id,
                ..put(key, "v")
            })
            .await
            .unwrap();
        }
        let (tx, rx) = mpsc::channel(4);
        let mut replies = lease
            .lease_keep_alive(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        for _ in 0..6 {
            tx.send(LeaseKeepAliveRequest { id: long.id })
                .await
                .unwrap();
            assert_eq!(replies.next().await.unwrap().unwrap().ttl, 1);
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        let get = |key: &'static str| RangeRequest {
            key: key.into(),
            ..Default::default()
        };
        assert!(
            kv.range(get("s"))
                .await
                .unwrap()
                .into_inner()
                .kvs
                .is_empty()
        );
        assert_eq!(kv.range(get("l")).await.unwrap().into_inner().kvs.len(), 1);
        let ttl = lease
            .lease_time_to_live(LeaseTimeToLiveRequest {
                id: short.id,
                keys: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ttl.ttl, -1);
        let missing = lease
            .lease_revoke(LeaseRevokeRequest { id: short.id })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
        assert_eq!(missing.message(), "etcdserver: requested lease not found");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn snapshot_download_streams_the_store() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let server = start().await;
        let mut kv = KvClient::new(server.channel.clone());
        kv.put(put("s", "1")).await.unwrap();
        let mut chunks = MaintenanceClient::new(server.channel.clone())
            .snapshot(SnapshotRequest {})
            .await
            .unwrap()
            .into_inner();
        let mut blob = Vec::new();
        let mut remaining = u64::MAX;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.unwrap();
            blob.extend_from_slice(&chunk.blob);
            remaining = chunk.remaining_bytes;
        }
        assert_eq!(remaining, 0);
        assert_eq!(
            blob.len() % 512,
            32,
            "etcd's layout: 512-byte blocks + sha256"
        );
        let dir = tempfile::tempdir().unwrap();
        let restored = KvStateMachine::open(dir.path(), true).unwrap();
        restored.restore_snapshot(&mut blob.as_slice(), 0).unwrap();
        assert_eq!(restored.position().revision, 2);
    })
    .await
    .unwrap();
}
