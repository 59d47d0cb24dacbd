//! Opening a node's storage at start: the durable state the core resumes
//! from, and the state machine brought level with the newest snapshot.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use keel_raft::{
    Entry, HardState, LogIndex, Membership, NodeId, Payload, RestoredState, SnapshotMeta, Term,
};
use keel_storage::{FileLogStore, LogStore, MemLogStore, SnapshotStore};
use tracing::{info, warn};

use crate::config::Config;
use crate::error::{SnapshotWriteError, StartError};
use crate::snapshot::SnapshotBytes;
use crate::state_machine::StateMachine;

/// The layout of a node's data directory.
const LOG_DIR: &str = "log";
const SNAPSHOTS_DIR: &str = "snapshots";
const PEERS_FILE: &str = "peers";

/// Where a node keeps its log, snapshots and address book.
///
/// The log is any [`LogStore`]: Keel's write-ahead log ([`Storage::open`]),
/// one in memory ([`Storage::in_memory_log`]) or the application's own
/// ([`Storage::with_log_store`]). Snapshots are files in a
/// [`SnapshotStore`] under the data directory.
pub struct Storage {
    pub(crate) log: Box<dyn LogStore + Send>,
    pub(crate) snapshots: SnapshotStore,
    pub(crate) peers_file: Option<PathBuf>,
}

impl Storage {
    /// The durable layout under `data_dir`: `log/` (the WAL), `snapshots/`
    /// and the `peers` address book.
    pub fn open(data_dir: impl AsRef<Path>, config: &Config) -> Result<Storage, StartError> {
        let dir = data_dir.as_ref();
        std::fs::create_dir_all(dir)?;
        Ok(Storage {
            log: Box::new(FileLogStore::open(dir.join(LOG_DIR), config.log.clone())?),
            snapshots: SnapshotStore::open(dir.join(SNAPSHOTS_DIR), config.snapshots_kept)?,
            peers_file: Some(dir.join(PEERS_FILE)),
        })
    }

    /// Prepares an empty `data_dir` for node `id`, a founding member of a
    /// new cluster whose other voters are `peers` (id → "host:port"),
    /// without starting it, for a state machine that already holds
    /// `initial`: the first start resumes from this configuration instead
    /// of bootstrapping from its own arguments. This is how an offline
    /// tool (`keel snapshot restore`) writes a member whose state machine
    /// it filled itself.
    ///
    /// The initial state is stored as the snapshot at `initial.index`,
    /// carrying the configuration, so that the log proper starts after it
    /// and a member added later receives the state as that snapshot: were
    /// it only in the state machines, log replication from index 1 would
    /// leave a newcomer without it.
    pub fn bootstrap_offline(
        data_dir: impl AsRef<Path>,
        id: NodeId,
        peers: &BTreeMap<NodeId, String>,
        initial: InitialState<'_>,
    ) -> Result<(), StartError> {
        assert!(
            initial.index > LogIndex(0) && initial.term > Term(0),
            "an initial state stands for an entry: index 0 is the empty bootstrap snapshot"
        );
        let dir = data_dir.as_ref();
        if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
            return Err(StartError::NotEmpty {
                dir: dir.to_owned(),
            });
        }
        std::fs::create_dir_all(dir)?;
        // Only this snapshot will exist, so keeping one loses nothing.
        let snapshots = SnapshotStore::open(dir.join(SNAPSHOTS_DIR), 1)?;
        let voters: BTreeSet<NodeId> = peers.keys().copied().chain([id]).collect();
        let meta = SnapshotMeta {
            index: initial.index,
            term: initial.term,
            membership: Membership::new(voters, [])?,
        };
        crate::snapshot::write_local(&snapshots, meta, initial.data).map_err(|e| match e {
            SnapshotWriteError::Read(e) => StartError::Io(e),
            SnapshotWriteError::Storage(e) => StartError::Storage(e),
        })?;
        let mut book = peers.clone();
        book.remove(&id);
        crate::peers::save(&dir.join(PEERS_FILE), &book)?;
        Ok(())
    }

    /// The application's own log store, with snapshots and the address
    /// book under `data_dir`. The store must keep [`LogStore`]'s contract,
    /// above all that `sync` returns only once its writes survive a crash;
    /// `keel::conformance::check` tests that in one line.
    pub fn with_log_store(
        log: impl LogStore + Send + 'static,
        data_dir: impl AsRef<Path>,
        config: &Config,
    ) -> Result<Storage, StartError> {
        let dir = data_dir.as_ref();
        std::fs::create_dir_all(dir)?;
        Ok(Storage {
            log: Box::new(log),
            snapshots: SnapshotStore::open(dir.join(SNAPSHOTS_DIR), config.snapshots_kept)?,
            peers_file: Some(dir.join(PEERS_FILE)),
        })
    }

    /// A log kept in memory (lost at exit; for benchmarks and tests), with
    /// snapshots still under `data_dir`.
    pub fn in_memory_log(
        data_dir: impl AsRef<Path>,
        config: &Config,
    ) -> Result<Storage, StartError> {
        let dir = data_dir.as_ref();
        std::fs::create_dir_all(dir)?;
        Ok(Storage {
            log: Box::new(MemLogStore::new()),
            snapshots: SnapshotStore::open(dir.join("snapshots"), config.snapshots_kept)?,
            peers_file: None,
        })
    }
}

