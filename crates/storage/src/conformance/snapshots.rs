//! The contract of [`SnapshotStore`], as executable checks any
//! implementation can run: Keel's file and memory stores run them, and so
//! can yours.
//!
//! One line in a test runs every check: [`check`]`(create,
//! crash_and_recover)`, with a function that makes an empty store and one
//! that does to a store what a power loss and restart would (for a store
//! on disk: drop it and open it again). A crash runs no destructor: the
//! cases leak the writers and staged snapshots it interrupts, and the
//! model check drops them only after the recovery, which they must not
//! disturb. For per-case state (a temporary directory each)
//! implement [`Harness`] and call [`run_all`] or [`cases`]; feed
//! [`check_against_model`] random [`Op`] sequences (the crate's own tests
//! generate them with proptest). Every check panics with a message naming
//! what differed.
//!
//! ```
//! use keel_storage::{MemSnapshotStore, conformance::snapshots};
//!
//! // Clones share their snapshots, so a "restart" is the same store.
//! snapshots::check(MemSnapshotStore::new, |store| store);
//! ```
//!
//! Each check is named after the guarantee of [`SnapshotStore`] it holds a
//! store to.

use keel_raft::{LogIndex, Membership, NodeId, SnapshotMeta, Term};

use super::Closures;
use crate::error::StorageError;
use crate::snapshot::{
    SnapshotInfo, SnapshotReader, SnapshotStore, SnapshotWriter, StagedSnapshot,
};

/// Creates snapshot stores and crashes them.
pub trait Harness {
    /// The store under test.
    type Store: SnapshotStore;
    /// A new, empty store.
    fn create(&mut self) -> Self::Store;
    /// Crashes `store` and returns it as a restart would find it: every
    /// published snapshot, and nothing else.
    fn crash_and_recover(&mut self, store: Self::Store) -> Self::Store;
}

/// One named check of the suite.
pub type Case<H> = (&'static str, fn(&mut H));

/// Every named check, for callers that want to run them one by one.
pub fn cases<H: Harness>() -> Vec<Case<H>> {
    vec![
        ("new_store_is_empty", new_store_is_empty),
        (
            "snapshot_written_in_chunks_reads_back_identically",
            snapshot_written_in_chunks_reads_back_identically,
        ),
        (
            "an_empty_snapshot_is_published_and_read",
            an_empty_snapshot_is_published_and_read,
        ),
        (
            "chunk_at_a_wrong_offset_is_refused_and_the_writer_resumes",
            chunk_at_a_wrong_offset_is_refused_and_the_writer_resumes,
        ),
        (
            "checksum_mismatch_is_refused_and_nothing_is_published",
            checksum_mismatch_is_refused_and_nothing_is_published,
        ),
        (
            "staged_snapshot_is_invisible_until_published",
            staged_snapshot_is_invisible_until_published,
        ),
        (
            "dropped_writers_and_staged_snapshots_leave_nothing",
            dropped_writers_and_staged_snapshots_leave_nothing,
        ),
        (
            "a_crash_keeps_what_was_published_and_nothing_else",
            a_crash_keeps_what_was_published_and_nothing_else,
        ),
        (
            "writers_of_the_same_snapshot_do_not_mix",
            writers_of_the_same_snapshot_do_not_mix,
        ),
        (
            "list_is_ordered_and_nothing_is_removed_unasked",
            list_is_ordered_and_nothing_is_removed_unasked,
        ),
        (
            "prune_keeps_the_newest_and_open_readers_keep_their_data",
            prune_keeps_the_newest_and_open_readers_keep_their_data,
        ),
    ]
}

/// Runs every check, each on a fresh harness from `make`.
pub fn run_all<H: Harness>(mut make: impl FnMut() -> H) {
    for (name, case) in cases::<H>() {
        eprintln!("snapshot store conformance: {name}");
        case(&mut make());
    }
}

/// Runs every check against stores made by `create`, crashing them with
/// `crash_and_recover`, which must return the store as a restart after a
/// power loss would find it. Panics, naming the check and what differed,
/// if the store breaks the contract.
pub fn check<S, C, R>(create: C, crash_and_recover: R)
where
    S: SnapshotStore,
    C: FnMut() -> S,
    R: FnMut(S) -> S,
{
    let mut harness = Closures {
        create,
        crash_and_recover,
    };
    for (name, case) in cases::<Closures<C, R>>() {
        eprintln!("snapshot store conformance: {name}");
        case(&mut harness);
    }
}

/// The [`Harness`] of [`check`]: its two functions, as the log suite's.
impl<S, C, R> Harness for Closures<C, R>
where
    S: SnapshotStore,
    C: FnMut() -> S,
    R: FnMut(S) -> S,
{
    type Store = S;

    fn create(&mut self) -> S {
        (self.create)()
    }

    fn crash_and_recover(&mut self, store: S) -> S {
        (self.crash_and_recover)(store)
    }
}

/// A snapshot description at `index` and `term`, with a configuration of
/// voters, a learner and addresses, so that a store that loses any part
/// of the membership shows.
pub fn meta(index: u64, term: u64) -> SnapshotMeta {
    let addresses = [
        (1, "10.0.0.1:2380"),
        (3, "node-3.example:2380"),
        (7, "[::1]:7"),
    ]
    .into_iter()
    .map(|(id, addr)| (NodeId(id), addr.to_owned()))
    .collect();
    let membership = Membership::new([NodeId(1), NodeId(2), NodeId(3)], [NodeId(7)])
        .and_then(|m| m.with_addresses(addresses))
        .expect("three voters, a learner and their addresses are a valid configuration");
    SnapshotMeta {
        index: LogIndex(index),
        term: Term(term),
        membership,
    }
}

/// `len` bytes that differ with `seed` and along their length, so that a
/// chunk written at the wrong place, or another snapshot's data, shows.
pub fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|k| (k as u8).wrapping_mul(31).wrapping_add(seed) ^ ((k >> 8) as u8))
        .collect()
}

