//! Watches side by side with etcd 3.4: one scripted session of watch
//! requests and writes, against a three-member Keel cluster (the watch on
//! one member, the writes through the others in turn) and, when the
//! `etcd` binary is installed, against real etcd. Every watch's replies,
//! in order, must be identical but for the IDs and terms of the two
//! clusters.
//!
//! The writes go in three phases so that what each reply holds does not
//! depend on timing: history written before any watch exists; the watch
//! requests (history replays, a compacted start, filters, ranges, an
//! explicit and a duplicate ID, a progress request, cancels), answered
//! before anything else is written; then live writes, each of which a
//! synced watcher reports in a reply of its own revision.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use keel_kv::proto::etcdserverpb::kv_client::KvClient;
use keel_kv::proto::etcdserverpb::request_op::Request as Op;
use keel_kv::proto::etcdserverpb::watch_client::WatchClient;
use keel_kv::proto::etcdserverpb::watch_create_request::FilterType;
use keel_kv::proto::etcdserverpb::watch_request::RequestUnion;
use keel_kv::proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, RequestOp, TxnRequest, WatchCancelRequest,
    WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use support::etcd::Etcd;
use support::etcdctl::have;
use support::{Cluster, channel, put};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// How long a stream must stay silent before the replies to what was sent
/// count as complete.
const QUIET: Duration = Duration::from_millis(700);

/// The watch requests of the session, sent in this order on one stream.
fn watch_requests() -> Vec<RequestUnion> {
    let create = |key: &str, range_end: &str, start_revision: i64| WatchCreateRequest {
        key: key.as_bytes().to_vec().into(),
        range_end: range_end.as_bytes().to_vec().into(),
        start_revision,
        ..Default::default()
    };
    vec![
        // From a revision the compaction removed: canceled.
        RequestUnion::CreateRequest(create("a", "", 2)),
        // History of one key, then live.
        RequestUnion::CreateRequest(create("a", "", 4)),
        // A range with previous values.
        RequestUnion::CreateRequest(WatchCreateRequest {
            prev_kv: true,
            ..create("a", "z", 5)
        }),
        // Every key, deletes only.
        RequestUnion::CreateRequest(WatchCreateRequest {
            filters: vec![FilterType::Noput as i32],
            ..create("\0", "\0", 4)
        }),
        // Every key, puts only, from now on.
        RequestUnion::CreateRequest(WatchCreateRequest {
            filters: vec![FilterType::Nodelete as i32],
            ..create("\0", "\0", 0)
        }),
        // From a revision not yet written.
        RequestUnion::CreateRequest(create("f", "", 1000)),
        // The empty key (etcd's smallest key), and a key onwards.
        RequestUnion::CreateRequest(create("", "", 0)),
        RequestUnion::CreateRequest(create("c", "\0", 0)),
        // A range whose end is before its key.
        RequestUnion::CreateRequest(create("x", "a", 0)),
        // An ID chosen by the client, then the same ID again.
        RequestUnion::CreateRequest(WatchCreateRequest {
            watch_id: 42,
            ..create("b", "", 0)
        }),
        RequestUnion::CreateRequest(WatchCreateRequest {
            watch_id: 42,
            ..create("c", "", 0)
        }),
        // Options that change nothing a short session sees.
        RequestUnion::CreateRequest(WatchCreateRequest {
            progress_notify: true,
            fragment: true,
            ..create("e", "", 0)
        }),
        RequestUnion::ProgressRequest(WatchProgressRequest {}),
        // Cancel the key's history watch, and an ID nobody has.
        RequestUnion::CancelRequest(WatchCancelRequest { watch_id: 1 }),
        RequestUnion::CancelRequest(WatchCancelRequest { watch_id: 999 }),
    ]
}

/// Writes through `urls` in turn (the `n`th write to `urls[n % len]`).
struct Writer {
    clients: Vec<KvClient<tonic::transport::Channel>>,
    next: usize,
}

impl Writer {
    async fn new(urls: &[String]) -> Writer {
        let mut clients = Vec::new();
        for url in urls {
            clients.push(KvClient::new(channel(url).await));
        }
        Writer { clients, next: 0 }
    }

    fn client(&mut self) -> &mut KvClient<tonic::transport::Channel> {
        let i = self.next % self.clients.len();
        self.next += 1;
        &mut self.clients[i]
    }

    async fn put(&mut self, key: &str, value: &str) {
        self.client().put(put(key, value)).await.unwrap();
    }

    async fn delete(&mut self, key: &str, range_end: &str) {
        let req = DeleteRangeRequest {
            key: key.as_bytes().to_vec().into(),
            range_end: range_end.as_bytes().to_vec().into(),
            prev_kv: true,
        };
        self.client().delete_range(req).await.unwrap();
    }

    async fn txn_put_two(&mut self, (k1, v1): (&str, &str), (k2, v2): (&str, &str)) {
        let op = |k: &str, v: &str| RequestOp {
            request: Some(Op::RequestPut(put(k, v))),
        };
        let req = TxnRequest {
            success: vec![op(k1, v1), op(k2, v2)],
            ..Default::default()
        };
        self.client().txn(req).await.unwrap();
    }
}