/// A state machine's state that a new cluster starts from
/// ([`Storage::bootstrap_offline`]).
pub struct InitialState<'a> {
    /// The index and term the state stands for; the log proper starts
    /// after `index`, and the state machine must report `index` as
    /// applied. Both at least 1: index 0 is the empty bootstrap snapshot.
    pub index: LogIndex,
    /// The term of the entry at `index`.
    pub term: Term,
    /// The state, as `StateMachine::snapshot` would stream it.
    pub data: &'a mut dyn Read,
}

/// What the node starts from.
pub(crate) struct Restored {
    pub(crate) state: RestoredState,
    /// Entries through this index are already in the state machine.
    pub(crate) applied_through: LogIndex,
    /// The address book: the file's, overridden by the addresses given.
    pub(crate) peers: BTreeMap<NodeId, String>,
}

/// Reads the durable state, bootstrapping a new cluster on first start,
/// and restores the state machine from the newest snapshot if it is behind.
pub(crate) fn restore<S: StateMachine>(
    storage: &mut Storage,
    config: &Config,
    given_peers: &BTreeMap<NodeId, String>,
    sm: &mut S,
) -> Result<Restored, StartError> {
    let mut peers = match &storage.peers_file {
        Some(path) => crate::peers::load(path)?,
        None => BTreeMap::new(),
    };
    peers.extend(given_peers.iter().map(|(&id, addr)| (id, addr.clone())));
    peers.remove(&config.raft.id);

    let log = storage.log.as_mut();
    let latest = storage.snapshots.latest()?;
    let fresh = latest.is_none()
        && log.last_index() == LogIndex(0)
        && *log.hard_state() == HardState::default();
    if fresh {
        let state = if config.join {
            info!(id = %config.raft.id, "starting empty, waiting to be added to a cluster");
            RestoredState::joining()
        } else {
            let voters: BTreeSet<NodeId> = given_peers
                .keys()
                .copied()
                .chain([config.raft.id])
                .collect();
            let membership = Membership::new(voters, [])?;
            info!(id = %config.raft.id, ?membership, "bootstrapping a new cluster");
            write_initial_configuration(&storage.snapshots, membership.clone())?;
            RestoredState::bootstrap(membership)
        };
        return Ok(Restored {
            state,
            applied_through: sm.applied_index(),
            peers,
        });
    }

    let snapshot = latest.map_or(
        SnapshotMeta {
            index: LogIndex(0),
            term: Term(0),
            membership: Membership::default(),
        },
        |info| info.meta,
    );
    let mut state = resume_from(log, snapshot)?;
    if config.force_new_cluster {
        state = force_single_voter(log, state, config.raft.id)?;
    }
    let mut applied_through = sm.applied_index();
    let snapshot = &state.snapshot;
    if applied_through < snapshot.index {
        info!(index = %snapshot.index, "restoring the state machine from the newest snapshot");
        let reader = storage.snapshots.open_reader(snapshot.index)?;
        let mut data = SnapshotBytes::new(reader, 0);
        sm.restore(snapshot.index, &mut data)
            .map_err(StartError::StateMachine)?;
        applied_through = snapshot.index;
    }
    info!(
        id = %config.raft.id,
        term = %state.hard_state.term,
        snapshot = %snapshot.index,
        last_index = %log.last_index(),
        %applied_through,
        "restarting from disk"
    );
    Ok(Restored {
        state,
        applied_through,
        peers,
    })
}

/// `force_new_cluster`: appends a configuration of this node alone to its
/// log, durably, before the core starts. A configuration takes effect when
/// appended, so the node elects itself and commits its whole log without
/// the members it lost; entries that were not committed before become
/// committed, as they would under any new leader holding them.
///
/// This is unsafe by nature, which is why only an operator's flag does
/// it: entries that only the lost members held (committed and
/// acknowledged perhaps) are gone for good, and the lost members must
/// never rejoin with their old data, or two clusters would claim the same
/// identity. Restarting with the flag again appends the same
/// configuration again, which changes nothing.
fn force_single_voter(
    log: &mut dyn LogStore,
    mut state: RestoredState,
    id: NodeId,
) -> Result<RestoredState, StartError> {
    let last_term = state.entries.last().map_or(state.snapshot.term, |e| e.term);
    let entry = Entry {
        // Never below the last entry's term (log order) nor the hard
        // state's (a node does not append in a term it has left behind).
        term: state.hard_state.term.max(last_term),
        index: log.last_index().next(),
        payload: Payload::Membership(Membership::new([id], [])?),
    };
    warn!(
        %id,
        index = %entry.index,
        "--force-new-cluster: this member is now the only voter; the others must not come back with their old data"
    );
    log.append(std::slice::from_ref(&entry));
    let _durable = log.sync()?;
    state.entries.push(entry);
    Ok(state)
}

