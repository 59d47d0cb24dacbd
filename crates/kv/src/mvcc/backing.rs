//! Where a store's pages live: a file for a member, memory for the
//! simulator, which runs the exact MVCC code with no disk.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::backends::InMemoryBackend;
use redb::{Database, StorageBackend};

use crate::error::KvError;

/// The storage under a store's redb database.
pub(crate) enum Backing {
    File(PathBuf),
    /// The pages, shared with the database, so that the store can still
    /// report their size.
    Memory(Arc<InMemoryBackend>),
}

impl Backing {
    /// A new, empty in-memory database and its backing.
    pub(crate) fn memory() -> Result<(Database, Backing), KvError> {
        let pages = Arc::new(InMemoryBackend::new());
        let db = Database::builder()
            .create_with_backend(SharedPages(pages.clone()))
            .map_err(KvError::storage)?;
        Ok((db, Backing::Memory(pages)))
    }

    /// The database file, if there is one.
    pub(crate) fn path(&self) -> Option<&Path> {
        match self {
            Backing::File(path) => Some(path),
            Backing::Memory(_) => None,
        }
    }

    /// The bytes the database occupies: its file's size, or its pages' in
    /// memory. What etcd's `endpoint status` calls the database size.
    pub(crate) fn size_bytes(&self) -> i64 {
        let len = match self {
            Backing::File(path) => std::fs::metadata(path).map(|m| m.len()),
            Backing::Memory(pages) => StorageBackend::len(&**pages),
        };
        len.map_or(0, |len| len as i64)
    }
}

/// The in-memory pages as redb's backend. redb takes ownership of the
/// backend it is given; this lends it a shared one instead. (Calls name the
/// trait: `InMemoryBackend` has private inherent `read` and `write`.)
#[derive(Debug)]
struct SharedPages(Arc<InMemoryBackend>);

impl StorageBackend for SharedPages {
    fn len(&self) -> io::Result<u64> {
        StorageBackend::len(&*self.0)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        StorageBackend::read(&*self.0, offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        StorageBackend::set_len(&*self.0, len)
    }

    fn sync_data(&self) -> io::Result<()> {
        StorageBackend::sync_data(&*self.0)
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        StorageBackend::write(&*self.0, offset, data)
    }
}