/// Writes `bytes` in pieces of `chunk_bytes` and publishes them,
/// announcing their checksum as a sender would.
pub fn publish<S: SnapshotStore + ?Sized>(
    store: &S,
    meta: SnapshotMeta,
    bytes: &[u8],
    chunk_bytes: usize,
) -> SnapshotInfo {
    let writer = write(store, meta, bytes, chunk_bytes);
    writer
        .finish(Some(crc32c::crc32c(bytes)))
        .expect("a snapshot written in order with its own checksum publishes")
}

/// Begins a snapshot and writes `bytes` in pieces of `chunk_bytes`.
pub fn write<S: SnapshotStore + ?Sized>(
    store: &S,
    meta: SnapshotMeta,
    bytes: &[u8],
    chunk_bytes: usize,
) -> Box<dyn SnapshotWriter> {
    let mut writer = store.begin(meta).expect("begin a snapshot");
    for piece in bytes.chunks(chunk_bytes.max(1)) {
        let offset = writer.next_offset();
        writer
            .write_chunk(offset, piece)
            .expect("a chunk at the next offset is taken");
    }
    assert_eq!(writer.next_offset(), bytes.len() as u64);
    writer
}

/// The whole data of the published snapshot at `index`, read in pieces of
/// `chunk_bytes`, after checking it against its checksum.
pub fn read_back<S: SnapshotStore + ?Sized>(store: &S, index: u64, chunk_bytes: usize) -> Vec<u8> {
    let reader = store
        .open_reader(LogIndex(index))
        .unwrap_or_else(|e| panic!("the snapshot at {index} opens: {e}"));
    read_all(reader.as_ref(), chunk_bytes)
}

/// Everything `reader` holds, read in pieces of `chunk_bytes`, checked
/// against its checksum; a short piece must be the last.
pub fn read_all(reader: &dyn SnapshotReader, chunk_bytes: usize) -> Vec<u8> {
    reader.verify().expect("the data matches its checksum");
    let total = reader.info().data_bytes;
    let mut bytes = Vec::new();
    // Bounded: each round reads a piece or stops, and the data is finite.
    for _ in 0..=total / chunk_bytes.max(1) as u64 + 1 {
        let chunk = reader
            .read_chunk(bytes.len() as u64, chunk_bytes)
            .expect("a published snapshot reads");
        assert!(chunk.len() <= chunk_bytes, "a chunk exceeds max_bytes");
        bytes.extend_from_slice(&chunk);
        if chunk.len() < chunk_bytes {
            break;
        }
    }
    assert_eq!(
        bytes.len() as u64,
        total,
        "the reader holds as many bytes as its info says"
    );
    bytes
}