/// The replies a stream sent, until it stayed silent for [`QUIET`].
async fn replies_until_quiet(stream: &mut mpsc::Receiver<WatchResponse>) -> Vec<WatchResponse> {
    let mut replies = Vec::new();
    while let Ok(Some(reply)) = tokio::time::timeout(QUIET, stream.recv()).await {
        replies.push(reply);
    }
    replies
}

/// A reply without what differs between two clusters by design.
fn normalized(mut reply: WatchResponse) -> String {
    if let Some(header) = reply.header.as_mut() {
        header.cluster_id = 0;
        header.member_id = 0;
        header.raft_term = 0;
    }
    format!("{reply:?}")
}

/// Runs the session: writes through `write_urls`, watches on `watch_url`;
/// every reply, normalized, by watch ID in the order received.
async fn session(watch_url: &str, write_urls: &[String]) -> BTreeMap<i64, Vec<String>> {
    let mut writer = Writer::new(write_urls).await;
    // History: revisions 4 to 8 (the server's start left revision 3).
    writer.put("a", "1").await;
    writer.put("b", "1").await;
    writer.put("a", "2").await;
    writer.delete("b", "").await;
    writer.txn_put_two(("c", "1"), ("d", "1")).await;
    writer
        .client()
        .compact(CompactionRequest {
            revision: 4,
            physical: true,
        })
        .await
        .unwrap();
    // The watched member has applied everything above.
    KvClient::new(channel(watch_url).await)
        .range(support::range("a"))
        .await
        .unwrap();

    let (requests, requests_rx) = mpsc::channel(32);
    let mut pending = watch_requests().into_iter().map(|request| WatchRequest {
        request_union: Some(request),
    });
    // etcd answers the call only with its first reply: a request first.
    let first = pending.next().expect("the session has requests");
    requests.send(first).await.unwrap();
    let mut stream = WatchClient::new(channel(watch_url).await)
        .watch(ReceiverStream::new(requests_rx))
        .await
        .unwrap()
        .into_inner();
    let (replies_tx, mut replies) = mpsc::channel(256);
    tokio::spawn(async move {
        while let Ok(Some(reply)) = stream.message().await {
            if replies_tx.send(reply).await.is_err() {
                break;
            }
        }
    });
    // One request at a time: a watcher's catch-up is done before the next
    // is created, whatever the server's scheduling.
    let mut received = replies_until_quiet(&mut replies).await;
    for request in pending {
        requests.send(request).await.unwrap();
        received.extend(replies_until_quiet(&mut replies).await);
    }

    // Live: each write reported before the next is made.
    writer.put("a", "3").await;
    writer.put("e", "1").await;
    writer.put("f", "1").await;
    writer.txn_put_two(("b", "2"), ("g", "1")).await;
    writer.delete("a", "z").await;
    writer.put("c", "2").await;
    received.extend(replies_until_quiet(&mut replies).await);

    let mut by_watch: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for reply in received {
        by_watch
            .entry(reply.watch_id)
            .or_default()
            .push(normalized(reply));
    }
    by_watch
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_answer_as_etcds_do() {
    let cluster = Cluster::start(3, &[]).await;
    let leader = cluster.wait_leader().await;
    let urls: Vec<String> = cluster.members.iter().map(|m| m.client_url()).collect();
    // As etcd's start below: one key written and deleted.
    let mut writer = Writer::new(&urls).await;
    writer.put("health", "x").await;
    writer.delete("health", "").await;
    // Watch a follower; write through every member.
    let watched = &urls[(leader + 1) % 3];
    let keel = session(watched, &urls).await;

    // What Keel must answer, whatever etcd says.
    let compacted = &keel[&0];
    assert_eq!(
        compacted.len(),
        2,
        "ID 0 is not handed out again: {compacted:?}"
    );
    assert!(
        compacted[0].contains("created: true")
            && compacted[1].contains("canceled: true")
            && compacted[1].contains("compact_revision: 4"),
        "{compacted:?}"
    );
    let history = &keel[&1];
    assert!(history[0].contains("created: true"), "{history:?}");
    assert!(
        history[1].contains("mod_revision: 6") && history[1].contains(r#"value: b"2""#),
        "the history of a since revision 4: {history:?}"
    );
    // IDs are not handed out twice, a backwards range and a duplicate ID
    // are refused in etcd's words, and the ID the client chose is kept.
    assert_eq!(
        keel.keys().copied().collect::<Vec<_>>(),
        [-1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 42]
    );
    let refusals = keel[&-1].join("\n");
    assert!(
        refusals.contains("mvcc: watcher range is empty")
            && refusals.contains("mvcc: duplicate watch ID provided on the WatchStream"),
        "{refusals}"
    );

    if !have("etcd") {
        eprintln!("etcd is not installed: compared nothing, checked Keel alone");
        return;
    }
    let server = Etcd::start("http", &[], &[]).await;
    let etcd = session(&server.endpoint, std::slice::from_ref(&server.endpoint)).await;
    let ids: Vec<&i64> = keel.keys().collect();
    assert_eq!(
        ids,
        etcd.keys().collect::<Vec<_>>(),
        "watch IDs differ: Keel {keel:#?}\netcd {etcd:#?}"
    );
    for (id, replies) in &keel {
        assert_eq!(
            replies, &etcd[id],
            "watch {id}: Keel's replies differ from etcd's"
        );
    }
}
