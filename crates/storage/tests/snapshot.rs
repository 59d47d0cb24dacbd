//! The file snapshot store: chunked writes and reads, verification, atomic
//! publication, retention and crash leftovers, seen on disk. (The contract
//! every snapshot store keeps is checked by `snapshot_conformance.rs`.)

use std::fs;
use std::path::Path;

use keel_raft::{LogIndex, Membership, NodeId, SnapshotMeta, Term};
use keel_storage::{Corruption, FileSnapshotStore, SnapshotStore, StorageError};

fn meta(index: u64, term: u64) -> SnapshotMeta {
    let membership = Membership::from_parts(
        [NodeId(1), NodeId(2), NodeId(3)].into(),
        [].into(),
        [NodeId(7)].into(),
    )
    .unwrap();
    SnapshotMeta {
        index: LogIndex(index),
        term: Term(term),
        membership,
    }
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|k| (k as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Writes and publishes a snapshot from `bytes` in `chunk`-sized pieces.
fn publish(store: &FileSnapshotStore, m: SnapshotMeta, bytes: &[u8], chunk: usize) {
    let mut writer = store.begin(m).unwrap();
    for piece in bytes.chunks(chunk) {
        writer.write_chunk(writer.next_offset(), piece).unwrap();
    }
    writer.finish(Some(crc32c::crc32c(bytes))).unwrap();
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "LOCK")
        .collect();
    names.sort();
    names
}

#[test]
fn snapshot_written_in_chunks_streams_back_identically() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileSnapshotStore::open(dir.path()).unwrap();
    assert_eq!(store.latest().unwrap(), None);
    let bytes = data(100_000, 1);
    publish(&store, meta(50, 3), &bytes, 7_000);

    let latest = store.latest().unwrap().unwrap();
    assert_eq!((latest.meta, latest.data_bytes), (meta(50, 3), 100_000));
    assert_eq!(latest.checksum, crc32c::crc32c(&bytes));
    let reader = store.open_reader(LogIndex(50)).unwrap();
    reader.verify().unwrap();
    let mut streamed = Vec::new();
    loop {
        let chunk = reader.read_chunk(streamed.len() as u64, 4096).unwrap();
        if chunk.is_empty() {
            break;
        }
        streamed.extend_from_slice(&chunk);
    }
    assert_eq!(streamed, bytes);
    assert!(matches!(
        store.open_reader(LogIndex(49)),
        Err(StorageError::SnapshotNotFound {
            index: LogIndex(49)
        })
    ));
}

#[test]
fn chunk_at_a_wrong_offset_is_refused_and_the_install_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileSnapshotStore::open(dir.path()).unwrap();
    let bytes = data(10_000, 2);
    let mut writer = store.begin(meta(9, 1)).unwrap();
    writer.write_chunk(0, &bytes[..4000]).unwrap();
    // A duplicate and a skipped chunk are both refused, naming the offset to resume from.
    for wrong in [0, 8000] {
        match writer.write_chunk(wrong, &bytes[4000..6000]) {
            Err(StorageError::SnapshotOffset {
                expected: 4000,
                got,
            }) => assert_eq!(got, wrong),
            other => panic!("expected an offset error, got {other:?}"),
        }
    }
    writer.write_chunk(4000, &bytes[4000..]).unwrap();
    let info = writer.finish(Some(crc32c::crc32c(&bytes))).unwrap();
    assert_eq!(info.data_bytes, 10_000);
    store.open_reader(LogIndex(9)).unwrap().verify().unwrap();
}

#[test]
fn checksum_mismatch_discards_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileSnapshotStore::open(dir.path()).unwrap();
    publish(&store, meta(5, 1), &data(1000, 3), 1000);
    let mut writer = store.begin(meta(10, 2)).unwrap();
    writer.write_chunk(0, &data(1000, 4)).unwrap();
    assert!(matches!(
        writer.finish(Some(0xDEAD_BEEF)),
        Err(StorageError::SnapshotChecksum {
            expected: 0xDEAD_BEEF,
            ..
        })
    ));
    assert_eq!(store.latest().unwrap().unwrap().meta.index, LogIndex(5));
    assert_eq!(names(dir.path()).len(), 1, "{:?}", names(dir.path()));
}

#[test]
fn only_the_newest_snapshots_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileSnapshotStore::open(dir.path()).unwrap();
    // A reader opened before pruning still streams its snapshot afterwards.
    publish(&store, meta(10, 1), &data(500, 10), 100);
    let old = store.open_reader(LogIndex(10)).unwrap();
    for (index, seed) in [(20, 20), (30, 30), (40, 40)] {
        publish(&store, meta(index, 2), &data(500, seed), 100);
    }
    store.prune(2).unwrap();
    assert_eq!(names(dir.path()).len(), 2, "{:?}", names(dir.path()));
    let kept: Vec<_> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|i| i.meta.index)
        .collect();
    assert_eq!(kept, vec![LogIndex(30), LogIndex(40)]);
    old.verify().unwrap();
    assert_eq!(old.read_chunk(0, 500).unwrap(), data(500, 10));
}

