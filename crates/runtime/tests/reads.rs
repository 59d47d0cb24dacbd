//! Reads at each consistency level, including across a change of leader.

mod common;

use std::time::Duration;

use common::{Cluster, Kv, WAIT, within};
use keel::{Error, NodeId, ReadConsistency, Role};

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

/// A linearizable read on a follower, spelled both ways an embedder can:
/// `read_index` then waiting for the state machine to reach it, and
/// `ensure_linearizable`; then a local read, which must see the write the
/// leader just acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_on_a_follower_after_a_write_through_the_leader_sees_it() {
    within(Duration::from_secs(30), async {
        let cluster = Cluster::start(3).await;
        let leader = cluster.leader().await;
        let followers: Vec<NodeId> = cluster
            .nodes
            .keys()
            .copied()
            .filter(|&id| id != leader)
            .collect();
        for round in 0..20 {
            let value = round.to_string();
            cluster.propose(&format!("x={value}")).await;
            let follower = cluster.node(followers[round % 2]);
            let index = if round % 4 < 2 {
                let index = follower.read_index().await.unwrap();
                follower
                    .wait_for(WAIT, |m| m.applied_index >= index)
                    .await
                    .unwrap();
                index
            } else {
                follower.ensure_linearizable().await.unwrap()
            };
            let seen = follower
                .read(ReadConsistency::Stale, |kv: &Kv| kv.get("x"))
                .await
                .unwrap();
            assert_eq!(
                seen.as_deref(),
                Some(value.as_str()),
                "round {round}: node {} read at index {index}",
                follower.id()
            );
        }
        cluster.shutdown().await;
    })
    .await;
}

/// Waits until one of `nodes` leads in a term above `term`.
async fn new_leader(cluster: &Cluster, nodes: &[NodeId], term: keel::Term) -> NodeId {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let leader = nodes.iter().find(|&&id| {
            let m = cluster.node(id).status();
            m.role == Role::Leader && m.term > term
        });
        if let Some(&id) = leader {
            return id;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new leader among {nodes:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The leader is cut off from the others over real sockets, while the
/// others elect a new leader and acknowledge a write it never sees: asked
/// before and after, it must fail rather than vouch for its stale state.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_isolated_old_leader_does_not_vouch_for_its_stale_state() {
    within(Duration::from_secs(30), async {
        let cluster = Cluster::start_linked(3).await;
        cluster.propose("x=1").await;
        let old = cluster.leader().await;
        let old_node = cluster.node(old).clone();
        old_node.ensure_linearizable().await.unwrap();
        let old_term = old_node.status().term;

        cluster.isolate(old);
        let asked_while_leading = {
            let node = old_node.clone();
            tokio::spawn(async move { node.ensure_linearizable().await })
        };
        let index_while_leading = {
            let node = old_node.clone();
            tokio::spawn(async move { node.read_index().await })
        };
        let others: Vec<NodeId> = cluster
            .nodes
            .keys()
            .copied()
            .filter(|&id| id != old)
            .collect();
        let new = new_leader(&cluster, &others, old_term).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        while let Err(e) = cluster.node(new).propose("x=2").await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the new leader refused the write: {e}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        let stale = old_node
            .read(ReadConsistency::Stale, |kv: &Kv| kv.get("x"))
            .await
            .unwrap();
        assert_eq!(
            stale.as_deref(),
            Some("1"),
            "the old leader's state is stale"
        );
        let answers = [
            asked_while_leading.await.unwrap(),
            index_while_leading.await.unwrap(),
            old_node.ensure_linearizable().await,
            old_node.read_index().await,
        ];
        for answer in answers {
            assert!(
                matches!(
                    answer,
                    Err(Error::LeadershipLost | Error::NotLeader { .. } | Error::Timeout)
                ),
                "an isolated node vouched for a read: {answer:?}"
            );
        }
        let read = old_node
            .read(ReadConsistency::Linearizable, |kv: &Kv| kv.get("x"))
            .await;
        assert!(read.is_err(), "an isolated node served a read: {read:?}");
        cluster.shutdown().await;
    })
    .await;
}
