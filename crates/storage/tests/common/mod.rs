//! Harnesses and helpers shared by the integration tests.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};

use bytes::Bytes;
use keel_raft::{Entry, LogIndex, Payload, Term};
use keel_storage::conformance::{CrashKeeps, Harness, snapshots};
use keel_storage::{
    CrashKeep, FileLogStore, FileSnapshotStore, LogConfig, MemLogStore, MemSnapshotStore,
};
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

/// A memory store whose crashes keep a random prefix of the unsynced
/// writes, torn appends included: the crashes the simulator deals.
pub struct PrefixCrashHarness {
    rng: SplitMix64,
    /// Every crash's choice and how much was unsynced, for tests that check
    /// the choices covered the interesting cases.
    pub crashes: Vec<(CrashKeep, usize)>,
}

impl PrefixCrashHarness {
    pub fn new(seed: u64) -> PrefixCrashHarness {
        PrefixCrashHarness {
            rng: SplitMix64(seed),
            crashes: Vec::new(),
        }
    }
}

impl Harness for PrefixCrashHarness {
    type Store = MemLogStore;
    const CRASH_KEEPS: CrashKeeps = CrashKeeps::APrefix;

    fn create(&mut self) -> MemLogStore {
        MemLogStore::new()
    }

    fn crash_and_recover(&mut self, mut store: MemLogStore) -> MemLogStore {
        let unsynced = store.unsynced_writes();
        let writes = self.rng.below(unsynced + 1);
        let torn_entries = match store.unsynced_append_len(writes) {
            Some(len) if len > 1 => self.rng.below(len),
            _ => 0,
        };
        let keep = CrashKeep {
            writes,
            torn_entries,
        };
        self.crashes.push((keep, unsynced));
        store.crash_keeping(keep);
        store
    }
}

/// Sebastiano Vigna's SplitMix64: a seeded sequence that no dependency
/// upgrade can change.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0 .. n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Entry `index` (term 1) with `len` bytes of data in which no byte is
/// zero, so that it never ends in zeros.
pub fn entry(index: u64, len: usize) -> Entry {
    let data: Vec<u8> = (0..len)
        .map(|k| (index as usize * 31 + k) as u8 | 1)
        .collect();
    Entry {
        term: Term(1),
        index: LogIndex(index),
        payload: Payload::Command(Bytes::from(data)),
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

/// A file snapshot store in a temporary directory of its own; a crash
/// drops the store and opens the directory again.
pub struct FileSnapshotHarness {
    pub dir: TempDir,
}

impl FileSnapshotHarness {
    pub fn new() -> FileSnapshotHarness {
        FileSnapshotHarness {
            dir: tempfile::tempdir().unwrap(),
        }
    }
}

impl snapshots::Harness for FileSnapshotHarness {
    type Store = FileSnapshotStore;

    fn create(&mut self) -> FileSnapshotStore {
        FileSnapshotStore::open(self.dir.path()).unwrap()
    }

    fn crash_and_recover(&mut self, store: FileSnapshotStore) -> FileSnapshotStore {
        drop(store);
        FileSnapshotStore::open(self.dir.path()).unwrap()
    }
}

/// A memory snapshot store: clones share their snapshots, so a crash is
/// the store itself (what the crash interrupted is lost with its objects).
pub struct MemSnapshotHarness;

impl snapshots::Harness for MemSnapshotHarness {
    type Store = MemSnapshotStore;

    fn create(&mut self) -> MemSnapshotStore {
        MemSnapshotStore::new()
    }

    fn crash_and_recover(&mut self, store: MemSnapshotStore) -> MemSnapshotStore {
        store
    }
}
