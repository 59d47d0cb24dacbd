//! The member's IDs, stored in its data directory on first start so that a
//! restart keeps them whatever the flags say then (etcd keeps them in its
//! WAL metadata).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use super::ServerError;

const FILE: &str = "member.id";

/// A member's place in its cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub member_id: u64,
    pub cluster_id: u64,
}

/// The stored identity, if the directory has one.
pub(crate) fn load(dir: &Path) -> Result<Option<Identity>, ServerError> {
    let path = dir.join(FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut words = text.split_whitespace().map(|w| u64::from_str_radix(w, 16));
    match (words.next(), words.next()) {
        (Some(Ok(member_id)), Some(Ok(cluster_id))) => Ok(Some(Identity {
            member_id,
            cluster_id,
        })),
        _ => Err(ServerError::DamagedIdentity { path }),
    }
}

/// Stores `identity` durably: temporary file, fsync, rename, fsync the
/// directory.
pub(crate) fn save(dir: &Path, identity: Identity) -> Result<(), ServerError> {
    let path = dir.join(FILE);
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp)?;
    writeln!(file, "{:x} {:x}", identity.member_id, identity.cluster_id)?;
    file.sync_all()?;
    fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_identity_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let id = Identity {
            member_id: 0xdead_beef,
            cluster_id: u64::MAX,
        };
        save(dir.path(), id).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(id));
    }
}
