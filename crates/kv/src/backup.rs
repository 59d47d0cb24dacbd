//! Snapshot files, as `keel snapshot save` and `etcdctl snapshot save`
//! write them from `Maintenance/Snapshot`: the store's snapshot stream
//! (`mvcc/snapshot.rs`) padded with zeros to whole 512-byte blocks, then
//! the SHA-256 of everything before it. That envelope is etcd's (etcdctl
//! checks it), the content is Keel's own: etcd's files are bbolt
//! databases, which Keel neither writes nor reads, so `etcdctl snapshot
//! status|restore` cannot read Keel's files and Keel cannot read etcd's.
//!
//! [`SnapshotFile::open`] checks the envelope before anything else reads
//! the content, so a truncated or damaged file is refused whole, with an
//! error that says which, rather than half restored.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Corruption, KvError};
use crate::mvcc::{self, SnapshotSummary};

/// The download is whole blocks of this size, then the checksum.
pub const BLOCK_BYTES: u64 = 512;
/// The trailing SHA-256.
pub const SHA256_BYTES: u64 = 32;

/// Why a snapshot file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{}: {size} bytes is not whole 512-byte blocks plus a 32-byte SHA-256: \
         the file is truncated or is not a snapshot",
        .path.display()
    )]
    Size { path: PathBuf, size: u64 },
    #[error(
        "{}: the SHA-256 does not match the content (stored {stored}, computed {computed}): \
         the file is damaged",
        .path.display()
    )]
    Checksum {
        path: PathBuf,
        stored: String,
        computed: String,
    },
    #[error(
        "{}: not a Keel snapshot ({source}); etcd's own snapshot files (bbolt databases) \
         cannot be read by Keel",
        .path.display()
    )]
    Content {
        path: PathBuf,
        #[source]
        source: KvError,
    },
}

/// A snapshot file whose checksum matched its content.
#[derive(Debug)]
pub struct SnapshotFile {
    path: PathBuf,
    /// The snapshot stream and its padding: what the checksum covers.
    data_bytes: u64,
}

/// What `snapshot status` prints, etcdctl's four columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotStatus {
    /// Comparable with `endpoint hashkv` at `revision` (see
    /// [`SnapshotSummary::hash`]).
    pub hash: u32,
    pub revision: i64,
    /// Stored revisions of keys: every version kept, tombstones included
    /// (etcd counts the rows of its database the same way).
    pub total_keys: u64,
    /// The file's size in bytes.
    pub total_size: u64,
}

