//! A snapshot store of your own: snapshots in a `BTreeMap`, checked
//! against Keel's snapshot store contract in one line and run under a node.
//!
//! It keeps everything in memory, shared by its clones, so a node started
//! again in the same process finds the snapshots it left; a real crash
//! loses them all. A store for production writes each snapshot to stable
//! storage before `publish` returns.
//!
//! Run with `cargo run -p keel --example btree_snapshot_store`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use keel::{
    Config, FileLogStore, LogConfig, LogIndex, Node, NodeId, SnapshotInfo, SnapshotMeta,
    SnapshotReader, SnapshotStore, SnapshotWriter, StagedSnapshot, StorageError, Term,
};

/// Published snapshots and their data, by index and term.
type Published = BTreeMap<(LogIndex, Term), (SnapshotInfo, Bytes)>;

/// Clones share the published snapshots; what is being written lives in
/// its writer until published, so dropping a writer leaves nothing.
#[derive(Clone, Debug, Default)]
pub struct BTreeSnapshotStore {
    published: Arc<Mutex<Published>>,
}

impl BTreeSnapshotStore {
    fn published(&self) -> MutexGuard<'_, Published> {
        self.published.lock().expect("no thread panics holding it")
    }
}

impl SnapshotStore for BTreeSnapshotStore {
    fn list(&self) -> Result<Vec<SnapshotInfo>, StorageError> {
        Ok(self
            .published()
            .values()
            .map(|(info, _)| info.clone())
            .collect())
    }

    fn begin(&self, meta: SnapshotMeta) -> Result<Box<dyn SnapshotWriter>, StorageError> {
        let store = self.clone();
        Ok(Box::new(Writer {
            store,
            meta,
            data: Vec::new(),
        }))
    }

    fn open_reader(&self, index: LogIndex) -> Result<Box<dyn SnapshotReader>, StorageError> {
        let published = self.published();
        let mut at_index = published.range((index, Term(0))..=(index, Term(u64::MAX)));
        let Some((_, (info, data))) = at_index.next_back() else {
            return Err(StorageError::SnapshotNotFound { index });
        };
        // The reader shares `data`, so pruning cannot take it away.
        let (info, data) = (info.clone(), data.clone());
        Ok(Box::new(Reader { info, data }))
    }

