//! Calls only the leader answers (lease TimeToLive and keep-alive, member
//! changes), sent to every member of a cluster that is still starting:
//! like etcd, a member waits for a leader to be known (and reachable)
//! rather than answer "no leader" at once.

mod support;

use std::time::Duration;

use keel_kv::proto::etcdserverpb::LeaseTimeToLiveRequest;
use keel_kv::proto::etcdserverpb::lease_client::LeaseClient;
use support::Cluster;
use tokio::time::Instant;
use tonic::transport::Endpoint;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_calls_on_a_starting_cluster_wait_for_the_leader() {
    let cluster = Cluster::launch(3, &[]);
    // As soon as each member listens, ask it about a lease: no member has
    // a leader yet, or the leader has not published its client URL.
    let mut calls = Vec::new();
    for m in &cluster.members {
        let url = m.client_url();
        calls.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            let channel = loop {
                let endpoint = Endpoint::from_shared(url.clone()).unwrap();
                match endpoint.connect().await {
                    Ok(channel) => break channel,
                    Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(e) => panic!("{url} never listened: {e}"),
                }
            };
            LeaseClient::new(channel)
                .lease_time_to_live(LeaseTimeToLiveRequest { id: 7, keys: false })
                .await
        }));
    }
    for (i, call) in calls.into_iter().enumerate() {
        let answer = call.await.unwrap();
        let answer = answer.unwrap_or_else(|e| panic!("member {i}: {e:?}"));
        assert_eq!(answer.into_inner().ttl, -1, "member {i}: no such lease");
    }
}
