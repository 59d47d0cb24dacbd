//! Opening a node's storage at start: the durable state the core resumes
//! from, and the state machine brought level with the newest snapshot.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel_raft::{
    Entry, HardState, LogIndex, Membership, NodeId, Payload, RestoredState, SnapshotMeta, Term,
};
use keel_storage::{FileLogStore, FileSnapshotStore, LogStore, MemLogStore, SnapshotStore};
use tracing::{info, warn};

use crate::config::Config;
use crate::error::{RecoverError, SnapshotWriteError, StartError};
use crate::snapshot::SnapshotBytes;
use crate::state_machine::StateMachine;

/// The layout of a node's data directory.
const LOG_DIR: &str = "log";
const SNAPSHOTS_DIR: &str = "snapshots";
/// The address book of data directories written before configurations
/// carried addresses: read, never written (`peers.rs`).
const PEERS_FILE: &str = "peers";

/// Where a node keeps its log and snapshots.
///
/// The log is any [`LogStore`]: Keel's write-ahead log ([`Storage::open`]),
/// one in memory ([`Storage::in_memory_log`]) or the application's own
/// ([`Storage::with_log_store`]). Snapshots are in any [`SnapshotStore`]:
/// files under the data directory ([`keel_storage::FileSnapshotStore`])
/// unless the application brings its own ([`Storage::with_stores`]).
pub struct Storage {
    pub(crate) log: Box<dyn LogStore + Send>,
    /// Shared by the apply thread (local snapshots), the transport (a
    /// leader's snapshots arriving) and the driver (publishing, sending).
    pub(crate) snapshots: Arc<dyn SnapshotStore>,
    pub(crate) peers_file: Option<PathBuf>,
}

impl Storage {
    /// The durable layout under `data_dir`: `log/` (the WAL) and
    /// `snapshots/` (and, read only, the `peers` address book that builds
    /// before configurations carried addresses wrote).
    pub fn open(data_dir: impl AsRef<Path>, config: &Config) -> Result<Storage, StartError> {
        let dir = data_dir.as_ref();
        std::fs::create_dir_all(dir)?;
        Ok(Storage {
            log: Box::new(FileLogStore::open(dir.join(LOG_DIR), config.log.clone())?),
            snapshots: Arc::new(FileSnapshotStore::open(dir.join(SNAPSHOTS_DIR))?),
            peers_file: Some(dir.join(PEERS_FILE)),
        })
    }

    /// Installs an external snapshot as the seed of a new cluster: prepares
    /// an empty `data_dir` for node `id`, a founding member whose other
    /// voters are `peers` (id → "host:port", recorded in the
    /// configuration; `id`'s own address too if `peers` holds it),
    /// without starting it, so that
    /// the cluster starts from `initial` — another cluster's state (a
    /// backup, [`StateMachine::snapshot`]'s stream of it), or state the
    /// application prepared. Call it for every founding member, with the
    /// same `initial` and the same set of members; the first start resumes
    /// from it instead of bootstrapping from its own arguments. This is
    /// etcd's `snapshot restore`, and what `keel snapshot restore` does.
    ///
    /// Only on an empty directory, never into a running node or one with
    /// a history: a snapshot installed under a live log would contradict
    /// entries its peers hold (Raft installs a leader's snapshots itself).
    /// The new cluster shares nothing with the one the state came from
    /// but the state: give it a cluster id of its own, so that members of
    /// the two never talk.
    ///
    /// The state is stored as the snapshot at `initial.index`, carrying
    /// the configuration, so that the log proper starts after it and a
    /// member added later receives the state as that snapshot: were it
    /// only in the state machines, log replication from index 1 would
    /// leave a newcomer without it. At the first start each member's
    /// machine is restored from it ([`StateMachine::restore`]) unless it
    /// reports `initial.index` as applied already.
    pub fn install_snapshot(
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
        let snapshots = FileSnapshotStore::open(dir.join(SNAPSHOTS_DIR))?;
        let voters: BTreeSet<NodeId> = peers.keys().copied().chain([id]).collect();
        let meta = SnapshotMeta {
            index: initial.index,
            term: initial.term,
            membership: Membership::new(voters, [])?.with_addresses(peers.clone())?,
        };
        // Keep 1: only this snapshot will exist, so keeping one loses nothing.
        crate::snapshot::write_local(&snapshots, meta, initial.data, 1).map_err(|e| match e {
            SnapshotWriteError::Read(e) => StartError::Io(e),
            SnapshotWriteError::Storage(e) => StartError::Storage(e),
        })?;
        Ok(())
    }