/// The indexes of the published snapshots, in the order listed.
pub fn listed<S: SnapshotStore + ?Sized>(store: &S) -> Vec<u64> {
    store
        .list()
        .expect("list the snapshots")
        .into_iter()
        .map(|info| info.meta.index.0)
        .collect()
}

/// What a crash does to objects in flight: no destructor runs.
fn lost_in_a_crash<T>(value: T) {
    std::mem::forget(value);
}

fn assert_not_found<S: SnapshotStore + ?Sized>(store: &S, index: u64) {
    match store.open_reader(LogIndex(index)) {
        Err(StorageError::SnapshotNotFound { index: missing }) => {
            assert_eq!(missing, LogIndex(index));
        }
        Err(e) => panic!("opening the absent snapshot {index}: expected SnapshotNotFound, got {e}"),
        Ok(reader) => panic!("the snapshot at {index} is not published, yet opened: {reader:?}"),
    }
}

/// A new store lists nothing and opens nothing.
pub fn new_store_is_empty<H: Harness>(h: &mut H) {
    let store = h.create();
    assert!(store.list().unwrap().is_empty());
    assert_eq!(store.latest().unwrap(), None);
    assert_not_found(&store, 0);
    assert_not_found(&store, 1);
}

/// Chunks of any size read back as written, with the meta, size and
/// checksum the snapshot was published with.
pub fn snapshot_written_in_chunks_reads_back_identically<H: Harness>(h: &mut H) {
    let store = h.create();
    let bytes = data(100_000, 1);
    let info = publish(&store, meta(50, 3), &bytes, 7_000);
    let expected = SnapshotInfo {
        meta: meta(50, 3),
        data_bytes: 100_000,
        checksum: crc32c::crc32c(&bytes),
    };
    assert_eq!(info, expected, "publish returns what it published");
    assert_eq!(store.latest().unwrap(), Some(expected.clone()));
    assert_eq!(store.list().unwrap(), vec![expected.clone()]);

    let reader = store.open_reader(LogIndex(50)).unwrap();
    assert_eq!(reader.info(), &expected);
    assert_eq!(read_all(reader.as_ref(), 4096), bytes);
    // Reads at any offset, as a resumed transfer makes them.
    assert_eq!(reader.read_chunk(99_990, 100).unwrap(), bytes[99_990..]);
    assert_eq!(
        reader.read_chunk(12_345, 10).unwrap(),
        bytes[12_345..12_355]
    );
    assert!(reader.read_chunk(100_000, 10).unwrap().is_empty());
    assert!(reader.read_chunk(200_000, 10).unwrap().is_empty());
    assert_not_found(&store, 49);
}

/// A snapshot without data (a new cluster's first configuration, at index
/// 0) is a snapshot like any other.
pub fn an_empty_snapshot_is_published_and_read<H: Harness>(h: &mut H) {
    let store = h.create();
    let writer = store.begin(meta(0, 0)).unwrap();
    assert_eq!(writer.meta(), &meta(0, 0));
    assert_eq!(writer.next_offset(), 0);
    let info = writer.finish(None).unwrap();
    assert_eq!((info.data_bytes, info.checksum), (0, 0));
    assert_eq!(store.latest().unwrap(), Some(info));
    assert_eq!(read_back(&store, 0, 64), Vec::<u8>::new());
    let store = h.crash_and_recover(store);
    assert_eq!(store.latest().unwrap().map(|i| i.meta), Some(meta(0, 0)));
}

