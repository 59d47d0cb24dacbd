//! Nodes on the in-process transport (`InProcessNetwork`): no sockets, no
//! listener, links cut and healed by the test.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use common::{Kv, WAIT, within};
use keel::{
    Config, ConnectError, Error, InProcessNetwork, LogIndex, MemLogStore, MemSnapshotStore,
    Metrics, Node, NodeId, ReadConsistency, Role, SnapshotStore, Storage, Term,
};

/// Where the members of a cluster keep their log and snapshots.
#[derive(Clone, Copy)]
enum Stores {
    /// Keel's WAL and snapshot files, in a directory per member.
    Files,
    /// `MemLogStore` and `MemSnapshotStore`: nothing survives a restart
    /// but the snapshots (the log is lost), so such members never restart.
    Memory,
}

/// A cluster whose members talk through one [`InProcessNetwork`].
struct InProcessCluster {
    network: InProcessNetwork,
    size: u64,
    tweak: fn(&mut Config),
    stores: Stores,
    nodes: BTreeMap<NodeId, Node<Kv>>,
    dirs: BTreeMap<NodeId, tempfile::TempDir>,
    /// Each member's snapshot store with [`Stores::Memory`], to look into.
    memory_snapshots: BTreeMap<NodeId, MemSnapshotStore>,
}

impl InProcessCluster {
    async fn start(size: u64, tweak: fn(&mut Config)) -> InProcessCluster {
        InProcessCluster::start_on(size, tweak, Stores::Files).await
    }

    async fn start_on(size: u64, tweak: fn(&mut Config), stores: Stores) -> InProcessCluster {
        let mut cluster = InProcessCluster {
            network: InProcessNetwork::new(),
            size,
            tweak,
            stores,
            nodes: BTreeMap::new(),
            dirs: BTreeMap::new(),
            memory_snapshots: BTreeMap::new(),
        };
        for id in 1..=size {
            cluster.launch(id).await;
        }
        cluster
    }

    /// Starts node `id` from its data directory (a new one the first time).
    async fn launch(&mut self, id: u64) {
        // Never bound: the in-process transport has no listener.
        let mut config = common::config(id, "127.0.0.1:0");
        (self.tweak)(&mut config);
        let storage = match self.stores {
            Stores::Files => {
                let dir = self
                    .dirs
                    .entry(NodeId(id))
                    .or_insert_with(|| tempfile::tempdir().unwrap());
                Storage::open(dir.path(), &config).unwrap()
            }
            Stores::Memory => {
                let snapshots = self.memory_snapshots.entry(NodeId(id)).or_default();
                Storage::with_stores(MemLogStore::new(), snapshots.clone())
            }
        };
        let peers = (1..=self.size)
            .filter(|&p| p != id)
            .map(|p| (NodeId(p), format!("in-process-{p}")))
            .collect();
        let network = &self.network;
        let attach = {
            let network = network.clone();
            move |inbox| network.attach(NodeId(id), inbox)
        };
        let node = Node::start_with_transport(config, Kv::default(), storage, peers, attach)
            .await
            .unwrap();
        self.nodes.insert(NodeId(id), node);
    }

    fn node(&self, id: NodeId) -> &Node<Kv> {
        &self.nodes[&id]
    }