/// Stores a new cluster's first configuration as an empty snapshot at
/// index 0, so that a restart finds it like any other snapshot.
fn write_initial_configuration(
    snapshots: &SnapshotStore,
    membership: Membership,
) -> Result<(), StartError> {
    let meta = SnapshotMeta {
        index: LogIndex(0),
        term: Term(0),
        membership,
    };
    snapshots.begin(meta)?.finish(None)?;
    Ok(())
}

/// The state the core resumes from: the durable log, compacted to the
/// newest published snapshot `snapshot`.
pub fn resume_from(
    log: &mut dyn LogStore,
    snapshot: SnapshotMeta,
) -> Result<RestoredState, StartError> {
    // A snapshot installed from a leader is published before the log is
    // compacted to it; a crash in between leaves the log behind.
    if log.first_index() <= snapshot.index {
        log.compact(snapshot.index, snapshot.term);
        let _durable = log.sync()?;
    }
    if log.first_index() != snapshot.index.next() {
        return Err(StartError::MissingSnapshot {
            log_first_index: log.first_index(),
            snapshot_index: snapshot.index,
        });
    }
    let entries = if log.last_index() > snapshot.index {
        log.entries(snapshot.index.next(), log.last_index().next(), u64::MAX)?
    } else {
        Vec::new()
    };
    Ok(RestoredState {
        hard_state: log.hard_state().clone(),
        snapshot,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank(index: u64, term: u64) -> Entry {
        Entry {
            term: Term(term),
            index: LogIndex(index),
            payload: Payload::Blank,
        }
    }

    #[test]
    fn forcing_a_new_cluster_appends_a_durable_configuration_of_this_node_alone() {
        let mut log = MemLogStore::new();
        log.append(&[blank(1, 2), blank(2, 3)]);
        log.set_hard_state(HardState {
            term: Term(4),
            vote: Some(NodeId(3)),
            commit: LogIndex(1),
        });
        let _durable = log.sync().unwrap();
        let three = SnapshotMeta {
            index: LogIndex(0),
            term: Term(0),
            membership: Membership::new([NodeId(1), NodeId(2), NodeId(3)], []).unwrap(),
        };
        let state = resume_from(&mut log, three.clone()).unwrap();
        let state = force_single_voter(&mut log, state, NodeId(2)).unwrap();
        let forced = state.entries.last().unwrap().clone();
        // After the log, in the hard state's term, which is past the last entry's.
        assert_eq!((forced.index, forced.term), (LogIndex(3), Term(4)));
        let alone = Membership::new([NodeId(2)], []).unwrap();
        assert_eq!(forced.payload, Payload::Membership(alone));
        // It is in the log, so a restart without the flag finds it too.
        let restarted = resume_from(&mut log, three).unwrap();
        assert_eq!(restarted.entries.last(), Some(&forced));
        assert_eq!(restarted.entries.len(), 3);
    }

    #[test]
    fn offline_bootstrap_refuses_a_directory_in_use() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("log"), b"").unwrap();
        let mut data: &[u8] = b"state";
        let initial = InitialState {
            index: LogIndex(1),
            term: Term(1),
            data: &mut data,
        };
        let error = Storage::bootstrap_offline(dir.path(), NodeId(1), &BTreeMap::new(), initial);
        assert!(
            matches!(error, Err(StartError::NotEmpty { .. })),
            "{error:?}"
        );
    }

    #[test]
    fn offline_bootstrap_stores_the_state_as_the_first_snapshot_with_the_founders() {
        let dir = tempfile::tempdir().unwrap();
        let peers = BTreeMap::from([(NodeId(7), "127.0.0.1:7".to_owned())]);
        let mut data: &[u8] = b"state";
        let initial = InitialState {
            index: LogIndex(1),
            term: Term(1),
            data: &mut data,
        };
        Storage::bootstrap_offline(dir.path(), NodeId(1), &peers, initial).unwrap();
        let snapshots = SnapshotStore::open(dir.path().join(SNAPSHOTS_DIR), 1).unwrap();
        let meta = snapshots.latest().unwrap().unwrap().meta;
        assert_eq!((meta.index, meta.term), (LogIndex(1), Term(1)));
        let founders = Membership::new([NodeId(1), NodeId(7)], []).unwrap();
        assert_eq!(meta.membership, founders);
        assert_eq!(
            crate::peers::load(&dir.path().join(PEERS_FILE)).unwrap(),
            peers
        );
    }
}