    fn prune(&self, keep: usize) -> Result<(), StorageError> {
        let mut published = self.published();
        while published.len() > keep.max(1) {
            published.pop_first();
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Writer {
    store: BTreeSnapshotStore,
    meta: SnapshotMeta,
    data: Vec<u8>,
}

impl SnapshotWriter for Writer {
    fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    fn next_offset(&self) -> u64 {
        self.data.len() as u64
    }

    fn write_chunk(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        let expected = self.next_offset();
        if offset != expected {
            return Err(StorageError::SnapshotOffset {
                expected,
                got: offset,
            });
        }
        self.data.extend_from_slice(data);
        Ok(())
    }

    fn stage(
        self: Box<Self>,
        expected: Option<u32>,
    ) -> Result<Box<dyn StagedSnapshot>, StorageError> {
        let checksum = crc32c::crc32c(&self.data);
        if let Some(expected) = expected.filter(|&e| e != checksum) {
            return Err(StorageError::SnapshotChecksum {
                expected,
                actual: checksum,
            });
        }
        let data_bytes = self.data.len() as u64;
        let info = SnapshotInfo {
            meta: self.meta,
            data_bytes,
            checksum,
        };
        Ok(Box::new(Staged {
            store: self.store,
            info,
            data: Bytes::from(self.data),
        }))
    }
}

#[derive(Debug)]
struct Staged {
    store: BTreeSnapshotStore,
    info: SnapshotInfo,
    data: Bytes,
}

impl StagedSnapshot for Staged {
    fn info(&self) -> &SnapshotInfo {
        &self.info
    }

    fn publish(self: Box<Self>) -> Result<SnapshotInfo, StorageError> {
        let key = (self.info.meta.index, self.info.meta.term);
        self.store
            .published()
            .insert(key, (self.info.clone(), self.data));
        Ok(self.info)
    }
}

#[derive(Debug)]
struct Reader {
    info: SnapshotInfo,
    data: Bytes,
}

impl SnapshotReader for Reader {
    fn info(&self) -> &SnapshotInfo {
        &self.info
    }

    fn read_chunk(&self, offset: u64, max_bytes: usize) -> Result<Bytes, StorageError> {
        let start = usize::try_from(offset).map_or(self.data.len(), |o| o.min(self.data.len()));
        let end = start.saturating_add(max_bytes).min(self.data.len());
        Ok(self.data.slice(start..end))
    }
}

/// A state machine that only counts the commands it applied.
#[derive(Default)]
struct Count {
    commands: u64,
    applied: LogIndex,
}

impl keel::StateMachine for Count {
    type Response = u64;

    fn apply(
        &mut self,
        commands: &[keel::Command],
        through: LogIndex,
    ) -> Result<Vec<u64>, keel::StateMachineError> {
        self.applied = through;
        Ok(commands
            .iter()
            .map(|_| {
                self.commands += 1;
                self.commands
            })
            .collect())
    }
    fn applied_index(&self) -> LogIndex {
        self.applied
    }
    fn snapshot(&mut self) -> Result<Box<dyn std::io::Read + Send>, keel::StateMachineError> {
        Ok(Box::new(std::io::Cursor::new(self.commands.to_le_bytes())))
    }
    fn restore(
        &mut self,
        index: LogIndex,
        data: &mut dyn std::io::Read,
    ) -> Result<(), keel::StateMachineError> {
        let mut bytes = [0; 8];
        data.read_exact(&mut bytes)?;
        (self.commands, self.applied) = (u64::from_le_bytes(bytes), index);
        Ok(())
    }
}

/// Starts a single-member cluster on Keel's log in `dir` and `snapshots`.
async fn start(
    dir: &std::path::Path,
    snapshots: BTreeSnapshotStore,
) -> Result<Node<Count>, Box<dyn std::error::Error>> {
    let config = Config::new(NodeId(1), 1, "127.0.0.1:0".parse()?);
    let log = FileLogStore::open(dir, LogConfig::default())?;
    let storage = keel::Storage::with_stores(log, snapshots);
    let listener = tokio::net::TcpListener::bind(config.listen_addr).await?;
    let node =
        Node::start_with(config, Count::default(), storage, BTreeMap::new(), listener).await?;
    node.wait_for(Duration::from_secs(10), |m| m.leader == Some(NodeId(1)))
        .await?;
    Ok(node)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The store keeps Keel's snapshot store contract: one line checks it all.
    keel::conformance::snapshots::check(BTreeSnapshotStore::default, |store| store);
    println!("BTreeSnapshotStore passes the conformance suite");

    // A node snapshots into it, and drops the log the snapshot covers.
    let dir = tempfile::tempdir()?;
    let snapshots = BTreeSnapshotStore::default();
    let node = start(dir.path(), snapshots.clone()).await?;
    for expected in 1..=3 {
        assert_eq!(node.propose(vec![]).await?, expected);
    }
    let index = node.trigger_snapshot().await?;
    assert_eq!(node.purge_log(index).await?, index);
    node.shutdown().await?;
    let latest = snapshots.latest()?.expect("the node published a snapshot");
    assert_eq!(latest.meta.index, index);
    println!("the node stored its snapshot at {index} in the BTreeMap");

    // Started again, it finds its state only in the snapshot.
    let node = start(dir.path(), snapshots).await?;
    assert_eq!(node.propose(vec![]).await?, 4);
    println!("restarted from the snapshot, the node counts on from 3");
    node.shutdown().await?;
    Ok(())
}

#[cfg(test)]
#[test]
fn example_runs() {
    main().expect("the example succeeds");
}

#[cfg(test)]
#[test]
fn a_store_whose_crash_loses_published_snapshots_fails_the_suite() {
    let outcome = std::panic::catch_unwind(|| {
        keel::conformance::snapshots::check(BTreeSnapshotStore::default, |_lost| {
            BTreeSnapshotStore::default()
        });
    });
    assert!(
        outcome.is_err(),
        "the suite catches published snapshots lost in a crash"
    );
}
