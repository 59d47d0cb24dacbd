//! Harnesses and helpers shared by the integration tests.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};

use keel_storage::conformance::Harness;
use keel_storage::{FileLogStore, LogConfig, MemLogStore};
use tempfile::TempDir;

/// Small segments, so that tests roll and delete segments often.
pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        cache_bytes_max: 1024,
    }
}

/// A file store in a temporary directory; a crash drops the store without
/// syncing (its unsynced writes were never written) and reopens the directory.
pub struct FileHarness {
    pub dir: TempDir,
    pub config: LogConfig,
}

impl FileHarness {
    pub fn new(config: LogConfig) -> FileHarness {
        FileHarness {
            dir: tempfile::tempdir().unwrap(),
            config,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Harness for FileHarness {
    type Store = FileLogStore;

    fn create(&mut self) -> FileLogStore {
        FileLogStore::open(self.dir.path(), self.config.clone()).unwrap()
    }

    fn crash_and_recover(&mut self, store: FileLogStore) -> FileLogStore {
        drop(store);
        let store = FileLogStore::open(self.dir.path(), self.config.clone()).unwrap();
        assert_eq!(
            store.recovery_report().torn_write,
            None,
            "a clean crash tears nothing"
        );
        store
    }
}

pub struct MemHarness;

impl Harness for MemHarness {
    type Store = MemLogStore;

    fn create(&mut self) -> MemLogStore {
        MemLogStore::new()
    }

    fn crash_and_recover(&mut self, mut store: MemLogStore) -> MemLogStore {
        store.crash();
        store
    }
}

/// The segment files in `dir`, in order.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}