/// A duplicate or a skipped chunk is refused with the offset to resume
/// from, and the writer goes on from there (a leader resumes a transfer
/// the network interrupted).
pub fn chunk_at_a_wrong_offset_is_refused_and_the_writer_resumes<H: Harness>(h: &mut H) {
    let store = h.create();
    let bytes = data(10_000, 2);
    let mut writer = store.begin(meta(9, 1)).unwrap();
    writer.write_chunk(0, &bytes[..4000]).unwrap();
    for wrong in [0, 3999, 4001, 8000] {
        match writer.write_chunk(wrong, &bytes[4000..6000]) {
            Err(StorageError::SnapshotOffset { expected, got }) => {
                assert_eq!((expected, got), (4000, wrong));
            }
            other => {
                panic!("a chunk at {wrong} instead of 4000: expected SnapshotOffset, got {other:?}")
            }
        }
        assert_eq!(
            writer.next_offset(),
            4000,
            "a refused chunk changes nothing"
        );
    }
    writer.write_chunk(4000, &bytes[4000..]).unwrap();
    let info = writer.finish(Some(crc32c::crc32c(&bytes))).unwrap();
    assert_eq!(info.data_bytes, 10_000);
    assert_eq!(read_back(&store, 9, 3000), bytes);
}

/// Data whose checksum is not the sender's is refused, naming both, and
/// nothing of it is published; the snapshot can then be sent again.
pub fn checksum_mismatch_is_refused_and_nothing_is_published<H: Harness>(h: &mut H) {
    let store = h.create();
    let old = publish(&store, meta(5, 1), &data(1000, 3), 1000);
    let bytes = data(1000, 4);
    let wrong = crc32c::crc32c(&bytes) ^ 1;
    let writer = write(&store, meta(10, 2), &bytes, 300);
    match writer.stage(Some(wrong)) {
        Err(StorageError::SnapshotChecksum { expected, actual }) => {
            assert_eq!((expected, actual), (wrong, crc32c::crc32c(&bytes)));
        }
        other => panic!("a wrong checksum: expected SnapshotChecksum, got {other:?}"),
    }
    assert_eq!(store.list().unwrap(), vec![old]);
    assert_not_found(&store, 10);
    publish(&store, meta(10, 2), &bytes, 300);
    assert_eq!(read_back(&store, 10, 512), bytes);
}

/// A staged snapshot is whole and verified but unseen until published.
pub fn staged_snapshot_is_invisible_until_published<H: Harness>(h: &mut H) {
    let store = h.create();
    let old = publish(&store, meta(10, 1), &data(100, 1), 64);
    let bytes = data(2000, 2);
    let staged = write(&store, meta(20, 2), &bytes, 700)
        .stage(Some(crc32c::crc32c(&bytes)))
        .unwrap();
    let expected = SnapshotInfo {
        meta: meta(20, 2),
        data_bytes: 2000,
        checksum: crc32c::crc32c(&bytes),
    };
    assert_eq!(staged.info(), &expected);
    assert_eq!(store.latest().unwrap(), Some(old.clone()));
    assert_eq!(store.list().unwrap(), vec![old.clone()]);
    assert_not_found(&store, 20);

    assert_eq!(staged.publish().unwrap(), expected);
    assert_eq!(store.latest().unwrap(), Some(expected.clone()));
    assert_eq!(store.list().unwrap(), vec![old, expected]);
    assert_eq!(read_back(&store, 20, 999), bytes);
}

/// A writer or a staged snapshot dropped (a transfer abandoned, a
/// snapshot the core refused) leaves nothing; the same snapshot written
/// again afterwards holds only its new data.
pub fn dropped_writers_and_staged_snapshots_leave_nothing<H: Harness>(h: &mut H) {
    let store = h.create();
    let old = publish(&store, meta(10, 1), &data(100, 1), 100);
    drop(write(&store, meta(20, 2), &data(500, 2), 100));
    let refused = data(500, 3);
    let staged = write(&store, meta(20, 2), &refused, 100)
        .stage(Some(crc32c::crc32c(&refused)))
        .unwrap();
    drop(staged);
    assert_eq!(store.list().unwrap(), vec![old.clone()]);
    assert_not_found(&store, 20);

    let bytes = data(300, 4);
    publish(&store, meta(20, 2), &bytes, 128);
    assert_eq!(read_back(&store, 20, 1000), bytes);
    let store = h.crash_and_recover(store);
    assert_eq!(listed(&store), vec![10, 20]);
    assert_eq!(read_back(&store, 20, 1000), bytes);
}

