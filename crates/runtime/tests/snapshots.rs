//! Snapshots: taken by policy or on request (`Node::trigger_snapshot`),
//! the log compacted after, and shipped to a follower that fell behind the
//! compaction point; an application's snapshot store that fails.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Cluster, Kv, WAIT, within};
use keel::{
    Config, LogIndex, MemLogStore, MemSnapshotStore, Node, NodeId, SnapshotError, SnapshotMeta,
    SnapshotReader, SnapshotStore, SnapshotWriteError, SnapshotWriter, Storage, StorageError,
};

fn snapshot_often(config: &mut Config) {
    config.snapshot_entries = 40;
    // Small chunks, so the transfer takes several.
    config.transport.snapshot_chunk_bytes = 256;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follower_behind_compaction_catches_up_through_a_snapshot() {
    within(Duration::from_secs(60), async {
        let mut cluster = Cluster::start_with(3, snapshot_often).await;
        let leader = cluster.leader().await;
        let lagging = *cluster.nodes.keys().find(|&&id| id != leader).unwrap();
        cluster.stop(lagging).await;
        for i in 0..200 {
            cluster.propose(&format!("k{i}={i}")).await;
        }
        // The leader snapshotted and compacted its log past what the
        // stopped follower holds.
        let status = cluster
            .node(leader)
            .wait_for(WAIT, |m| {
                m.snapshots_created >= 1 && m.first_index > LogIndex(40)
            })
            .await
            .unwrap();
        assert!(status.first_index > LogIndex(1), "{status:#?}");

        cluster.restart(lagging).await;
        let k199 = cluster
            .read(lagging, |kv: &Kv| (kv.get("k0"), kv.get("k199")))
            .await;
        assert_eq!(k199, (Some("0".into()), Some("199".into())));
        let follower = cluster.node(lagging).status();
        assert!(follower.snapshots_installed >= 1, "{follower:#?}");

        // Restarting after the install resumes from the installed snapshot.
        cluster.stop(lagging).await;
        cluster.restart(lagging).await;
        cluster.propose("after=restart").await;
        let after = cluster
            .read(lagging, |kv: &Kv| (kv.get("k5"), kv.get("after")))
            .await;
        assert_eq!(after, (Some("5".into()), Some("restart".into())));
        cluster.shutdown().await;
    })
    .await;
}

/// The log is compacted one snapshot behind the newest, so a follower that
/// missed less than a snapshot interval catches up from the log, not by a
/// transfer of the whole state machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follower_behind_less_than_an_interval_catches_up_from_the_log() {
    within(Duration::from_secs(60), async {
        let mut cluster = Cluster::start_with(3, snapshot_often).await;
        let leader = cluster.leader().await;
        let lagging = *cluster.nodes.keys().find(|&&id| id != leader).unwrap();
        for i in 0..50 {
            cluster.propose(&format!("k{i}={i}")).await;
        }
        cluster
            .node(lagging)
            .wait_for(WAIT, |m| m.applied_index >= LogIndex(50))
            .await
            .unwrap();
        cluster.stop(lagging).await;
        for i in 50..100 {
            cluster.propose(&format!("k{i}={i}")).await;
        }
        // Two snapshots were taken: the log is compacted to the first one,
        // which the stopped follower already holds.
        let status = cluster
            .node(leader)
            .wait_for(WAIT, |m| m.snapshots_created >= 2)
            .await
            .unwrap();
        assert!(status.first_index > LogIndex(1), "{status:#?}");
        assert!(status.first_index <= LogIndex(50), "{status:#?}");

        cluster.restart(lagging).await;
        let k99 = cluster
            .read(lagging, |kv: &Kv| (kv.get("k0"), kv.get("k99")))
            .await;
        assert_eq!(k99, (Some("0".into()), Some("99".into())));
        let follower = cluster.node(lagging).status();
        assert_eq!(follower.snapshots_installed, 0, "{follower:#?}");
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn triggered_snapshots_are_taken_at_once_and_compact_the_log() {
    within(Duration::from_secs(60), async {
        // The policy alone would not snapshot for 100,000 entries.
        let mut cluster = Cluster::start(3).await;
        let leader = cluster.leader().await;
        let follower = *cluster.nodes.keys().find(|&&id| id != leader).unwrap();
        for i in 0..10 {
            cluster.propose(&format!("k{i}={i}")).await;
        }
        let applied = cluster.node(follower).ensure_linearizable().await.unwrap();
        let first = cluster.node(follower).trigger_snapshot().await.unwrap();
        assert!(first >= applied, "{first} covers {applied}");
        for i in 10..15 {
            cluster.propose(&format!("k{i}={i}")).await;
        }
        cluster.node(follower).ensure_linearizable().await.unwrap();
        let second = cluster.node(follower).trigger_snapshot().await.unwrap();
        assert!(second > first, "{second} after {first}");

        // The second snapshot compacts the log to the first, as a
        // snapshot by policy does.
        let status = cluster
            .node(follower)
            .wait_for(WAIT, |m| {
                m.snapshots_created >= 2 && m.first_index > LogIndex(1)
            })
            .await
            .unwrap();
        assert_eq!(status.first_index, LogIndex(first.0 + 1), "{status:#?}");
        assert_eq!(cluster.node(leader).status().snapshots_created, 0);

        // A restart restores the snapshot and replays the log after it.
        cluster.stop(follower).await;
        cluster.restart(follower).await;
        let read = cluster
            .read(follower, |kv: &Kv| (kv.get("k0"), kv.get("k14")))
            .await;
        assert_eq!(read, (Some("0".into()), Some("14".into())));
        cluster.shutdown().await;
    })
    .await;
}

/// A memory snapshot store that refuses to begin snapshots while told to,
/// as a disk of the application's might.
#[derive(Clone, Default)]
struct FailingStore {
    inner: MemSnapshotStore,
    failing: Arc<AtomicBool>,
}

impl SnapshotStore for FailingStore {
    fn list(&self) -> Result<Vec<keel::SnapshotInfo>, StorageError> {
        self.inner.list()
    }

    fn begin(&self, meta: SnapshotMeta) -> Result<Box<dyn SnapshotWriter>, StorageError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StorageError::Io {
                op: "begin",
                path: "failing-store".into(),
                source: std::io::Error::other("the test made the store fail"),
            });
        }
        self.inner.begin(meta)
    }

    fn open_reader(&self, index: LogIndex) -> Result<Box<dyn SnapshotReader>, StorageError> {
        self.inner.open_reader(index)
    }

    fn prune(&self, keep: usize) -> Result<(), StorageError> {
        self.inner.prune(keep)
    }
}

