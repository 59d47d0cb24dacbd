//! `snapshot restore`: a data directory for one founding member of a new
//! cluster, holding a snapshot file's keys, leases and revisions, with etcd
//! 3.4's flags and meanings. Restoring the same file once per member, each
//! with its own `--name` and the same `--initial-cluster` and
//! `--initial-cluster-token`, and starting every member on its directory
//! gives a cluster that holds exactly the snapshot's data at its revision.
//!
//! What is new: the member and cluster IDs (derived from the flags, as a
//! first start derives them, `ids.rs`), the Raft configuration (the
//! founders of `--initial-cluster`) and the log. The new log begins with
//! a Raft snapshot at index 1 of term 1 holding the data
//! (`keel::Storage::install_snapshot`), so that a member added later
//! receives the data as that snapshot rather than replaying a log that
//! never held it; the store records index 1 as applied, and its member
//! registry is emptied (members publish themselves when they start). The
//! cluster ID is the token's hash, so give the restored cluster a token of
//! its own to keep members of the old cluster from talking to it, and
//! start every member, and any member added later, with that token.
//!
//! The directory is built next to its destination and renamed into place
//! only when complete, so a failed restore leaves nothing to start from.

use std::collections::BTreeMap;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use keel::{InitialState, LogIndex, NodeId, Storage, Term};

use super::config::ConfigError;
use super::config::MemberConfig;
use super::identity::{self, Identity};
use super::ids::{cluster_id, member_id};
use super::urls::strings;
use crate::backup::{SnapshotFile, SnapshotFileError};
use crate::mvcc::{RestoreAs, StorePosition};
use crate::state_machine::KvStateMachine;

