//! Zeros written ahead of the log's end (`ZERO_AHEAD_BYTES`) change how
//! the filesystem keeps a segment, never what it holds: no record is
//! overwritten, no segment grows past its preallocated size, and the log
//! reads back whole, across restarts and segment rolls. And where the
//! filesystem reports preallocated, never-written space as a hole (ext4
//! and XFS do), the zeros are seen to be written.

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;

use common::{entry, segment_files};
use keel_storage::conformance::{persist, read_all};
use keel_storage::{FileLogStore, LogConfig, LogStore, ZERO_AHEAD_BYTES};
use rustix::fs::SeekFrom;

const SEGMENT_BYTES: u64 = 3 * ZERO_AHEAD_BYTES;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: SEGMENT_BYTES,
        cache_bytes_max: 0,
    }
}

/// The active segment's file, and where its records end.
fn active(store: &FileLogStore) -> (fs::File, u64) {
    let (path, end) = store.durable_end().unwrap();
    (fs::File::open(path).unwrap(), end)
}

/// Whether this filesystem reports preallocated space as a hole until it
/// is written.
fn preallocated_space_is_a_hole(dir: &Path) -> bool {
    let file = fs::File::create(dir.join("probe")).unwrap();
    let reserved = rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, 1 << 20);
    let hole = rustix::fs::seek(&file, SeekFrom::Hole(0));
    fs::remove_file(dir.join("probe")).unwrap();
    reserved.is_ok() && hole == Ok(0)
}

#[test]
fn zeros_ahead_never_touch_records_nor_grow_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let holes_visible = preallocated_space_is_a_hole(dir.path());
    let mut written = Vec::new();
    let mut store = FileLogStore::open(dir.path(), config()).unwrap();
    let mut segments = 0;
    // About 300 entries fill a segment: the run crosses zero-ahead pieces,
    // restarts twice mid-segment (after which nothing past the end counts
    // as written) and rolls into a second and a third segment.
    for index in 1..=700 {
        let e = entry(index, 10 << 10);
        store.append(std::slice::from_ref(&e));
        written.push(e);
        persist(&mut store);
        let (file, end) = active(&store);
        assert_eq!(file.metadata().unwrap().len(), SEGMENT_BYTES, "at {index}");
        // A new segment's first batch writes zeros ahead of itself. Seen
        // only in a file nothing has read past its records yet: the page
        // cache counts what was read as data, holes or not (recovery reads
        // whole segments).
        let segments_now = segment_files(dir.path()).len();
        if holes_visible && segments_now > segments {
            let hole = rustix::fs::seek(&file, SeekFrom::Hole(end)).unwrap();
            assert!(
                hole >= end + ZERO_AHEAD_BYTES,
                "written only to {hole} past a batch ending at {end} (entry {index})"
            );
        }
        segments = segments_now;
        if index == 150 || index == 451 {
            drop(store);
            store = FileLogStore::open(dir.path(), config()).unwrap();
            assert_eq!(read_all(&store), written, "after a restart at {index}");
        }
    }
    assert_eq!(segments, 3);
    assert_eq!(read_all(&store), written);
    let (file, end) = active(&store);
    let mut tail = vec![1u8; (SEGMENT_BYTES - end) as usize];
    file.read_exact_at(&mut tail, end).unwrap();
    assert!(tail.iter().all(|&b| b == 0), "not zeros past {end}");
    drop(store);
    let store = FileLogStore::open(dir.path(), config()).unwrap();
    assert_eq!(read_all(&store), written);
}
