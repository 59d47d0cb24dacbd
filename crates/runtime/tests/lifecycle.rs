//! A cluster's lifecycle on real nodes over loopback: founding it
//! explicitly (`Node::initialize`), purging the log a snapshot covers
//! (`Node::purge_log`), seeding a new cluster from another's state
//! (`Storage::install_snapshot`) and recovering from a lost quorum
//! (`Storage::recover`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::time::Duration;

use common::{Cluster, Kv, WAIT, within};
use keel::{
    InitialState, InitializeError, InitializeRefused, LogIndex, LogStore, MembershipChange, NodeId,
    PurgeError, RecoverError, Role, StateMachine, Storage, Term,
};

fn ids(ids: &[u64]) -> BTreeSet<NodeId> {
    ids.iter().map(|&id| NodeId(id)).collect()
}

/// Members `ids` with the addresses their nodes listen on, as a founder
/// names them to `Node::initialize`.
fn members(cluster: &Cluster, ids: &[u64]) -> BTreeMap<NodeId, String> {
    ids.iter()
        .map(|&id| (NodeId(id), cluster.node(NodeId(id)).addr().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_initialize_founds_a_cluster_of_uninitialized_nodes() {
    within(Duration::from_secs(60), async {
        let mut cluster = Cluster::start_without_bootstrap(3, |_, _, _| {}).await;
        // Uninitialized nodes know no configuration, so nobody campaigns.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for node in cluster.nodes.values() {
            let status = node.status();
            assert_eq!((status.role, status.leader), (Role::Follower, None));
            assert!(status.membership.voters().is_empty(), "{status:#?}");
        }

        let founders = members(&cluster, &[1, 2, 3]);
        cluster
            .node(NodeId(1))
            .initialize(founders.clone())
            .await
            .unwrap();
        cluster.leader().await;
        cluster.propose("k=v").await;
        for &id in cluster.nodes.keys() {
            let value = cluster.read(id, |kv: &Kv| kv.get("k")).await;
            assert_eq!(value.as_deref(), Some("v"), "node {id}");
            let status = cluster.node(id).status();
            assert_eq!(status.membership.voters(), &ids(&[1, 2, 3]));
            assert_eq!(
                status.membership.addresses(),
                &founders,
                "the founding configuration records the addresses"
            );
        }

        // The same founding again, on the founder or another member, is
        // already done; another cluster is refused, and changes nothing.
        for id in [1, 3] {
            cluster
                .node(NodeId(id))
                .initialize(founders.clone())
                .await
                .unwrap();
        }
        let refused = cluster
            .node(NodeId(2))
            .initialize(members(&cluster, &[1, 2]))
            .await;
        assert!(
            matches!(
                refused,
                Err(InitializeError::Refused(
                    InitializeRefused::OtherCluster { .. }
                ))
            ),
            "{refused:?}"
        );
        let empty = cluster.node(NodeId(2)).initialize([]).await;
        assert!(
            matches!(empty, Err(InitializeError::Members(_))),
            "{empty:?}"
        );

        // The founding configuration is durable: a restarted member
        // resumes in the cluster.
        cluster.stop(NodeId(2)).await;
        cluster.restart(NodeId(2)).await;
        cluster.propose("after=restart").await;
        let read = cluster
            .read(NodeId(2), |kv: &Kv| (kv.get("k"), kv.get("after")))
            .await;
        assert_eq!(read, (Some("v".into()), Some("restart".into())));
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_member_initialized_with_the_same_set_founds_one_cluster() {
    within(Duration::from_secs(60), async {
        let cluster = Cluster::start_without_bootstrap(3, |_, _, _| {}).await;
        // All at once: whoever campaigns first finds the others either
        // still uninitialized or holding the very same founding entry.
        let founders = members(&cluster, &[1, 2, 3]);
        let founding: Vec<_> = cluster
            .nodes
            .values()
            .map(|node| {
                let node = node.clone();
                let founders = founders.clone();
                tokio::spawn(async move { node.initialize(founders).await })
            })
            .collect();
        for outcome in founding {
            outcome.await.unwrap().unwrap();
        }
        let leader = cluster.leader().await;
        cluster.propose("k=v").await;
        let value = cluster.read(leader, |kv: &Kv| kv.get("k")).await;
        assert_eq!(value.as_deref(), Some("v"));
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purging_discards_the_log_a_snapshot_covers_and_no_more() {
    within(Duration::from_secs(60), async {
        let mut cluster = Cluster::start(1).await;
        let node = NodeId(1);
        for i in 0..30 {
            cluster.propose(&format!("k{i}={i}")).await;
        }
        let snapshot = cluster.node(node).trigger_snapshot().await.unwrap();
        for i in 30..40 {
            cluster.propose(&format!("k{i}={i}")).await;
        }

        // Past the snapshot, the log is the only record: refused.
        let beyond = cluster.node(node).purge_log(snapshot.next()).await;
        assert!(
            matches!(beyond, Err(PurgeError::NotCovered { upto, snapshot: s })
                if upto == snapshot.next() && s == snapshot),
            "{beyond:?}"
        );
        // Part of what it covers, then less (already done), then all.
        let part = LogIndex(10);
        assert_eq!(cluster.node(node).purge_log(part).await.unwrap(), part);
        assert_eq!(
            cluster.node(node).purge_log(LogIndex(5)).await.unwrap(),
            part
        );
        assert_eq!(
            cluster.node(node).purge_log(snapshot).await.unwrap(),
            snapshot
        );
        // By itself the node would keep the log of its newest snapshot.
        cluster
            .node(node)
            .wait_for(WAIT, |m| m.first_index == snapshot.next())
            .await
            .unwrap();

        // The store itself starts after the snapshot (a restart would
        // compact it there anyway, so look before restarting).
        cluster.stop(node).await;
        let config = common::config(1, &cluster.addrs[&node]);
        let store = keel_storage::FileLogStore::open(
            cluster.dirs[&node].path().join("log"),
            config.log.clone(),
        )
        .unwrap();
        assert_eq!(store.first_index(), snapshot.next());
        assert!(store.last_index() > snapshot, "entries after it are kept");
        drop(store);

        cluster.restart(node).await;
        let read = cluster
            .read(node, |kv: &Kv| (kv.get("k0"), kv.get("k39")))
            .await;
        assert_eq!(read, (Some("0".into()), Some("39".into())));
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_seeded_from_another_clusters_snapshot_serves_its_data() {
    within(Duration::from_secs(60), async {
        let source = Cluster::start(1).await;
        for i in 0..20 {
            source.propose(&format!("k{i}={i}")).await;
        }
        let map = source.read(NodeId(1), |kv: &Kv| kv.map.clone()).await;
        source.shutdown().await;
        let mut backup = Kv {
            map,
            applied: LogIndex(0),
        };
        let mut state = Vec::new();
        backup.snapshot().unwrap().read_to_end(&mut state).unwrap();

        let mut seeded = Cluster::start_without_bootstrap(3, |id, dir, peers| {
            let mut data = state.as_slice();
            let initial = InitialState {
                index: LogIndex(1),
                term: Term(1),
                data: &mut data,
            };
            Storage::install_snapshot(dir, id, peers, initial).unwrap();
        })
        .await;
        seeded.leader().await;
        seeded.propose("new=write").await;
        for &id in seeded.nodes.keys() {
            let read = seeded
                .read(id, |kv: &Kv| (kv.get("k0"), kv.get("k19"), kv.get("new")))
                .await;
            let expected = (Some("0".into()), Some("19".into()), Some("write".into()));
            assert_eq!(read, expected, "node {id}");
        }

        // A member added later receives the seed as a snapshot.
        let addr = seeded.start_joining(4).await;
        let leader = seeded.leader().await;
        seeded
            .node(leader)
            .add_learner(NodeId(4), addr)
            .await
            .unwrap();
        let last = seeded.node(leader).status().last_index;
        seeded
            .node(NodeId(4))
            .wait_for(WAIT, |m| m.applied_index >= last)
            .await
            .unwrap();
        let k7 = seeded
            .node(NodeId(4))
            .read(keel::ReadConsistency::Stale, |kv: &Kv| kv.get("k7"))
            .await
            .unwrap();
        assert_eq!(k7.as_deref(), Some("7"));
        seeded.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_survivor_recovered_alone_keeps_every_acknowledged_write_and_grows_again() {
    within(Duration::from_secs(60), async {
        let mut cluster = Cluster::start(3).await;
        let leader = cluster.leader().await;
        let mut acknowledged = BTreeMap::new();
        for i in 0..20 {
            cluster.propose(&format!("k{i}={i}")).await;
            acknowledged.insert(format!("k{i}"), i.to_string());
        }
        // The survivor holds every acknowledged write: a majority did, and
        // it is the leader.
        let survivor = leader;
        let lost: Vec<NodeId> = cluster
            .nodes
            .keys()
            .copied()
            .filter(|&id| id != survivor)
            .collect();
        for &id in &lost {
            cluster.stop(id).await;
            cluster.dirs.remove(&id);
        }
        // Alone among three, it cannot commit anything.
        let stuck = cluster.node(survivor).propose("k=stuck".to_owned());
        let outcome = tokio::time::timeout(Duration::from_millis(500), stuck).await;
        assert!(
            !matches!(outcome, Ok(Ok(_))),
            "a minority committed a write"
        );

        cluster.stop(survivor).await;
        let config = common::config(survivor.0, &cluster.addrs[&survivor]);
        let mut storage = Storage::open(cluster.dirs[&survivor].path(), &config).unwrap();
        let refused = storage.recover(survivor, lost.clone());
        assert!(
            matches!(refused, Err(RecoverError::NotAMember { id }) if id == survivor),
            "{refused:?}"
        );
        storage.recover(survivor, [survivor]).unwrap();
        drop(storage);
        cluster.restart(survivor).await;

        assert_eq!(cluster.leader().await, survivor);
        let map = cluster.read(survivor, |kv: &Kv| kv.map.clone()).await;
        for (key, value) in &acknowledged {
            assert_eq!(map.get(key), Some(value), "acknowledged write {key} lost");
        }
        cluster.propose("after=recovery").await;

        // It grows again: a new member is added and promoted.
        let addr = cluster.start_joining(4).await;
        cluster
            .node(survivor)
            .add_learner(NodeId(4), addr)
            .await
            .unwrap();
        cluster
            .node(survivor)
            .change_membership(MembershipChange::Promote(NodeId(4)))
            .await
            .unwrap();
        cluster.propose("grown=yes").await;
        let read = cluster
            .read(NodeId(4), |kv: &Kv| (kv.get("k19"), kv.get("grown")))
            .await;
        assert_eq!(read, (Some("19".into()), Some("yes".into())));
        let voters = cluster.node(survivor).status().membership.voters().clone();
        assert_eq!(voters, [survivor, NodeId(4)].into_iter().collect());
        cluster.shutdown().await;
    })
    .await;
}

#[test]
fn recovering_storage_that_holds_no_cluster_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(1, "127.0.0.1:1");
    let mut storage = Storage::open(dir.path(), &config).unwrap();
    let refused = storage.recover(NodeId(1), [NodeId(1)]);
    assert!(matches!(refused, Err(RecoverError::Empty)), "{refused:?}");
}
