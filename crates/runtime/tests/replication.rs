//! Election, replication, and surviving the loss of a leader.

mod common;

use std::time::Duration;

use common::{Cluster, Kv, WAIT, within};
use keel::{Error, LogIndex, NodeId, ReadConsistency};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_elect_one_leader_and_replicate_to_all() {
    within(Duration::from_secs(30), async {
        let cluster = Cluster::start(3).await;
        let leader = cluster.leader().await;
        for i in 0..50 {
            cluster.propose(&format!("k{i}=v{i}")).await;
        }
        let previous = cluster.propose("k7=again").await;
        assert_eq!(
            previous.as_ref(),
            b"v7",
            "the proposer gets the state machine's response"
        );
        let last = cluster.node(leader).status().last_index;
        for node in cluster.nodes.values() {
            let (k0, k7) = node
                .read(ReadConsistency::Linearizable, |kv: &Kv| {
                    (kv.get("k0"), kv.get("k7"))
                })
                .await
                .unwrap();
            assert_eq!(k0.as_deref(), Some("v0"));
            assert_eq!(k7.as_deref(), Some("again"));
        }
        let status = cluster
            .node(leader)
            .wait_for(WAIT, |m| m.peers.values().all(|p| p.match_index >= last))
            .await
            .unwrap();
        assert_eq!(status.peers.len(), 2, "the leader reports each follower");
        // Metrics are republished every tick: the counters catch up.
        let status = cluster
            .node(leader)
            .wait_for(WAIT, |m| m.proposals_committed >= 51)
            .await
            .unwrap();
        assert_eq!(status.proposals_failed, 0);
        assert!(status.log_sync.count() > 0, "every write is timed");
        assert!(status.log_append.sum() > std::time::Duration::ZERO);
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follower_refuses_proposals_and_names_the_leader() {
    within(Duration::from_secs(30), async {
        let cluster = Cluster::start(3).await;
        let leader = cluster.leader().await;
        let follower = *cluster.nodes.keys().find(|&&id| id != leader).unwrap();
        let refused = cluster.node(follower).propose("x=1").await;
        assert!(
            matches!(refused, Err(Error::NotLeader { leader: Some(l) }) if l == leader),
            "{refused:?}"
        );
        assert!(cluster.node(follower).peer_addr(leader).is_some());
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_nodes_survive_leader_kill_without_losing_acknowledged_writes() {
    within(Duration::from_secs(60), async {
        let mut cluster = Cluster::start(5).await;
        let old_leader = cluster.leader().await;
        for i in 0..100 {
            cluster.propose(&format!("a{i}={i}")).await;
        }
        cluster.stop(old_leader).await;
        let new_leader = cluster.leader().await;
        assert_ne!(new_leader, old_leader);
        for i in 0..50 {
            cluster.propose(&format!("b{i}={i}")).await;
        }
        let missing = cluster
            .node(new_leader)
            .read(ReadConsistency::Linearizable, |kv: &Kv| {
                let a = (0..100).filter(|i| kv.get(&format!("a{i}")).is_none());
                let b = (0..50).filter(|i| kv.get(&format!("b{i}")).is_none());
                a.count() + b.count()
            })
            .await
            .unwrap();
        assert_eq!(
            missing, 0,
            "every acknowledged write survives the leader's loss"
        );

        // The old leader rejoins and catches up.
        cluster.restart(old_leader).await;
        let b49 = cluster.read(old_leader, |kv: &Kv| kv.get("b49")).await;
        assert_eq!(b49.as_deref(), Some("49"));
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn whole_cluster_restarts_from_disk() {
    within(Duration::from_secs(60), async {
        let mut cluster = Cluster::start(3).await;
        for i in 0..30 {
            cluster.propose(&format!("k{i}={i}")).await;
        }
        let before = cluster.node(cluster.leader().await).status();
        let term_before = before.term;
        for id in [1, 2, 3].map(NodeId) {
            cluster.stop(id).await;
        }
        for id in [1, 2, 3].map(NodeId) {
            cluster.restart(id).await;
        }
        let leader = cluster.leader().await;
        let status = cluster.node(leader).status();
        assert!(status.term > term_before);
        assert!(
            status.last_index > before.last_index,
            "the new leader appended a blank entry"
        );
        for node in cluster.nodes.values() {
            let k29 = cluster.read(node.id(), |kv: &Kv| kv.get("k29")).await;
            assert_eq!(
                k29.as_deref(),
                Some("29"),
                "node {} replayed its log",
                node.id()
            );
        }
        assert!(cluster.node(leader).status().applied_index >= LogIndex(31));
        cluster.shutdown().await;
    })
    .await;
}