/// Where the restored state sits in the new cluster's log.
const RESTORED_INDEX: u64 = 1;
const RESTORED_TERM: u64 = 1;

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    File(#[from] SnapshotFileError),
    #[error(transparent)]
    Flags(#[from] ConfigError),
    #[error("data-dir {} exists; restore into a new directory", .0.display())]
    DataDirExists(PathBuf),
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What a restore wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restored {
    pub identity: Identity,
    /// The founders of the new cluster, this member included.
    pub members: usize,
    pub position: StorePosition,
}

/// Restores `snapshot` into `config.data_dir`, which must not exist, for
/// the member `config.name` of the cluster `config.initial_cluster`, named
/// `config.initial_cluster_token`. Only those fields (and
/// `initial_advertise_peer_urls`, which must agree with the member's entry
/// in `initial_cluster`) are used and checked: listeners and TLS are the
/// business of `serve`, so `https://` peer URLs need no certificate here.
pub fn restore(snapshot: &Path, config: &MemberConfig) -> Result<Restored, RestoreError> {
    config.validate_founders()?;
    let file = SnapshotFile::open(snapshot)?;
    let data_dir = &config.data_dir;
    if data_dir.exists() {
        return Err(RestoreError::DataDirExists(data_dir.clone()));
    }
    let token = &config.initial_cluster_token;
    let mut me = None;
    let mut peers = BTreeMap::new();
    for (name, urls) in config.founders() {
        let id = NodeId(member_id(token, &strings(&urls)));
        peers.insert(id, urls[0].authority());
        if name == config.name {
            me = Some(id);
        }
    }
    let me = me.expect("validate_founders checked that --initial-cluster names this member");
    let identity = Identity {
        member_id: me.0,
        cluster_id: cluster_id(token),
    };

    let staging = staging_dir(data_dir);
    let written = write_member(&file, &staging, identity, &peers);
    let renamed = written.and_then(|position| {
        std::fs::rename(&staging, data_dir).map_err(|e| write_error(data_dir, e))?;
        sync_parent(data_dir).map_err(|e| write_error(data_dir, e))?;
        Ok(position)
    });
    match renamed {
        Ok(position) => Ok(Restored {
            identity,
            members: peers.len(),
            position,
        }),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

/// Writes the whole member into `dir`: store, identity, Raft configuration.
fn write_member(
    file: &SnapshotFile,
    dir: &Path,
    identity: Identity,
    peers: &BTreeMap<NodeId, String>,
) -> Result<StorePosition, RestoreError> {
    if dir.exists() {
        // A previous restore that died half way: nothing in it is ours.
        std::fs::remove_dir_all(dir).map_err(|e| write_error(dir, e))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| write_error(dir, e))?;
    let kv_dir = dir.join("kv");
    let sm = KvStateMachine::open(&kv_dir, false).map_err(|e| write_error(&kv_dir, e))?;
    let position = sm
        .store()
        .restore_snapshot_as(
            &mut file.data()?,
            RestoreAs::NewCluster {
                index: RESTORED_INDEX,
                term: RESTORED_TERM,
            },
        )
        .map_err(|e| match e {
            crate::KvError::Storage(_) => write_error(&kv_dir, e),
            other => RestoreError::File(file.content_error(other)),
        })?;
    sm.flush().map_err(|e| write_error(&kv_dir, e))?;
    // The Raft snapshot is the restored store streamed out again, so that
    // it records the new log position, not the old cluster's; staged in a
    // file, as the state need not fit in memory.
    let mut state = tempfile::tempfile_in(dir).map_err(|e| write_error(dir, e))?;
    let mut staged = std::io::BufWriter::new(&mut state);
    sm.write_snapshot(&mut staged)
        .map_err(|e| write_error(&kv_dir, e))?;
    staged.flush().map_err(|e| write_error(dir, e))?;
    drop(staged);
    state.rewind().map_err(|e| write_error(dir, e))?;
    drop(sm);
    identity::save(dir, identity).map_err(|e| write_error(dir, e))?;
    let raft_dir = dir.join("raft");
    let initial = InitialState {
        index: LogIndex(RESTORED_INDEX),
        term: Term(RESTORED_TERM),
        data: &mut std::io::BufReader::new(state),
    };
    Storage::install_snapshot(&raft_dir, NodeId(identity.member_id), peers, initial)
        .map_err(|e| write_error(&raft_dir, e))?;
    Ok(position)
}

fn staging_dir(data_dir: &Path) -> PathBuf {
    let mut name = data_dir.as_os_str().to_owned();
    name.push(".restoring");
    PathBuf::from(name)
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => std::fs::File::open(parent)?.sync_all(),
        _ => Ok(()),
    }
}

fn write_error(
    path: &Path,
    source: impl std::error::Error + Send + Sync + 'static,
) -> RestoreError {
    RestoreError::Write {
        path: path.to_owned(),
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::test_snapshot_file;
    use crate::server::HttpUrl;

    fn config(data_dir: &Path) -> MemberConfig {
        let mut config = MemberConfig::new("n2", data_dir);
        config.initial_cluster = MemberConfig::parse_initial_cluster(
            "n1=http://127.0.0.1:1,n2=http://127.0.0.1:2,n3=http://127.0.0.1:3",
        )
        .unwrap();
        config.initial_cluster_token = "restored".into();
        config
    }

    #[test]
    fn restored_member_holds_the_data_with_a_fresh_log_position_and_new_ids() {
        let dir = tempfile::tempdir().unwrap();
        let snapshot = test_snapshot_file(dir.path(), 4);
        let data_dir = dir.path().join("n2");
        let restored = restore(&snapshot, &config(&data_dir)).unwrap();
        assert_eq!(restored.members, 3);
        assert_eq!(restored.position.revision, 5);
        assert_eq!(restored.position.applied_index, RESTORED_INDEX);
        let urls = ["http://127.0.0.1:2".to_owned()];
        assert_eq!(
            identity::load(&data_dir).unwrap(),
            Some(Identity {
                member_id: member_id("restored", &urls),
                cluster_id: cluster_id("restored"),
            })
        );
        let sm = KvStateMachine::open(&data_dir.join("kv"), false).unwrap();
        assert_eq!(sm.position().revision, 5);
        assert_eq!(sm.position().applied_index, RESTORED_INDEX);
        assert!(sm.store().members().is_empty());
        assert!(data_dir.join("raft/snapshots").is_dir());
        assert!(!staging_dir(&data_dir).exists());
    }

    #[test]
    fn https_peer_urls_need_no_certificate_to_restore() {
        let dir = tempfile::tempdir().unwrap();
        let snapshot = test_snapshot_file(dir.path(), 1);
        let data_dir = dir.path().join("n1");
        let mut config = MemberConfig::new("n1", &data_dir);
        config.initial_cluster =
            MemberConfig::parse_initial_cluster("n1=https://127.0.0.1:1,n2=https://127.0.0.1:2")
                .unwrap();
        config.initial_advertise_peer_urls = vec![HttpUrl::parse("https://127.0.0.1:1").unwrap()];
        assert_eq!(restore(&snapshot, &config).unwrap().members, 2);
    }

    #[test]
    fn a_member_missing_from_the_initial_cluster_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let snapshot = test_snapshot_file(dir.path(), 1);
        let mut config = config(&dir.path().join("n9"));
        config.name = "n9".into();
        let error = restore(&snapshot, &config).unwrap_err();
        assert!(
            error.to_string().contains("does not list this member `n9`"),
            "{error}"
        );
    }

    #[test]
    fn an_existing_data_dir_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let snapshot = test_snapshot_file(dir.path(), 1);
        let data_dir = dir.path().join("n2");
        std::fs::create_dir(&data_dir).unwrap();
        std::fs::write(data_dir.join("mine"), b"x").unwrap();
        let error = restore(&snapshot, &config(&data_dir)).unwrap_err();
        assert!(matches!(error, RestoreError::DataDirExists(_)), "{error:?}");
        assert_eq!(std::fs::read(data_dir.join("mine")).unwrap(), b"x");
    }

    #[test]
    fn a_damaged_file_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let snapshot = test_snapshot_file(dir.path(), 2);
        let mut bytes = std::fs::read(&snapshot).unwrap();
        bytes[3] ^= 1;
        std::fs::write(&snapshot, &bytes).unwrap();
        let data_dir = dir.path().join("n2");
        let error = restore(&snapshot, &config(&data_dir)).unwrap_err();
        assert!(
            matches!(
                error,
                RestoreError::File(SnapshotFileError::Checksum { .. })
            ),
            "{error:?}"
        );
        assert!(!data_dir.exists());
    }
}
