//! What a node tells its application about the cluster: leader changes
//! and, on the leader, how far each follower lags.

mod common;

use std::time::Duration;

use common::{Cluster, WAIT, within};
use keel::{LeaderChange, NodeId};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_sees_the_leader_change_after_the_leader_shuts_down() {
    within(Duration::from_secs(30), async {
        let mut cluster = Cluster::start(3).await;
        let old = cluster.leader().await;
        let follower = *cluster.nodes.keys().find(|&&id| id != old).unwrap();
        let mut changes = cluster.node(follower).leader_changes();
        let before = changes.current();
        assert_eq!(before.leader, Some(old));

        cluster.stop(old).await;
        let mut seen: Vec<LeaderChange> = Vec::new();
        let new = loop {
            let change = tokio::time::timeout(WAIT, changes.next())
                .await
                .expect("a new leader within the wait")
                .expect("the follower is running");
            seen.push(change);
            if let Some(leader) = change.leader.filter(|&l| l != old) {
                break leader;
            }
        };
        // The follower may first forget the old leader in its own term
        // (its stream from it ended: fast failover), before any election.
        assert!(
            seen.iter()
                .all(|c| c.term > before.term || (c.term == before.term && c.leader.is_none())),
            "{seen:?}"
        );
        assert!(seen.last().unwrap().term > before.term, "{seen:?}");
        assert!(
            seen.windows(2)
                .all(|w| w[0].term <= w[1].term && w[0] != w[1]),
            "each change once, terms in order: {seen:?}"
        );
        assert_eq!(cluster.leader().await, new, "the stream ends at the leader");
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_reports_a_stopped_follower_lagging_by_every_entry_since() {
    within(Duration::from_secs(30), async {
        let mut cluster = Cluster::start(3).await;
        cluster.propose("warm=up").await;
        let leader = cluster.leader().await;
        let mut followers = cluster.nodes.keys().copied().filter(|&id| id != leader);
        let (stopped, running): (NodeId, NodeId) =
            (followers.next().unwrap(), followers.next().unwrap());
        // The read index covers the warm-up write: metrics from before it
        // (everyone level at a shorter log) do not count.
        let written = cluster.node(leader).ensure_linearizable().await.unwrap();
        let caught_up = cluster
            .node(leader)
            .wait_for(WAIT, |m| {
                m.last_index >= written && m.peers.values().all(|p| p.lag == 0)
            })
            .await
            .unwrap();
        let matched = caught_up.peers[&stopped].match_index;

        cluster.stop(stopped).await;
        for i in 0..20 {
            cluster.propose(&format!("k{i}=v")).await;
        }
        // Metrics are published after the loop's turn, so a snapshot may
        // predate the last write: wait until it covers all twenty.
        let m = cluster
            .node(leader)
            .wait_for(WAIT, |m| {
                m.last_index.0 >= written.0 + 20 && m.peers[&running].lag == 0
            })
            .await
            .unwrap();
        let behind = m.peers[&stopped];
        assert_eq!(behind.match_index, matched, "nothing reached it");
        assert_eq!(behind.lag, m.last_index.0 - matched.0);
        assert!(behind.lag >= 20, "{behind:?}");
        assert_eq!(m.peers[&running].match_index, m.last_index);
        cluster.shutdown().await;
    })
    .await;
}