/// A crash keeps every published snapshot whole, and loses what was being
/// written or staged: publishing is the moment a snapshot becomes durable
/// and visible, all at once.
pub fn a_crash_keeps_what_was_published_and_nothing_else<H: Harness>(h: &mut H) {
    let store = h.create();
    let published = data(50_000, 5);
    publish(&store, meta(10, 1), &published, 4096);
    let halfway = data(20_000, 6);
    let writer = write(&store, meta(20, 2), &halfway[..10_000], 4096);
    let staged = write(&store, meta(30, 2), &halfway, 4096)
        .stage(Some(crc32c::crc32c(&halfway)))
        .unwrap();
    lost_in_a_crash(writer);
    lost_in_a_crash(staged);

    let store = h.crash_and_recover(store);
    assert_eq!(listed(&store), vec![10]);
    assert_eq!(store.latest().unwrap().map(|i| i.meta), Some(meta(10, 1)));
    assert_eq!(read_back(&store, 10, 4096), published);
    assert_not_found(&store, 20);
    assert_not_found(&store, 30);

    // What the crash interrupted can be written again, from scratch.
    publish(&store, meta(30, 2), &halfway, 5000);
    let store = h.crash_and_recover(store);
    assert_eq!(listed(&store), vec![10, 30]);
    assert_eq!(read_back(&store, 30, 4096), halfway);
}

/// Two writers of one snapshot at once (a node's own and a leader's, at
/// the same index) keep their data apart; the later publish replaces the
/// earlier, whose open readers keep theirs.
pub fn writers_of_the_same_snapshot_do_not_mix<H: Harness>(h: &mut H) {
    let store = h.create();
    let (first, second) = (data(3000, 7), data(3000, 8));
    let mut a = store.begin(meta(40, 3)).unwrap();
    let mut b = store.begin(meta(40, 3)).unwrap();
    for (at, (x, y)) in first.chunks(1000).zip(second.chunks(1000)).enumerate() {
        a.write_chunk(at as u64 * 1000, x).unwrap();
        b.write_chunk(at as u64 * 1000, y).unwrap();
    }
    let a = a.stage(Some(crc32c::crc32c(&first))).unwrap();
    let b = b.stage(Some(crc32c::crc32c(&second))).unwrap();
    a.publish().unwrap();
    assert_eq!(read_back(&store, 40, 1000), first);
    let reader = store.open_reader(LogIndex(40)).unwrap();
    b.publish().unwrap();
    assert_eq!(read_back(&store, 40, 1000), second);
    assert_eq!(listed(&store), vec![40]);
    assert_eq!(read_all(reader.as_ref(), 1000), first);

    // A third, abandoned, takes nothing with it.
    let c = write(&store, meta(40, 3), &data(3000, 9), 1000);
    drop(c);
    assert_eq!(read_back(&store, 40, 1000), second);
}

/// The list is ordered by index, then term, whatever the order of
/// publishing; the latest is its last; and publishing removes nothing.
pub fn list_is_ordered_and_nothing_is_removed_unasked<H: Harness>(h: &mut H) {
    let store = h.create();
    for (index, term) in [(30, 2), (10, 1), (50, 3), (20, 1), (40, 2)] {
        publish(&store, meta(index, term), &data(64, index as u8), 64);
    }
    assert_eq!(listed(&store), vec![10, 20, 30, 40, 50]);
    assert_eq!(store.latest().unwrap().map(|i| i.meta), Some(meta(50, 3)));
    let store = h.crash_and_recover(store);
    assert_eq!(listed(&store), vec![10, 20, 30, 40, 50]);
    for index in [10, 20, 30, 40, 50] {
        assert_eq!(read_back(&store, index, 64), data(64, index as u8));
    }
}