#[test]
fn partial_snapshots_never_survive_an_abort_or_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileSnapshotStore::open(dir.path()).unwrap();
    let mut writer = store.begin(meta(7, 1)).unwrap();
    writer.write_chunk(0, b"half").unwrap();
    assert_eq!(
        names(dir.path()).len(),
        1,
        "the partial file exists while writing"
    );
    assert_eq!(
        store.latest().unwrap(),
        None,
        "a partial snapshot is not published"
    );
    drop(writer);
    assert!(names(dir.path()).is_empty());

    // A crash leaves a partial file behind; the next open removes it.
    let leftover = dir
        .path()
        .join("00000000000000000007-00000000000000000001.snap.partial");
    fs::write(&leftover, b"leftover").unwrap();
    drop(store);
    let store = FileSnapshotStore::open(dir.path()).unwrap();
    assert!(!leftover.exists());
    assert_eq!(store.latest().unwrap(), None);
}

#[test]
fn damaged_snapshot_header_and_data_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileSnapshotStore::open(dir.path()).unwrap();
    publish(&store, meta(3, 1), &data(2000, 5), 500);
    drop(store);
    let path = dir.path().join(&names(dir.path())[0]);
    let original = fs::read(&path).unwrap();

    let mut damaged = original.clone();
    damaged[1500] ^= 1; // in the data
    fs::write(&path, &damaged).unwrap();
    let store = FileSnapshotStore::open(dir.path()).unwrap();
    match store.open_reader(LogIndex(3)).unwrap().verify() {
        Err(StorageError::Corrupt {
            kind: Corruption::DataChecksum { .. },
            ..
        }) => {}
        other => panic!("expected a data checksum error, got {other:?}"),
    }
    drop(store);

    let mut damaged = original.clone();
    damaged[20] ^= 1; // in the header
    fs::write(&path, &damaged).unwrap();
    match FileSnapshotStore::open(dir.path()) {
        Err(StorageError::Corrupt {
            file,
            kind: Corruption::BadFileHeader,
            ..
        }) => assert_eq!(file, path),
        other => panic!("expected a header error, got {other:?}"),
    }

    fs::write(&path, &original[..original.len() - 1]).unwrap();
    assert!(matches!(
        FileSnapshotStore::open(dir.path()),
        Err(StorageError::Corrupt {
            kind: Corruption::Truncated { .. },
            ..
        })
    ));
}

#[test]
fn snapshot_directory_is_locked_until_the_store_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileSnapshotStore::open(dir.path()).unwrap();
    assert!(matches!(
        FileSnapshotStore::open(dir.path()),
        Err(StorageError::Locked { .. })
    ));
    drop(store);
    FileSnapshotStore::open(dir.path()).unwrap();
}

/// A leader's snapshot waits, staged, for the core's decision: unseen by
/// readers until published, its file gone if dropped, and never a reason
/// to prune the snapshot the log is compacted to.
#[test]
fn a_staged_snapshot_is_invisible_until_published_and_dropping_discards_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileSnapshotStore::open(dir.path()).unwrap();
    publish(&store, meta(10, 1), &data(100, 1), 64);

    let bytes = data(200, 2);
    let mut writer = store.begin(meta(20, 2)).unwrap();
    writer.write_chunk(0, &bytes).unwrap();
    let staged = writer.stage(Some(crc32c::crc32c(&bytes))).unwrap();
    assert_eq!(staged.info().meta.index, LogIndex(20));
    assert_eq!(store.latest().unwrap().unwrap().meta.index, LogIndex(10));
    assert!(store.open_reader(LogIndex(20)).is_err());

    // Refused by the core: dropped, and the current snapshot stays.
    drop(staged);
    assert_eq!(store.list().unwrap().len(), 1);
    assert_eq!(store.latest().unwrap().unwrap().meta.index, LogIndex(10));
    assert!(names(dir.path()).iter().all(|n| !n.ends_with(".partial")));

    // Accepted: published, and pruned to one it replaces the older one.
    let mut writer = store.begin(meta(20, 2)).unwrap();
    writer.write_chunk(0, &bytes).unwrap();
    let staged = writer.stage(Some(crc32c::crc32c(&bytes))).unwrap();
    let info = staged.publish().unwrap();
    assert_eq!(info.data_bytes, 200);
    assert_eq!(store.latest().unwrap().unwrap().meta.index, LogIndex(20));
    assert_eq!(store.list().unwrap().len(), 2, "publishing prunes nothing");
    store.prune(1).unwrap();
    assert_eq!(store.list().unwrap().len(), 1);
    assert_eq!(names(dir.path()).len(), 1, "{:?}", names(dir.path()));
}