    /// Waits until exactly one of `members` leads and all of them agree on
    /// it and its term.
    async fn leader_among(&self, members: &[NodeId]) -> (NodeId, Term) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let metrics: Vec<Metrics> = members.iter().map(|&id| self.node(id).status()).collect();
            let leaders: Vec<&Metrics> =
                metrics.iter().filter(|m| m.role == Role::Leader).collect();
            if let [leader] = leaders.as_slice() {
                let (id, term) = (leader.id, leader.term);
                if metrics
                    .iter()
                    .all(|m| m.leader == Some(id) && m.term == term)
                {
                    return (id, term);
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no agreed leader among {members:?} within {WAIT:?}: {metrics:#?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn leader(&self) -> NodeId {
        let all: Vec<NodeId> = self.nodes.keys().copied().collect();
        self.leader_among(&all).await.0
    }

    /// Proposes on whichever of `members` leads, retrying while leadership
    /// settles.
    async fn propose_among(&self, members: &[NodeId], command: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (leader, _) = self.leader_among(members).await;
            let node = self.node(leader);
            match node.propose(command.to_owned()).await {
                Ok(_) => return,
                Err(
                    e @ (Error::NotLeader { .. }
                    | Error::LeaderNotReady
                    | Error::ProposalDropped { .. }),
                ) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "proposal {command} kept failing: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("proposal {command} failed: {e}"),
            }
        }
    }

    async fn propose(&self, command: &str) {
        let all: Vec<NodeId> = self.nodes.keys().copied().collect();
        self.propose_among(&all, command).await
    }

    /// Each node's map once its state machine holds every write
    /// acknowledged so far: a linearizable read on every node, retried
    /// while the node does not know a leader yet.
    async fn maps_everywhere(&self) -> Vec<BTreeMap<String, String>> {
        let mut maps = Vec::new();
        for node in self.nodes.values() {
            let deadline = tokio::time::Instant::now() + WAIT;
            let map = loop {
                let read = node.read(ReadConsistency::Linearizable, |kv: &Kv| kv.map.clone());
                match read.await {
                    Ok(map) => break map,
                    Err(e @ (Error::NotLeader { .. } | Error::LeadershipLost)) => {
                        assert!(
                            tokio::time::Instant::now() < deadline,
                            "reads on {} kept failing: {e}",
                            node.id()
                        );
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(e) => panic!("read on {} failed: {e}", node.id()),
                }
            };
            maps.push(map);
        }
        maps
    }

    async fn shutdown(self) {
        for node in self.nodes.values() {
            node.shutdown().await.unwrap();
        }
    }
}

fn no_tweak(_: &mut Config) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_a_leader_and_apply_100_proposals_on_all_three() {
    within(Duration::from_secs(60), async {
        let cluster = InProcessCluster::start(3, no_tweak).await;
        let leader = cluster.leader().await;
        for i in 0..100 {
            cluster.propose(&format!("k{i}={i}")).await;
        }
        let expected: BTreeMap<String, String> =
            (0..100).map(|i| (format!("k{i}"), i.to_string())).collect();
        for map in cluster.maps_everywhere().await {
            assert_eq!(map, expected);
        }

        // Everything went over the in-process network.
        let sent = cluster.node(leader).status().transport;
        assert!(sent.sent_msgs > 0 && sent.sent_batches > 0, "{sent:?}");
        for (&id, node) in &cluster.nodes {
            if id != leader {
                let received = node.status().transport;
                assert!(received.received_msgs > 0, "{id}: {received:?}");
            }
        }
        // Application services ride on gRPC only.
        let other = NodeId(if leader == NodeId(1) { 2 } else { 1 });
        let refused = cluster.node(leader).connect_peer(other).await;
        assert!(matches!(refused, Err(ConnectError::NotGrpc)), "{refused:?}");
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_leader_is_replaced_and_converges_after_heal() {
    within(Duration::from_secs(60), async {
        let cluster = InProcessCluster::start(3, no_tweak).await;
        cluster.propose("before=partition").await;
        let (old, old_term) = cluster
            .leader_among(&[NodeId(1), NodeId(2), NodeId(3)])
            .await;
        let majority: Vec<NodeId> = cluster
            .nodes
            .keys()
            .copied()
            .filter(|&id| id != old)
            .collect();

        cluster.network.isolate(old);
        // The old leader cannot commit: it refuses, or the proposal fails
        // or hangs until it learns it lost the lead.
        let stranded = tokio::time::timeout(
            Duration::from_secs(2),
            cluster.node(old).propose(Bytes::from("stranded=yes")),
        )
        .await;
        assert!(!matches!(stranded, Ok(Ok(_))), "{stranded:?}");

        let (new, new_term) = cluster.leader_among(&majority).await;
        assert_ne!(new, old);
        assert!(new_term > old_term, "{new_term:?} after {old_term:?}");
        cluster.propose_among(&majority, "during=partition").await;

        cluster.network.heal_all();
        cluster.propose("after=heal").await;
        let expected: BTreeMap<String, String> = [
            ("before", "partition"),
            ("during", "partition"),
            ("after", "heal"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for map in cluster.maps_everywhere().await {
            assert_eq!(map, expected, "the stranded write must be gone everywhere");
        }
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_shut_down_and_started_again_rejoins_under_its_id() {
    within(Duration::from_secs(60), async {
        let mut cluster = InProcessCluster::start(3, no_tweak).await;
        cluster.propose("one=1").await;
        let leader = cluster.leader().await;
        let follower = *cluster.nodes.keys().find(|&&id| id != leader).unwrap();
        let node = cluster.nodes.remove(&follower).unwrap();
        node.shutdown().await.unwrap();
        cluster.propose("two=2").await;

        cluster.launch(follower.0).await;
        cluster.propose("three=3").await;
        let expected: BTreeMap<String, String> = [("one", "1"), ("two", "2"), ("three", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        for map in cluster.maps_everywhere().await {
            assert_eq!(map, expected);
        }
        let restarted = cluster.node(follower).status().transport;
        assert!(restarted.received_msgs > 0, "{restarted:?}");
        cluster.shutdown().await;
    })
    .await;
}

fn snapshot_often(config: &mut Config) {
    config.snapshot_entries = 40;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_off_follower_catches_up_through_a_snapshot_over_the_network() {
    within(Duration::from_secs(60), async {
        let cluster = InProcessCluster::start(3, snapshot_often).await;
        catch_up_through_a_snapshot(&cluster).await;
        cluster.shutdown().await;
    })
    .await;
}

/// The same on stores the application brings (`Storage::with_stores`):
/// the leader's snapshot is read from its memory store, and the follower
/// writes, stages and publishes it into its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_on_memory_stores_catches_up_through_a_snapshot() {
    within(Duration::from_secs(60), async {
        let cluster = InProcessCluster::start_on(3, snapshot_often, Stores::Memory).await;
        let lagging = catch_up_through_a_snapshot(&cluster).await;
        // It restored its state machine from its store, so the snapshot is
        // there (or a newer one of its own, taken since). The leader's log
        // was compacted past index 40, and a leader sends the snapshot its
        // log is compacted to: one at 40 exactly when the check above
        // caught the compaction at 40.
        let stored = cluster.memory_snapshots[&lagging].list().unwrap();
        let newest = stored.last().map(|info| info.meta.index);
        assert!(newest >= Some(LogIndex(40)), "{stored:?}");
        assert!(stored.len() <= 2, "pruned to snapshots_kept: {stored:?}");
        cluster.shutdown().await;
    })
    .await;
}

/// Cuts a follower off until the leader's log is compacted past it, heals
/// it and checks that it caught up through a snapshot sent over the
/// network. Returns the follower.
async fn catch_up_through_a_snapshot(cluster: &InProcessCluster) -> NodeId {
    {
        let leader = cluster.leader().await;
        let lagging = *cluster.nodes.keys().find(|&&id| id != leader).unwrap();
        let rest: Vec<NodeId> = cluster
            .nodes
            .keys()
            .copied()
            .filter(|&id| id != lagging)
            .collect();

        cluster.network.isolate(lagging);
        // The leader compacts its log one snapshot behind the newest, and
        // takes a due snapshot only once the previous one is written and
        // another entry applied: write until the log is compacted past
        // everything the follower holds.
        let mut written = 0;
        loop {
            for _ in 0..40 {
                cluster
                    .propose_among(&rest, &format!("k{written}={written}"))
                    .await;
                written += 1;
            }
            let (leader, _) = cluster.leader_among(&rest).await;
            if cluster.node(leader).status().first_index > LogIndex(40) {
                break;
            }
            assert!(written < 2000, "{:#?}", cluster.node(leader).status());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        cluster.network.heal_all();
        cluster.propose("after=heal").await;
        let maps = cluster.maps_everywhere().await;
        assert!(maps.iter().all(|map| map.len() == written + 1), "{maps:?}");
        assert!(maps.windows(2).all(|pair| pair[0] == pair[1]));

        let follower = cluster.node(lagging).status();
        assert!(follower.snapshots_installed >= 1, "{follower:#?}");
        // The snapshot went over the in-process network, sent by whoever
        // led then (the follower's return may have moved the lead). A node
        // publishes its transport's counters with its next change of
        // state: write until both ends did.
        for round in 0.. {
            let sent: u64 = cluster
                .nodes
                .values()
                .map(|node| node.status().transport.snapshots_sent)
                .sum();
            let received = cluster.node(lagging).status().transport.snapshots_received;
            if sent >= 1 && received >= 1 {
                break;
            }
            assert!(round < 100, "sent {sent}, received {received}");
            cluster.propose(&format!("settle={round}")).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        lagging
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_leader_is_replaced_and_sends_to_it_fail_at_once() {
    within(Duration::from_secs(60), async {
        let cluster = InProcessCluster::start(3, no_tweak).await;
        let (old, old_term) = cluster
            .leader_among(&[NodeId(1), NodeId(2), NodeId(3)])
            .await;
        let rest: Vec<NodeId> = cluster
            .nodes
            .keys()
            .copied()
            .filter(|&id| id != old)
            .collect();

        let dropped_before: BTreeMap<NodeId, u64> = rest
            .iter()
            .map(|&id| (id, cluster.node(id).status().transport.dropped_unreachable))
            .collect();
        cluster.network.stop(old);
        let (new, new_term) = cluster.leader_among(&rest).await;
        assert!(new != old && new_term > old_term);
        cluster.propose_among(&rest, "after=stop").await;
        // The new leader's messages to the stopped node are refused, not
        // queued: the node is off the network.
        let refused = cluster
            .node(new)
            .wait_for(WAIT, |m| {
                m.transport.dropped_unreachable > dropped_before[&new]
            })
            .await;
        assert!(refused.is_ok(), "{refused:?}");
        cluster.shutdown().await;
    })
    .await;
}