    /// The application's own log store, with snapshots under `data_dir`.
    /// The store must keep [`LogStore`]'s contract, above all that `sync`
    /// returns only once its writes survive a crash;
    /// `keel::conformance::check` tests that in one line.
    pub fn with_log_store(
        log: impl LogStore + Send + 'static,
        data_dir: impl AsRef<Path>,
    ) -> Result<Storage, StartError> {
        let dir = data_dir.as_ref();
        std::fs::create_dir_all(dir)?;
        Ok(Storage {
            log: Box::new(log),
            snapshots: Arc::new(FileSnapshotStore::open(dir.join(SNAPSHOTS_DIR))?),
            peers_file: Some(dir.join(PEERS_FILE)),
        })
    }

    /// The application's own log store and snapshot store, and no data
    /// directory. Each must keep its trait's contract:
    /// `keel::conformance::check` tests a log store in one line, and
    /// `keel::conformance::snapshots::check` a snapshot store. The node
    /// decides how many snapshots to keep ([`Config::snapshots_kept`]) and
    /// prunes the store itself.
    ///
    /// Members' addresses live in the configuration, in these stores, so
    /// the node needs no directory of its own.
    pub fn with_stores(
        log: impl LogStore + Send + 'static,
        snapshots: impl SnapshotStore + 'static,
    ) -> Storage {
        Storage {
            log: Box::new(log),
            snapshots: Arc::new(snapshots),
            peers_file: None,
        }
    }

    /// Rewrites member `id`'s configuration so that `members` (`id` among
    /// them) are the only voters, for a cluster that lost its quorum for
    /// good: needing a majority of `members` only, the member can elect
    /// itself and go on. The members keep the addresses the configuration
    /// recorded for them. Call it on a stopped member's storage,
    /// then start the node with it; returns the index of the configuration
    /// entry it appended (durably) to the log. [`Config::force_new_cluster`]
    /// does the same at start with this member alone.
    ///
    /// **This is unsafe, and meant for an operator as a last resort.** Raft
    /// keeps acknowledged writes because every commit is on a majority and
    /// every leader holds every commit; a configuration forced upon a
    /// minority breaks both:
    ///
    /// - writes committed by a majority this member was not part of, and
    ///   acknowledged to their clients, are lost if the members given do
    ///   not hold them (recover the member with the longest log);
    /// - entries this member holds but that never committed become
    ///   committed, as under any new leader holding them;
    /// - the members left out must never come back with their old data,
    ///   or two clusters would claim one identity and history: wipe them
    ///   and add them again as new members ([`Config::join`]).
    ///
    /// Calling it twice appends the same configuration again, which
    /// changes nothing.
    pub fn recover(
        &mut self,
        id: NodeId,
        members: impl IntoIterator<Item = NodeId>,
    ) -> Result<LogIndex, RecoverError> {
        let membership = Membership::new(members, [])?;
        if !membership.is_voter(id) {
            return Err(RecoverError::NotAMember { id });
        }
        let latest = self.snapshots.latest().map_err(StartError::from)?;
        let log = self.log.as_mut();
        if latest.is_none() && log.last_index() == LogIndex(0) {
            return Err(RecoverError::Empty);
        }
        let snapshot = latest.map_or_else(empty_snapshot, |info| info.meta);
        let state = resume_from(log, snapshot)?;
        let state = force_configuration(log, state, membership)?;
        let forced = state.entries.last().expect("a configuration was appended");
        Ok(forced.index)
    }

    /// A log kept in memory (lost at exit; for benchmarks and tests), with
    /// snapshots still under `data_dir`.
    pub fn in_memory_log(data_dir: impl AsRef<Path>) -> Result<Storage, StartError> {
        let dir = data_dir.as_ref();
        std::fs::create_dir_all(dir)?;
        Ok(Storage {
            log: Box::new(MemLogStore::new()),
            snapshots: Arc::new(FileSnapshotStore::open(dir.join(SNAPSHOTS_DIR))?),
            peers_file: None,
        })
    }
}

