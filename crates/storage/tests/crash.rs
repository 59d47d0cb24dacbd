//! Crash consistency of the file store: torn writes at every byte offset,
//! bit flips, zeroed sectors, missing and half-created segments.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{entry, segment_files};
use keel_raft::{Entry, LogIndex, Term};
use keel_storage::conformance::{persist, read_all};
use keel_storage::{Corruption, FileLogStore, LogConfig, LogStore, StorageError};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 << 10,
        cache_bytes_max: 0,
    }
}

/// Writes entries `1..=count`, one batch (and one sync) each, and returns
/// the segment and the batch boundaries in it: batch `k` (entry `k`, plus
/// the segment's head records for `k == 1`) spans `bounds[k-1]..bounds[k]`.
fn write_batches(dir: &Path, count: u64) -> (PathBuf, Vec<u64>) {
    let mut store = FileLogStore::open(dir, config()).unwrap();
    // The first batch starts after the 32-byte segment header.
    let mut bounds = vec![32];
    for i in 1..=count {
        store.append(&[entry(i, 100)]);
        persist(&mut store);
        bounds.push(store.durable_end().unwrap().1);
    }
    let path = store.durable_end().unwrap().0.to_path_buf();
    assert_eq!(
        segment_files(dir),
        vec![path.clone()],
        "everything fits one segment"
    );
    (path, bounds)
}

fn reopen(dir: &Path) -> Result<FileLogStore, StorageError> {
    FileLogStore::open(dir, config())
}

fn expect_corrupt(dir: &Path) -> (PathBuf, u64, Corruption) {
    match reopen(dir) {
        Err(StorageError::Corrupt { file, offset, kind }) => (file, offset, kind),
        Err(other) => panic!("expected a corruption error, got {other}"),
        Ok(store) => panic!(
            "expected a corruption error, opened {} entries",
            store.last_index()
        ),
    }
}

/// A deterministic pseudo-random sequence (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

#[test]
fn torn_final_record_at_every_byte_offset_recovers_the_entries_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (path, bounds) = write_batches(dir.path(), 10);
    let original = fs::read(&path).unwrap();
    let (start, end) = (bounds[9], bounds[10]);
    let expected: Vec<Entry> = (1..=9).map(|i| entry(i, 100)).collect();
    for cut in start..=end {
        for truncate_file in [true, false] {
            // Either the file ends at `cut`, or the bytes after it never
            // reached the (preallocated) disk.
            let mut torn = original.clone();
            if truncate_file {
                torn.truncate(cut as usize);
            } else {
                torn[cut as usize..end as usize].fill(0);
            }
            fs::write(&path, &torn).unwrap();
            let mut store = reopen(dir.path()).unwrap();
            if cut == end {
                assert_eq!(store.last_index(), LogIndex(10));
                continue;
            }
            assert_eq!(
                read_all(&store),
                expected,
                "cut at {cut}, truncated: {truncate_file}"
            );
            let report = store.recovery_report().torn_write.clone();
            assert_eq!(
                report.is_some(),
                cut > start,
                "cut at {cut}: torn report {report:?}"
            );
            if cut % 16 == 0 {
                // The repaired log accepts writes, and they survive a reopen.
                store.append(&[entry(10, 7)]);
                persist(&mut store);
                drop(store);
                let store = reopen(dir.path()).unwrap();
                assert_eq!(
                    store.entries(LogIndex(10), LogIndex(11), u64::MAX).unwrap(),
                    vec![entry(10, 7)]
                );
            }
        }
    }
}

#[test]
fn bit_flip_in_an_acknowledged_record_is_typed_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (path, bounds) = write_batches(dir.path(), 30);
    let original = fs::read(&path).unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..150 {
        // Batches 2..=29: each holds one record, and a later batch follows.
        let at = (bounds[1] + rng.below(bounds[29] - bounds[1])) as usize;
        let mut flipped = original.clone();
        flipped[at] ^= 1 << rng.below(8);
        fs::write(&path, &flipped).unwrap();
        let (file, offset, kind) = expect_corrupt(dir.path());
        assert_eq!(file, path);
        let record_start = *bounds.iter().rev().find(|&&b| b as usize <= at).unwrap();
        assert_eq!(offset, record_start, "flip at {at} ({kind})");
        assert!(
            matches!(kind, Corruption::DamagedBeforeLaterWrite { .. }),
            "{kind}"
        );
    }
    // The message tells the operator what to do.
    let error = reopen(dir.path()).unwrap_err().to_string();
    assert!(
        error.contains(&path.display().to_string()) && error.contains("snapshot"),
        "{error}"
    );
}

