//! Reads at each consistency level, including across a change of leader.

mod common;

use std::time::Duration;

use common::{Cluster, Kv, within};
use keel::{Error, ReadConsistency};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn linearizable_reads_see_writes_across_a_leader_change() {
    within(Duration::from_secs(30), async {
        let cluster = Cluster::start(3).await;
        cluster.propose("x=1").await;
        let first = cluster.leader().await;
        for id in cluster.nodes.keys() {
            // Followers ask the leader for a read index, then wait to apply it.
            let x = cluster.read(*id, |kv: &Kv| kv.get("x")).await;
            assert_eq!(x.as_deref(), Some("1"), "read on node {id}");
        }
        let second = *cluster.nodes.keys().find(|&&id| id != first).unwrap();
        cluster.node(first).transfer_leader(second).await.unwrap();
        cluster.propose("x=2").await;
        // The write was acknowledged by the new leader; a linearizable read
        // anywhere, the old leader included, must see it.
        for id in cluster.nodes.keys() {
            let x = cluster.read(*id, |kv: &Kv| kv.get("x")).await;
            assert_eq!(x.as_deref(), Some("2"), "read on node {id}");
        }
        let leader = cluster.leader().await;
        let x = cluster
            .node(leader)
            .read(ReadConsistency::Lease, |kv: &Kv| kv.get("x"))
            .await
            .unwrap();
        assert_eq!(x.as_deref(), Some("2"));
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_to_a_stopped_node_fail_as_stopped() {
    within(Duration::from_secs(30), async {
        let cluster = Cluster::start(1).await;
        let node = cluster.node(cluster.leader().await).clone();
        cluster.shutdown().await;
        let read = node
            .read(ReadConsistency::Stale, |kv: &Kv| kv.get("x"))
            .await;
        assert!(matches!(read, Err(Error::Stopped(_))), "{read:?}");
        let write = node.propose("x=1").await;
        assert!(matches!(write, Err(Error::Stopped(_))), "{write:?}");
    })
    .await;
}

fn tiny_queues(config: &mut keel::Config) {
    config.pending_proposals_max = 2;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn proposals_beyond_the_pending_bound_are_refused_as_overloaded() {
    within(Duration::from_secs(30), async {
        let cluster = Cluster::start_with(3, tiny_queues).await;
        let leader = cluster.node(cluster.leader().await).clone();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..64 {
            let node = leader.clone();
            tasks.spawn(async move { node.propose(format!("k{i}=v")).await });
        }
        let results = tasks.join_all().await;
        let overloaded = results
            .iter()
            .filter(|r| matches!(r, Err(Error::Overloaded)))
            .count();
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert!(overloaded > 0, "a bounded queue pushes back");
        assert_eq!(ok + overloaded, 64, "{results:?}");
        cluster.shutdown().await;
    })
    .await;
}
