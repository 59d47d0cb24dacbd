//! Watches that Kubernetes-style clients depend on: progress notifications
//! for a quiet watcher on a busy cluster, and require-leader streams that
//! fail, rather than go silent, on a member that lost its leader.

mod support;

use std::time::Duration;

use keel_kv::proto::etcdserverpb::kv_client::KvClient;
use keel_kv::proto::etcdserverpb::watch_client::WatchClient;
use keel_kv::proto::etcdserverpb::watch_request::RequestUnion;
use keel_kv::proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use support::{Cluster, put};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Streaming};

fn create(key: &str, progress_notify: bool) -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: key.to_owned().into(),
            progress_notify,
            ..Default::default()
        })),
    }
}

/// Opens a watch stream on member `i` with one watcher of `key`; returns
/// the request sender (keep it: dropping it ends the stream) and the
/// responses after "created".
async fn watch(
    cluster: &Cluster,
    i: usize,
    key: &str,
    progress_notify: bool,
    require_leader: bool,
) -> Result<(mpsc::Sender<WatchRequest>, Streaming<WatchResponse>), tonic::Status> {
    let (requests, inbox) = mpsc::channel(4);
    requests.send(create(key, progress_notify)).await.unwrap();
    let mut request = tonic::Request::new(ReceiverStream::new(inbox));
    if require_leader {
        request
            .metadata_mut()
            .insert("hasleader", "true".parse().unwrap());
    }
    let mut client = WatchClient::new(cluster.channel(i).await);
    let mut responses = client.watch(request).await?.into_inner();
    let created = responses.message().await?.expect("a created response");
    assert!(created.created && !created.canceled, "{created:?}");
    Ok((requests, responses))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_watcher_on_a_busy_cluster_gets_progress_notifications() {
    let cluster = Cluster::start(
        3,
        &["--experimental-watch-progress-notify-interval", "200ms"],
    )
    .await;
    let leader = cluster.wait_leader().await;
    let follower = (leader + 1) % 3;
    let (_keep, mut responses) = watch(&cluster, follower, "quiet", true, false)
        .await
        .unwrap();

    // A writer keeps the store's revision moving for two seconds.
    let mut kv = KvClient::new(cluster.channel(leader).await);
    let writer = tokio::spawn(async move {
        let until = Instant::now() + Duration::from_secs(2);
        let mut last = 0;
        for i in 0.. {
            if Instant::now() > until {
                break;
            }
            let r = kv.put(put(&format!("busy/{i}"), "x")).await.unwrap();
            last = r.into_inner().header.unwrap().revision;
        }
        last
    });

    let mut progress_revisions = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while let Ok(Ok(Some(response))) = tokio::time::timeout_at(deadline, responses.message()).await
    {
        assert!(response.events.is_empty(), "nothing was written to quiet");
        progress_revisions.push(response.header.unwrap().revision);
    }
    let last_write = writer.await.unwrap();
    assert!(
        progress_revisions.len() >= 3,
        "only {} progress notifications in 3 s at a 200 ms period",
        progress_revisions.len()
    );
    assert!(
        progress_revisions.windows(2).all(|w| w[0] <= w[1]),
        "{progress_revisions:?}"
    );
    assert!(
        progress_revisions[progress_revisions.len() - 1] > progress_revisions[0],
        "progress must follow the busy revision: {progress_revisions:?}"
    );
    assert!(progress_revisions[progress_revisions.len() - 1] <= last_write + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_require_leader_watch_fails_on_a_member_that_lost_its_leader() {
    let mut cluster = Cluster::start(3, &[]).await;
    let leader = cluster.wait_leader().await;
    let lonely = (leader + 1) % 3;
    let (_keep_required, mut required) = watch(&cluster, lonely, "k", false, true).await.unwrap();
    let (_keep_plain, mut plain) = watch(&cluster, lonely, "k", false, false).await.unwrap();

    for i in 0..3 {
        if i != lonely {
            cluster.stop(i).await;
        }
    }
    let ended = tokio::time::timeout(Duration::from_secs(15), required.message())
        .await
        .expect("the require-leader stream ends within a few election timeouts");
    let status = ended.expect_err("it ends with an error");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), "etcdserver: no leader");

    // A new require-leader stream is refused at once; a plain one stays open.
    let refused = watch(&cluster, lonely, "k", false, true)
        .await
        .expect_err("no leader, no require-leader stream");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    let quiet = tokio::time::timeout(Duration::from_millis(500), plain.message()).await;
    assert!(quiet.is_err(), "the plain stream stays open: {quiet:?}");
}