impl SnapshotFile {
    /// Opens `path` and verifies its size and SHA-256.
    pub fn open(path: &Path) -> Result<SnapshotFile, SnapshotFileError> {
        let io_error = |source| SnapshotFileError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = File::open(path).map_err(io_error)?;
        let size = file.metadata().map_err(io_error)?.len();
        if size < BLOCK_BYTES + SHA256_BYTES || size % BLOCK_BYTES != SHA256_BYTES {
            return Err(SnapshotFileError::Size {
                path: path.to_owned(),
                size,
            });
        }
        let data_bytes = size - SHA256_BYTES;
        let mut digest = Sha256::new();
        let copied = io::copy(&mut (&mut file).take(data_bytes), &mut digest).map_err(io_error)?;
        let mut stored = [0u8; SHA256_BYTES as usize];
        file.read_exact(&mut stored).map_err(io_error)?;
        let computed = digest.finalize();
        if copied != data_bytes || computed.as_slice() != stored {
            return Err(SnapshotFileError::Checksum {
                path: path.to_owned(),
                stored: hex(&stored),
                computed: hex(&computed),
            });
        }
        Ok(SnapshotFile {
            path: path.to_owned(),
            data_bytes,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The snapshot stream (frames up to the end frame, then padding).
    pub fn data(&self) -> Result<impl Read + use<>, SnapshotFileError> {
        let file = File::open(&self.path).map_err(|source| SnapshotFileError::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(BufReader::new(file.take(self.data_bytes)))
    }

    /// Reads the whole stream and summarizes it.
    pub fn summary(&self) -> Result<SnapshotSummary, SnapshotFileError> {
        mvcc::summarize(&mut self.data()?).map_err(|e| self.content_error(e))
    }

    /// etcdctl's `snapshot status` columns.
    pub fn status(&self) -> Result<SnapshotStatus, SnapshotFileError> {
        let summary = self.summary()?;
        Ok(SnapshotStatus {
            hash: summary.hash,
            revision: summary.position.revision,
            total_keys: summary.revisions,
            total_size: self.data_bytes + SHA256_BYTES,
        })
    }

    /// A failure to read the stream that passed its checksum: the content
    /// is not what Keel writes (an I/O error stays one).
    pub fn content_error(&self, error: KvError) -> SnapshotFileError {
        match error {
            KvError::Io(e) if e.kind() != io::ErrorKind::UnexpectedEof => SnapshotFileError::Io {
                path: self.path.clone(),
                source: e,
            },
            KvError::Io(_) => SnapshotFileError::Content {
                path: self.path.clone(),
                source: KvError::Corrupt {
                    what: "snapshot",
                    kind: Corruption::NoEndFrame,
                },
            },
            other => SnapshotFileError::Content {
                path: self.path.clone(),
                source: other,
            },
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A store with `keys` puts (`k0`, `k1`, …) applied, written as a
/// snapshot file in `dir`, as a download would be.
#[cfg(test)]
pub(crate) fn test_snapshot_file(dir: &Path, keys: u64) -> PathBuf {
    use std::io::Write;

    use bytes::Bytes;

    use crate::command;
    use crate::mvcc::{EntryPayload, Store};
    use crate::proto::command::command::Op;
    use crate::proto::etcdserverpb::PutRequest;

    let store = Store::open_in_memory().unwrap();
    for i in 0..keys {
        let bytes = command::encode(Op::Put(PutRequest {
            key: Bytes::from(format!("k{i}")),
            value: Bytes::from_static(b"v"),
            ..Default::default()
        }));
        store
            .apply(&[(i + 1, 1, EntryPayload::Command(&bytes))])
            .unwrap();
    }
    let mut data = Vec::new();
    store.write_snapshot(&mut data).unwrap();
    let padded = (data.len() as u64).div_ceil(BLOCK_BYTES) * BLOCK_BYTES;
    data.resize(padded as usize, 0);
    let sum = Sha256::digest(&data);
    let path = dir.join("snap.db");
    let mut file = File::create(&path).unwrap();
    file.write_all(&data).unwrap();
    file.write_all(&sum).unwrap();
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot_file(dir: &Path, keys: u64) -> PathBuf {
        test_snapshot_file(dir, keys)
    }

    #[test]
    fn status_reports_revision_keys_and_the_hashkv_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = snapshot_file(dir.path(), 5);
        let status = SnapshotFile::open(&path).unwrap().status().unwrap();
        assert_eq!(status.revision, 6);
        assert_eq!(status.total_keys, 5);
        assert_eq!(status.total_size, std::fs::metadata(&path).unwrap().len());
        assert_ne!(status.hash, 0);
    }

    #[test]
    fn truncated_file_is_refused_by_size_at_every_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = snapshot_file(dir.path(), 3);
        let bytes = std::fs::read(&path).unwrap();
        for len in 0..bytes.len() {
            let cut = dir.path().join("cut.db");
            std::fs::write(&cut, &bytes[..len]).unwrap();
            match SnapshotFile::open(&cut) {
                Err(SnapshotFileError::Size { size, .. }) => assert_eq!(size, len as u64),
                other => panic!("length {len}: {other:?}"),
            }
        }
    }

    #[test]
    fn any_flipped_byte_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = snapshot_file(dir.path(), 3);
        let bytes = std::fs::read(&path).unwrap();
        for at in (0..bytes.len()).step_by(7) {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            std::fs::write(&path, &damaged).unwrap();
            assert!(
                matches!(
                    SnapshotFile::open(&path),
                    Err(SnapshotFileError::Checksum { .. })
                ),
                "byte {at}"
            );
        }
    }

    #[test]
    fn well_sealed_garbage_is_refused_as_not_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = vec![0x5au8; 1024];
        data[0] = 2; // a key frame, with a length running past the data
        let sum = Sha256::digest(&data);
        data.extend_from_slice(&sum);
        let path = dir.path().join("garbage.db");
        std::fs::write(&path, &data).unwrap();
        let file = SnapshotFile::open(&path).unwrap();
        let error = file.status().unwrap_err();
        assert!(
            matches!(error, SnapshotFileError::Content { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("not a Keel snapshot"), "{error}");
    }
}