/// Pruning keeps the newest `keep` (never fewer than one), durably; a
/// reader opened before keeps reading its snapshot whole.
pub fn prune_keeps_the_newest_and_open_readers_keep_their_data<H: Harness>(h: &mut H) {
    let store = h.create();
    let oldest = data(5000, 10);
    publish(&store, meta(10, 1), &oldest, 1000);
    let reader = store.open_reader(LogIndex(10)).unwrap();
    for index in [20, 30, 40] {
        publish(&store, meta(index, 2), &data(500, index as u8), 100);
    }
    store.prune(2).unwrap();
    assert_eq!(listed(&store), vec![30, 40]);
    assert_not_found(&store, 10);
    assert_eq!(read_all(reader.as_ref(), 1024), oldest);

    store.prune(5).unwrap();
    assert_eq!(
        listed(&store),
        vec![30, 40],
        "keep past the count removes nothing"
    );
    store.prune(0).unwrap();
    assert_eq!(
        listed(&store),
        vec![40],
        "the newest snapshot is never pruned"
    );
    let store = h.crash_and_recover(store);
    assert_eq!(listed(&store), vec![40]);
    assert_eq!(read_back(&store, 40, 100), data(500, 40));
    assert_eq!(read_all(reader.as_ref(), 700), oldest);
}

/// One step of a random workload against a snapshot store; each names its
/// writer, staged snapshot or reader by a number taken modulo how many
/// there are, so every sequence is valid.
#[derive(Clone, Debug)]
pub enum Op {
    /// Begin a snapshot at `index` and `term` (small numbers, so that
    /// snapshots and writers collide).
    Begin {
        /// Its index.
        index: u64,
        /// Its term.
        term: u64,
    },
    /// Write `len` bytes of pattern `seed` at the writer's next offset.
    Write {
        /// Which writer.
        writer: usize,
        /// How many bytes.
        len: usize,
        /// What they look like.
        seed: u8,
    },
    /// Write a chunk `skew` bytes off the writer's next offset (0 is taken
    /// as 1): refused, and nothing changes.
    WriteAtWrongOffset {
        /// Which writer.
        writer: usize,
        /// How far off, either way.
        skew: i64,
    },
    /// Stage the writer's snapshot with its checksum, or a wrong one.
    Stage {
        /// Which writer.
        writer: usize,
        /// Announce a wrong checksum: refused, and the writer is gone.
        wrong_checksum: bool,
    },
    /// Publish a staged snapshot.
    Publish {
        /// Which staged snapshot.
        staged: usize,
    },
    /// Drop a writer without staging it.
    DropWriter {
        /// Which writer.
        writer: usize,
    },
    /// Drop a staged snapshot without publishing it.
    DropStaged {
        /// Which staged snapshot.
        staged: usize,
    },
    /// Open a reader at `index`: one opens if and only if the model holds
    /// a snapshot there.
    OpenReader {
        /// Its index.
        index: u64,
    },
    /// Prune to the newest `keep`.
    Prune {
        /// How many to keep.
        keep: usize,
    },
    /// Crash and recover: writers, staged snapshots and readers are lost.
    Crash,
}

/// What the model holds: the published snapshots' data by index and term.
type ModelPublished = std::collections::BTreeMap<(u64, u64), Vec<u8>>;

/// A staged snapshot of the store, its index and term, and its data.
type Staged = (Box<dyn StagedSnapshot>, (u64, u64), Vec<u8>);