/// The application's snapshot store failing is the caller's typed error:
/// the node goes on, and snapshots again once the store works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_snapshot_store_fails_the_snapshot_not_the_node() {
    within(Duration::from_secs(30), async {
        let store = FailingStore::default();
        let config = common::config(1, "127.0.0.1:0");
        let storage = Storage::with_stores(MemLogStore::new(), store.clone());
        let listener = tokio::net::TcpListener::bind(config.listen_addr)
            .await
            .unwrap();
        let node = Node::start_with(config, Kv::default(), storage, BTreeMap::new(), listener)
            .await
            .unwrap();
        node.wait_for(WAIT, |m| m.leader == Some(NodeId(1)))
            .await
            .unwrap();
        node.propose("a=1".to_owned()).await.unwrap();

        store.failing.store(true, Ordering::SeqCst);
        match node.trigger_snapshot().await {
            Err(SnapshotError::Write(SnapshotWriteError::Storage(StorageError::Io {
                op: "begin",
                ..
            }))) => {}
            other => panic!("expected the store's error, got {other:?}"),
        }
        node.propose("b=2".to_owned()).await.unwrap();
        let published: Vec<LogIndex> = store
            .inner
            .list()
            .unwrap()
            .iter()
            .map(|info| info.meta.index)
            .collect();
        assert_eq!(published, [LogIndex(0)], "only the bootstrap snapshot");

        store.failing.store(false, Ordering::SeqCst);
        let index = node.trigger_snapshot().await.unwrap();
        let latest = store.inner.latest().unwrap().unwrap();
        assert_eq!(latest.meta.index, index);
        assert!(index >= LogIndex(3), "{index}");
        node.shutdown().await.unwrap();
    })
    .await;
}
