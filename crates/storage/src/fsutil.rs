//! Small filesystem helpers whose ordering rules the rest of the crate relies on.

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use crate::error::StorageError;

/// Makes the directory entries of `dir` (creations, renames, unlinks)
/// durable. Without it a new segment or snapshot could vanish after a power
/// loss although its contents were synced.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StorageError::io("fsync directory", dir))
}

/// Creates `dir` if needed and makes its entry in the parent durable.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), StorageError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(StorageError::io("create directory", dir))?;
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => Ok(()),
    }
}

/// Reserves `bytes` of disk for `file`, so that appends into the reserved
/// range do not change the file size and `fdatasync` need not commit
/// metadata. Filesystems without `fallocate` simply get a growing file.
pub(crate) fn preallocate(file: &File, path: &Path, bytes: u64) -> Result<(), StorageError> {
    match rustix::fs::fallocate(file.as_fd(), rustix::fs::FallocateFlags::empty(), 0, bytes) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => Ok(()),
        Err(e) => Err(StorageError::io("preallocate", path)(e.into())),
    }
}

/// Opens `path` for reading and writing, creating it if absent.
pub(crate) fn open_rw(path: &Path, create_new: bool) -> Result<File, StorageError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(create_new)
        .open(path)
        .map_err(StorageError::io("open", path))
}

/// Removes `path` and makes the removal durable.
pub(crate) fn remove_durably(path: &Path) -> Result<(), StorageError> {
    fs::remove_file(path).map_err(StorageError::io("remove", path))?;
    sync_dir(parent_of(path))
}

/// The directory holding `path`.
pub(crate) fn parent_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

/// The names in `dir`, for callers that pick out their own files.
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<(String, PathBuf)>, StorageError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(StorageError::io("list directory", dir))? {
        let entry = entry.map_err(StorageError::io("list directory", dir))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push((name.to_owned(), entry.path()));
        }
    }
    Ok(names)
}