/// Runs `ops` against a store from `h` and a model of it (published
/// snapshots and their data, what each writer and staged snapshot holds,
/// what each reader must read), checking after every step that the store
/// lists what the model holds and that every open reader still reads its
/// snapshot whole. Panics, naming the step, on the first difference.
pub fn check_against_model<H: Harness>(h: &mut H, ops: &[Op]) {
    let mut store = h.create();
    let mut published = ModelPublished::new();
    let mut writers: Vec<(Box<dyn SnapshotWriter>, Vec<u8>)> = Vec::new();
    let mut staged: Vec<Staged> = Vec::new();
    let mut readers: Vec<(Box<dyn SnapshotReader>, Vec<u8>)> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        let at = format!("step {step}, {op:?}");
        match op.clone() {
            Op::Begin { index, term } => {
                let writer = store.begin(meta(index, term)).expect(&at);
                assert_eq!(writer.next_offset(), 0, "{at}");
                writers.push((writer, Vec::new()));
            }
            Op::Write { writer, len, seed } => {
                if let Some((w, written)) = pick(&mut writers, writer) {
                    let bytes = data(len, seed);
                    let offset = w.next_offset();
                    w.write_chunk(offset, &bytes).expect(&at);
                    written.extend_from_slice(&bytes);
                    assert_eq!(w.next_offset(), written.len() as u64, "{at}");
                }
            }
            Op::WriteAtWrongOffset { writer, skew } => {
                if let Some((w, written)) = pick(&mut writers, writer) {
                    let next = written.len() as u64;
                    let skew = if skew == 0 { 1 } else { skew };
                    let wrong = next.saturating_add_signed(skew);
                    let wrong = if wrong == next { next + 1 } else { wrong };
                    match w.write_chunk(wrong, b"refused") {
                        Err(StorageError::SnapshotOffset { expected, got }) => {
                            assert_eq!((expected, got), (next, wrong), "{at}");
                        }
                        other => panic!("{at}: expected SnapshotOffset, got {other:?}"),
                    }
                    assert_eq!(w.next_offset(), next, "{at}");
                }
            }
            Op::Stage {
                writer,
                wrong_checksum,
            } => {
                if !writers.is_empty() {
                    let (w, written) = writers.remove(writer % writers.len());
                    let key = (w.meta().index.0, w.meta().term.0);
                    let crc = crc32c::crc32c(&written);
                    if wrong_checksum {
                        match w.stage(Some(crc ^ 1)) {
                            Err(StorageError::SnapshotChecksum { expected, actual }) => {
                                assert_eq!((expected, actual), (crc ^ 1, crc), "{at}");
                            }
                            other => panic!("{at}: expected SnapshotChecksum, got {other:?}"),
                        }
                    } else {
                        let s = w.stage(Some(crc)).expect(&at);
                        assert_eq!(s.info().data_bytes, written.len() as u64, "{at}");
                        assert_eq!(s.info().checksum, crc, "{at}");
                        staged.push((s, key, written));
                    }
                }
            }
            Op::Publish { staged: which } => {
                if !staged.is_empty() {
                    let (s, key, written) = staged.remove(which % staged.len());
                    s.publish().expect(&at);
                    published.insert(key, written);
                }
            }
            Op::DropWriter { writer } => {
                if !writers.is_empty() {
                    writers.remove(writer % writers.len());
                }
            }
            Op::DropStaged { staged: which } => {
                if !staged.is_empty() {
                    staged.remove(which % staged.len());
                }
            }
            Op::OpenReader { index } => {
                let newest = published
                    .range((index, 0)..=(index, u64::MAX))
                    .next_back()
                    .map(|(_, data)| data.clone());
                match (store.open_reader(LogIndex(index)), newest) {
                    (Ok(reader), Some(expected)) => readers.push((reader, expected)),
                    (Err(StorageError::SnapshotNotFound { .. }), None) => {}
                    (got, expected) => panic!(
                        "{at}: opening {index} gave {got:?}, but the model holds {:?} bytes",
                        expected.map(|e| e.len())
                    ),
                }
            }
            Op::Prune { keep } => {
                store.prune(keep).expect(&at);
                while published.len() > keep.max(1) {
                    published.pop_first();
                }
            }
            Op::Crash => {
                let lost = (
                    std::mem::take(&mut writers),
                    std::mem::take(&mut staged),
                    std::mem::take(&mut readers),
                );
                store = h.crash_and_recover(store);
                // What the crashed process held is gone; dropping it now
                // must not touch the recovered store.
                drop(lost);
            }
        }
        assert_matches_model(&store, &published, &at);
        for (reader, expected) in &readers {
            assert_eq!(&read_all(reader.as_ref(), 777), expected, "{at}: a reader");
        }
    }
}

/// The entry `n` names among `items`, if there are any.
fn pick<T>(items: &mut [T], n: usize) -> Option<&mut T> {
    let len = items.len();
    items.get_mut(n.checked_rem(len)?)
}

fn assert_matches_model<S: SnapshotStore>(store: &S, published: &ModelPublished, at: &str) {
    let listed: Vec<SnapshotInfo> = store.list().expect(at);
    let expected: Vec<SnapshotInfo> = published
        .iter()
        .map(|(&(index, term), bytes)| SnapshotInfo {
            meta: meta(index, term),
            data_bytes: bytes.len() as u64,
            checksum: crc32c::crc32c(bytes),
        })
        .collect();
    assert_eq!(listed, expected, "{at}: the list");
    assert_eq!(store.latest().expect(at), expected.last().cloned(), "{at}");
}