#[test]
fn bit_flip_in_the_final_record_is_treated_as_a_torn_write() {
    let dir = tempfile::tempdir().unwrap();
    let (path, bounds) = write_batches(dir.path(), 12);
    let original = fs::read(&path).unwrap();
    let (start, end) = (bounds[11], bounds[12]);
    for at in start..end {
        let mut flipped = original.clone();
        flipped[at as usize] ^= 0x40;
        fs::write(&path, &flipped).unwrap();
        let store = reopen(dir.path()).unwrap();
        assert_eq!(store.last_index(), LogIndex(11), "flip at {at}");
        let torn = store.recovery_report().torn_write.clone().unwrap();
        assert_eq!((torn.offset, torn.segment_removed), (start, false));
    }
}

#[test]
fn torn_batch_whose_later_page_reached_the_disk_is_still_torn() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = FileLogStore::open(dir.path(), config()).unwrap();
    store.append(&(1..=3).map(|i| entry(i, 100)).collect::<Vec<_>>());
    persist(&mut store);
    let (path, start) = store
        .durable_end()
        .map(|(p, o)| (p.to_path_buf(), o))
        .unwrap();
    store.append(&(4..=60).map(|i| entry(i, 300)).collect::<Vec<_>>());
    persist(&mut store);
    drop(store);
    // The batch's first page never reached the disk; its later pages did.
    let mut bytes = fs::read(&path).unwrap();
    let page_end = (start as usize / 4096 + 1) * 4096;
    bytes[start as usize..page_end].fill(0);
    fs::write(&path, &bytes).unwrap();
    let store = reopen(dir.path()).unwrap();
    assert_eq!(store.last_index(), LogIndex(3));
    assert!(
        store
            .recovery_report()
            .torn_write
            .as_ref()
            .unwrap()
            .discarded_bytes
            > 10_000
    );
}

#[test]
fn zeroed_sector_inside_acknowledged_data_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (path, bounds) = write_batches(dir.path(), 40);
    let mut bytes = fs::read(&path).unwrap();
    bytes[1024..1536].fill(0);
    fs::write(&path, &bytes).unwrap();
    let (file, offset, kind) = expect_corrupt(dir.path());
    assert_eq!(file, path);
    assert!(
        bounds.contains(&offset) && offset <= 1024,
        "offset {offset}"
    );
    assert!(
        matches!(kind, Corruption::DamagedBeforeLaterWrite { .. }),
        "{kind}"
    );
}

/// Writes enough 1 KiB entries to fill several 4 KiB segments.
fn write_segments(dir: &Path) -> Vec<PathBuf> {
    let config = LogConfig {
        segment_bytes: 4096,
        cache_bytes_max: 0,
    };
    let mut store = FileLogStore::open(dir, config).unwrap();
    for i in 1..=20 {
        store.append(&[entry(i, 1000)]);
        persist(&mut store);
    }
    drop(store);
    let files = segment_files(dir);
    assert!(files.len() >= 4, "{} segments", files.len());
    files
}

fn reopen_small(dir: &Path) -> Result<FileLogStore, StorageError> {
    let config = LogConfig {
        segment_bytes: 4096,
        cache_bytes_max: 0,
    };
    FileLogStore::open(dir, config)
}

