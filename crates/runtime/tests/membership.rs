//! Membership changes and leadership transfer on a running cluster.

mod common;

use std::time::Duration;

use common::{Cluster, Kv, WAIT, within};
use keel::{MembershipChange, NodeId, ReadConsistency, Role};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn learner_is_added_promoted_and_removed() {
    within(Duration::from_secs(60), async {
        let mut cluster = Cluster::start(3).await;
        for i in 0..20 {
            cluster.propose(&format!("k{i}={i}")).await;
        }
        let addr = cluster.start_joining(4).await;
        let leader = cluster.leader().await;
        cluster
            .node(leader)
            .add_learner(NodeId(4), addr)
            .await
            .unwrap();
        let last = cluster.node(leader).status().last_index;
        let learner = cluster
            .node(NodeId(4))
            .wait_for(WAIT, |m| m.applied_index >= last)
            .await
            .unwrap();
        assert!(learner.membership.learners().contains(&NodeId(4)));
        assert_eq!(learner.role, Role::Follower);
        let k19 = cluster
            .node(NodeId(4))
            .read(ReadConsistency::Linearizable, |kv: &Kv| kv.get("k19"))
            .await
            .unwrap();
        assert_eq!(k19.as_deref(), Some("19"), "the learner received the log");

        cluster
            .node(leader)
            .change_membership(MembershipChange::Promote(NodeId(4)))
            .await
            .unwrap();
        cluster
            .node(leader)
            .wait_for(WAIT, |m| m.membership.voters().contains(&NodeId(4)))
            .await
            .unwrap();

        // Remove a founding follower; the cluster keeps working without it.
        let removed = *cluster
            .nodes
            .keys()
            .find(|&&id| id != leader && id != NodeId(4))
            .unwrap();
        cluster
            .node(leader)
            .change_membership(MembershipChange::Remove(removed))
            .await
            .unwrap();
        cluster.stop(removed).await;
        let leader = cluster.leader().await;
        let status = cluster
            .node(leader)
            .wait_for(WAIT, |m| !m.membership.contains(removed))
            .await
            .unwrap();
        assert_eq!(status.membership.voters().len(), 3);
        cluster.propose("after=removal").await;
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leadership_moves_to_the_requested_node() {
    within(Duration::from_secs(30), async {
        let cluster = Cluster::start(3).await;
        cluster.propose("x=1").await;
        let leader = cluster.leader().await;
        let target = *cluster.nodes.keys().find(|&&id| id != leader).unwrap();
        cluster.node(leader).transfer_leader(target).await.unwrap();
        assert_eq!(cluster.leader().await, target);
        let previous = cluster.propose("x=2").await;
        assert_eq!(previous.as_ref(), b"1");
        cluster.shutdown().await;
    })
    .await;
}