/// A state machine's state that a new cluster starts from
/// ([`Storage::install_snapshot`]).
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
    /// Addresses for members the configuration records none for: the
    /// old address book file's, overridden by the addresses given.
    pub(crate) peers: BTreeMap<NodeId, String>,
}

/// Reads the durable state, bootstrapping a new cluster on first start,
/// and restores the state machine from the newest snapshot if it is behind.
/// A new cluster's configuration records the addresses `given_peers`
/// holds and this node's own, `own_addr`, unless `given_peers` has it.
pub(crate) fn restore<S: StateMachine>(
    storage: &mut Storage,
    config: &Config,
    given_peers: &BTreeMap<NodeId, String>,
    own_addr: Option<&str>,
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
            let mut addresses = given_peers.clone();
            if let Some(own) = own_addr {
                addresses
                    .entry(config.raft.id)
                    .or_insert_with(|| own.to_owned());
            }
            let membership = Membership::new(voters, [])?.with_addresses(addresses)?;
            info!(id = %config.raft.id, ?membership, "bootstrapping a new cluster");
            write_initial_configuration(storage.snapshots.as_ref(), membership.clone())?;
            RestoredState::bootstrap(membership)
        };
        return Ok(Restored {
            state,
            applied_through: sm.applied_index(),
            peers,
        });
    }

    let snapshot = latest.map_or_else(empty_snapshot, |info| info.meta);
    let mut state = resume_from(log, snapshot)?;
    if config.force_new_cluster {
        let id = config.raft.id;
        warn!(%id, "--force-new-cluster: this member is now the only voter");
        state = force_configuration(log, state, Membership::new([id], [])?)?;
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

/// The configuration in force in `state`: its last configuration entry's,
/// or its snapshot's.
fn configuration_of(state: &RestoredState) -> &Membership {
    state
        .entries
        .iter()
        .rev()
        .find_map(|e| match &e.payload {
            Payload::Membership(m) => Some(m),
            _ => None,
        })
        .unwrap_or(&state.snapshot.membership)
}

/// The snapshot of a log that never took one: index 0, no configuration.
fn empty_snapshot() -> SnapshotMeta {
    SnapshotMeta {
        index: LogIndex(0),
        term: Term(0),
        membership: Membership::default(),
    }
}

/// [`Storage::recover`] and `force_new_cluster`: appends `membership` to
/// the log, durably, before the core starts. A configuration takes effect
/// when appended, so the node elects itself among `membership` and
/// commits its whole log without the members it lost; entries that were
/// not committed before become committed, as they would under any new
/// leader holding them. Unsafe by nature: see [`Storage::recover`].
/// The members keep the addresses the configuration in force records.
fn force_configuration(
    log: &mut dyn LogStore,
    mut state: RestoredState,
    membership: Membership,
) -> Result<RestoredState, StartError> {
    let kept = configuration_of(&state)
        .addresses()
        .iter()
        .filter(|(id, _)| membership.contains(**id))
        .map(|(&id, addr)| (id, addr.clone()))
        .collect();
    let membership = membership.with_addresses(kept)?;
    let last_term = state.entries.last().map_or(state.snapshot.term, |e| e.term);
    let entry = Entry {
        // Never below the last entry's term (log order) nor the hard
        // state's (a node does not append in a term it has left behind).
        term: state.hard_state.term.max(last_term),
        index: log.last_index().next(),
        payload: Payload::Membership(membership),
    };
    warn!(
        index = %entry.index,
        voters = ?entry.payload,
        "recovering a lost quorum: forced a configuration; members left out must not come back with their old data"
    );
    log.append(std::slice::from_ref(&entry));
    let _durable = log.sync()?;
    state.entries.push(entry);
    Ok(state)
}

/// Stores a new cluster's first configuration as an empty snapshot at
/// index 0, so that a restart finds it like any other snapshot.
fn write_initial_configuration(
    snapshots: &dyn SnapshotStore,
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
        let addresses = |ids: &[u64]| -> BTreeMap<NodeId, String> {
            ids.iter()
                .map(|&id| (NodeId(id), format!("n{id}:7000")))
                .collect()
        };
        let three = SnapshotMeta {
            index: LogIndex(0),
            term: Term(0),
            membership: Membership::new([NodeId(1), NodeId(2), NodeId(3)], [])
                .unwrap()
                .with_addresses(addresses(&[1, 2, 3]))
                .unwrap(),
        };
        let state = resume_from(&mut log, three.clone()).unwrap();
        let alone = Membership::new([NodeId(2)], []).unwrap();
        let state = force_configuration(&mut log, state, alone.clone()).unwrap();
        let forced = state.entries.last().unwrap().clone();
        // After the log, in the hard state's term, which is past the last entry's.
        assert_eq!((forced.index, forced.term), (LogIndex(3), Term(4)));
        let kept = alone.with_addresses(addresses(&[2])).unwrap();
        assert_eq!(
            forced.payload,
            Payload::Membership(kept),
            "the member keeps its address"
        );
        // It is in the log, so a restart without the flag finds it too.
        let restarted = resume_from(&mut log, three).unwrap();
        assert_eq!(restarted.entries.last(), Some(&forced));
        assert_eq!(restarted.entries.len(), 3);
    }

    /// A data directory from before configurations carried addresses: a
    /// configuration without them and a `peers` file. The file's
    /// addresses, overridden by those given, fill the members the
    /// configuration records none for; the file is not rewritten.
    #[test]
    fn an_old_data_directory_takes_its_addresses_from_the_peers_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::new(NodeId(1), 1, "127.0.0.1:0".parse().unwrap());
        let mut storage = Storage::open(dir.path(), &config).unwrap();
        let old = Membership::new([NodeId(1), NodeId(2), NodeId(3)], []).unwrap();
        write_initial_configuration(storage.snapshots.as_ref(), old.clone()).unwrap();
        let book = "2 10.0.0.2:7000\n3 10.0.0.3:7000\n";
        std::fs::write(dir.path().join(PEERS_FILE), book).unwrap();
        let given = BTreeMap::from([(NodeId(3), "10.0.0.33:7000".to_owned())]);
        let restored = restore(&mut storage, &config, &given, Some("me:1"), &mut ()).unwrap();
        assert_eq!(
            restored.state.snapshot.membership, old,
            "no address invented"
        );
        assert_eq!(
            restored.peers,
            BTreeMap::from([
                (NodeId(2), "10.0.0.2:7000".to_owned()),
                (NodeId(3), "10.0.0.33:7000".to_owned()),
            ])
        );
        let file = std::fs::read_to_string(dir.path().join(PEERS_FILE)).unwrap();
        assert_eq!(file, book);
    }

    #[test]
    fn a_new_cluster_records_the_peers_given_and_its_own_address() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::new(NodeId(1), 1, "127.0.0.1:0".parse().unwrap());
        let mut storage = Storage::open(dir.path(), &config).unwrap();
        let given = BTreeMap::from([(NodeId(2), "b:2".to_owned())]);
        let restored = restore(&mut storage, &config, &given, Some("a:1"), &mut ()).unwrap();
        let founding = &restored.state.snapshot.membership;
        assert_eq!(
            founding.addresses(),
            &BTreeMap::from([(NodeId(1), "a:1".to_owned()), (NodeId(2), "b:2".to_owned())])
        );
        assert!(!dir.path().join(PEERS_FILE).exists());
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
        let error = Storage::install_snapshot(dir.path(), NodeId(1), &BTreeMap::new(), initial);
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
        Storage::install_snapshot(dir.path(), NodeId(1), &peers, initial).unwrap();
        let snapshots = FileSnapshotStore::open(dir.path().join(SNAPSHOTS_DIR)).unwrap();
        let meta = snapshots.latest().unwrap().unwrap().meta;
        assert_eq!((meta.index, meta.term), (LogIndex(1), Term(1)));
        let founders = Membership::new([NodeId(1), NodeId(7)], [])
            .unwrap()
            .with_addresses(peers)
            .unwrap();
        assert_eq!(
            meta.membership, founders,
            "the addresses are in the configuration"
        );
        assert!(!dir.path().join(PEERS_FILE).exists());
    }
}
