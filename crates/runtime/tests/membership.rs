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

/// Addresses live in the configuration: a learner's address, given to
/// the leader only, reaches every member through the log and survives a
/// restart that is given no addresses; a member that moves is reached at
/// its new address once `SetAddress` is in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn addresses_travel_in_the_log_and_follow_a_member_that_moves() {
    within(Duration::from_secs(60), async {
        let mut cluster = Cluster::start(3).await;
        cluster.propose("k=1").await;
        let addr = cluster.start_joining(4).await;
        let leader = cluster.leader().await;
        cluster
            .node(leader)
            .add_learner(NodeId(4), addr.clone())
            .await
            .unwrap();
        for id in [1, 2, 3, 4].map(NodeId) {
            let m = cluster
                .node(id)
                .wait_for(WAIT, |m| m.membership.address(NodeId(4)).is_some())
                .await
                .unwrap();
            assert_eq!(m.membership.address(NodeId(4)), Some(addr.as_str()));
            let founder = cluster.addrs[&NodeId(1)].as_str();
            assert_eq!(m.membership.address(NodeId(1)), Some(founder), "node {id}");
        }

        let follower = *cluster
            .nodes
            .keys()
            .find(|&&id| id != leader && id != NodeId(4))
            .unwrap();
        cluster.stop(follower).await;
        cluster.restart_without_peers(follower).await;
        assert_eq!(
            cluster.node(follower).peer_addr(NodeId(4)),
            Some(addr.clone()),
            "restored from the log, not from addresses given at start"
        );
        cluster.propose("k=2").await;
        let k = cluster.read(follower, |kv: &Kv| kv.get("k")).await;
        assert_eq!(k.as_deref(), Some("2"));

        cluster.stop(NodeId(4)).await;
        let moved = cluster.restart_elsewhere(NodeId(4)).await;
        let leader = cluster.leader().await;
        cluster
            .node(leader)
            .change_membership(MembershipChange::SetAddress {
                id: NodeId(4),
                addr: moved.clone(),
            })
            .await
            .unwrap();
        cluster.propose("k=3").await;
        let last = cluster.node(leader).status().last_index;
        let learner = cluster
            .node(NodeId(4))
            .wait_for(WAIT, |m| m.applied_index >= last)
            .await
            .unwrap();
        assert_eq!(learner.membership.address(NodeId(4)), Some(moved.as_str()));
        assert_eq!(cluster.node(leader).peer_addr(NodeId(4)), Some(moved));
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