#[test]
fn missing_middle_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_segments(dir.path());
    fs::remove_file(&files[1]).unwrap();
    match reopen_small(dir.path()) {
        Err(StorageError::Corrupt { file, kind, .. }) => {
            assert_eq!(file, files[2]);
            assert_eq!(kind, Corruption::MissingSegment { missing: 2 });
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn missing_first_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_segments(dir.path());
    fs::remove_file(&files[0]).unwrap();
    match reopen_small(dir.path()) {
        Err(StorageError::Corrupt { file, kind, .. }) => {
            assert_eq!(file, files[1]);
            assert!(matches!(kind, Corruption::MissingPrefix { .. }), "{kind}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn damaged_tail_of_an_earlier_segment_is_corruption_not_a_torn_write() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_segments(dir.path());
    let mut bytes = fs::read(&files[0]).unwrap();
    let last_written = bytes.iter().rposition(|&b| b != 0).unwrap();
    bytes[last_written - 10] ^= 0x08;
    fs::write(&files[0], &bytes).unwrap();
    match reopen_small(dir.path()) {
        Err(StorageError::Corrupt { file, kind, .. }) => {
            assert_eq!(file, files[0]);
            assert!(matches!(kind, Corruption::DamagedRecord { .. }), "{kind}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn half_created_segment_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_segments(dir.path());
    // A crash right after the next segment was created and preallocated.
    let next = dir.path().join(format!("{:020}.wal", files.len() + 1));
    fs::write(&next, vec![0u8; 4096]).unwrap();
    let store = reopen_small(dir.path()).unwrap();
    assert_eq!(store.last_index(), LogIndex(20));
    assert!(
        store
            .recovery_report()
            .torn_write
            .as_ref()
            .unwrap()
            .segment_removed
    );
    assert!(!next.exists());
}

#[test]
fn unsupported_format_version_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_batches(dir.path(), 2);
    let mut bytes = fs::read(&path).unwrap();
    bytes[8] = 9;
    let crc = crc32c::crc32c(&bytes[0..24]);
    bytes[24..28].copy_from_slice(&crc.to_le_bytes());
    fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        reopen(dir.path()),
        Err(StorageError::UnsupportedVersion {
            found: 9,
            supported: 1,
            ..
        })
    ));
}

#[test]
fn second_store_on_one_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = FileLogStore::open(dir.path(), config()).unwrap();
    assert!(matches!(
        reopen(dir.path()),
        Err(StorageError::Locked { .. })
    ));
}

#[test]
fn compaction_deletes_whole_segments_and_keeps_the_snapshot_point() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_segments(dir.path());
    let mut store = reopen_small(dir.path()).unwrap();
    store.compact(LogIndex(18), Term(1));
    persist(&mut store);
    assert!(store.segment_count() < files.len());
    assert!(segment_files(dir.path()).len() <= 2);
    drop(store);
    let store = reopen_small(dir.path()).unwrap();
    assert_eq!(
        (store.first_index(), store.term(LogIndex(18))),
        (LogIndex(19), Some(Term(1)))
    );
    assert_eq!(read_all(&store), vec![entry(19, 1000), entry(20, 1000)]);
}

#[test]
fn torn_first_batch_of_a_new_segment_removes_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_segments(dir.path());
    let last = files.last().unwrap();
    let mut store = reopen_small(dir.path()).unwrap();
    let before = read_all(&store);
    // Fill the last segment until the next batch rolls into a new one.
    let mut index = store.last_index().0;
    while segment_files(dir.path()).len() == files.len() {
        index += 1;
        store.append(&[entry(index, 1000)]);
        persist(&mut store);
    }
    drop(store);
    let new = segment_files(dir.path()).pop().unwrap();
    assert_ne!(&new, last);
    let written = fs::read(&new).unwrap();
    let end = written.iter().rposition(|&b| b != 0).unwrap() + 1;
    // Tear the new segment's first batch (head records + one entry) at a few places.
    for cut in [40, 100, end / 2, end - 1] {
        let mut torn = written.clone();
        torn[cut..end].fill(0);
        fs::write(&new, &torn).unwrap();
        let store = reopen_small(dir.path()).unwrap();
        assert_eq!(store.last_index().0, index - 1, "cut at {cut}");
        assert_eq!(read_all(&store)[..before.len()], before[..]);
        assert!(
            store
                .recovery_report()
                .torn_write
                .as_ref()
                .unwrap()
                .segment_removed
        );
        assert!(!new.exists());
    }
}

#[test]
fn damage_after_open_is_reported_by_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (path, bounds) = write_batches(dir.path(), 5);
    let store = reopen(dir.path()).unwrap();
    let mut bytes = fs::read(&path).unwrap();
    bytes[bounds[2] as usize + 60] ^= 0x01; // inside entry 3's payload
    fs::write(&path, &bytes).unwrap();
    assert_eq!(
        store.entries(LogIndex(1), LogIndex(3), u64::MAX).unwrap(),
        vec![entry(1, 100), entry(2, 100)]
    );
    match store.entries(LogIndex(1), LogIndex(6), u64::MAX) {
        Err(StorageError::Corrupt { file, offset, .. }) => {
            assert_eq!((file, offset), (path, bounds[2]))
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}
