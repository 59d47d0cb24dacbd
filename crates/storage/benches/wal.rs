//! WAL throughput beside bare `write` + `fdatasync` loops measured in the
//! same run, and recovery speed beside a bare sequential read.
//!
//! `cargo bench -p keel-storage --bench wal`. Environment:
//! * `KEEL_BENCH_DIR`: where to write (default: the system temp directory);
//!   put it on the disk you want to measure.
//! * `KEEL_BENCH_MS`: milliseconds per measurement round (default 150).
//! * `KEEL_BENCH_ROUNDS`: rounds per row (default 15), each running the three
//!   loops in turn; medians reported. Short rounds, many of them, pair each
//!   WAL round with baselines measured within a fraction of a second, which
//!   matters on a shared disk whose speed swings by 10x within seconds.
//! * `KEEL_BENCH_RECOVERY_MB`: size of the log to recover (default 256; set
//!   1024 for the 1 GiB figure).
//!
//! Two baselines, both one `pwrite` + one `fdatasync` per batch:
//! * **same bytes** writes exactly as many bytes per batch as the WAL does
//!   (frame headers and record headers included, measured from the WAL
//!   itself), sequentially into fresh preallocated 64 MiB files, starting a
//!   new file (create, `fallocate`, directory fsync) where the WAL starts a
//!   new segment. The WAL's ratio to it is what the WAL's code costs.
//! * **payload, rewrite** (the baseline of earlier reports) writes only the
//!   entries' payload bytes and wraps around inside one preallocated file.
//!   It writes fewer bytes, and once it wraps it overwrites blocks that
//!   were already written, which costs the filesystem less than a first
//!   write into preallocated space; so it measures the format's byte
//!   overhead and the fresh-space cost together with the code.
//!
//! CPU is this thread's time on a CPU (user and system, from
//! `/proc/thread-self/schedstat`) per batch: the loops issue the same
//! syscalls, so the difference is the WAL's own work.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use keel_raft::{Entry, LogIndex, Payload, Term};
use keel_storage::{FileLogStore, LogConfig, LogStore};

const SEGMENT_BYTES: u64 = 64 << 20;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Nanoseconds this thread has run on a CPU (0 if the kernel does not say).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// One measurement round of one loop.
#[derive(Clone, Copy)]
struct Round {
    batches: u64,
    secs: f64,
    cpu_ns: u64,
}

impl Round {
    fn batches_per_sec(&self) -> f64 {
        self.batches as f64 / self.secs
    }

    fn cpu_us_per_batch(&self) -> f64 {
        self.cpu_ns as f64 / 1e3 / self.batches as f64
    }
}

/// Runs `one_batch` until `budget` is spent; returns batches, time and CPU.
fn measure(budget: Duration, mut one_batch: impl FnMut()) -> Round {
    let cpu = thread_cpu_ns();
    let start = Instant::now();
    let mut batches = 0u64;
    while start.elapsed() < budget {
        one_batch();
        batches += 1;
    }
    Round {
        batches,
        secs: start.elapsed().as_secs_f64(),
        cpu_ns: thread_cpu_ns() - cpu,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A file of `SEGMENT_BYTES` reserved with `fallocate`, as the WAL's segments.
fn preallocated(path: &Path) -> File {
    let file = File::options()
        .create_new(true)
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    rustix::fs::fallocate(
        file.as_fd(),
        rustix::fs::FallocateFlags::empty(),
        0,
        SEGMENT_BYTES,
    )
    .unwrap();
    file
}

/// The "same bytes" baseline: `batch_bytes` per pwrite + fdatasync, appended
/// to fresh preallocated files, a new one (made durable in the directory)
/// whenever the next batch would not fit, as the WAL rolls segments.
fn bare_same_bytes(dir: &Path, batch_bytes: usize, budget: Duration) -> Round {
    let base = dir.join("bare");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir(&base).unwrap();
    let buf = vec![0xA5u8; batch_bytes];
    let mut files = 0u64;
    let mut file = None;
    let mut offset = 0u64;
    let round = measure(budget, || {
        if file.is_none() || offset + batch_bytes as u64 > SEGMENT_BYTES {
            files += 1;
            file = Some(preallocated(&base.join(format!("{files}.dat"))));
            offset = 0;
        }
        let f = file.as_ref().expect("a file is open");
        f.write_all_at(&buf, offset).unwrap();
        f.sync_data().unwrap();
        if offset == 0 {
            File::open(&base).unwrap().sync_all().unwrap();
        }
        offset += batch_bytes as u64;
    });
    drop(file);
    std::fs::remove_dir_all(&base).unwrap();
    round
}

/// The "payload, rewrite" baseline: only the payload bytes, one pwrite +
/// fdatasync per batch, wrapping around inside one preallocated file.
fn bare_rewrite(dir: &Path, payload_bytes: usize, budget: Duration) -> Round {
    let path = dir.join("baseline.dat");
    let _ = std::fs::remove_file(&path);
    let file = preallocated(&path);
    file.sync_all().unwrap();
    let buf = vec![0xA5u8; payload_bytes];
    let mut offset = 0u64;
    let round = measure(budget, || {
        if offset + buf.len() as u64 > SEGMENT_BYTES {
            offset = 0;
        }
        file.write_all_at(&buf, offset).unwrap();
        file.sync_data().unwrap();
        offset += buf.len() as u64;
    });
    drop(file);
    std::fs::remove_file(&path).unwrap();
    round
}

fn make_batch(first: u64, batch: usize, data: &Bytes) -> Vec<Entry> {
    (0..batch as u64)
        .map(|k| Entry {
            term: Term(1),
            index: LogIndex(first + k),
            payload: Payload::Command(data.clone()),
        })
        .collect()
}

/// The WAL: `append(batch)` then `sync()`, one fdatasync per batch.
fn wal_loop(dir: &Path, batch: usize, entry_bytes: usize, budget: Duration) -> Round {
    let wal_dir = dir.join("wal");
    let _ = std::fs::remove_dir_all(&wal_dir);
    let mut log = FileLogStore::open(&wal_dir, LogConfig::default()).unwrap();
    let data = Bytes::from(vec![0xA5u8; entry_bytes]);
    // One batch, renumbered in place, so that the loop measures the WAL
    // rather than the allocation of test entries.
    let mut entries = make_batch(1, batch, &data);
    let round = measure(budget, || {
        let first = log.last_index().0 + 1;
        for (k, e) in entries.iter_mut().enumerate() {
            e.index = LogIndex(first + k as u64);
        }
        log.append(&entries);
        let _proof = log.sync().unwrap();
    });
    drop(log);
    std::fs::remove_dir_all(&wal_dir).unwrap();
    round
}

/// Bytes the WAL writes for one batch after the first of a segment (whose
/// segment header and restated hard state it does not count).
fn wal_batch_bytes(dir: &Path, batch: usize, entry_bytes: usize) -> usize {
    let wal_dir = dir.join("probe");
    let mut log = FileLogStore::open(&wal_dir, LogConfig::default()).unwrap();
    let data = Bytes::from(vec![0xA5u8; entry_bytes]);
    let mut ends = Vec::new();
    for _ in 0..2 {
        log.append(&make_batch(log.last_index().0 + 1, batch, &data));
        let _proof = log.sync().unwrap();
        ends.push(log.durable_end().expect("a batch was written").1);
    }
    drop(log);
    std::fs::remove_dir_all(&wal_dir).unwrap();
    (ends[1] - ends[0]) as usize
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}

/// Asks the kernel to drop the files' (clean) pages, so reads hit the disk.
fn drop_page_cache(files: &[PathBuf]) {
    for path in files {
        let file = File::open(path).unwrap();
        let len = file.metadata().unwrap().len();
        rustix::fs::fadvise(
            file.as_fd(),
            0,
            std::num::NonZeroU64::new(len),
            rustix::fs::Advice::DontNeed,
        )
        .unwrap();
    }
}

fn bare_read(files: &[PathBuf]) -> (u64, Duration) {
    let start = Instant::now();
    let mut buf = Vec::new();
    let mut total = 0;
    for path in files {
        buf.clear();
        File::open(path).unwrap().read_to_end(&mut buf).unwrap();
        total += buf.len() as u64;
    }
    (total, start.elapsed())
}

fn recovery(dir: &Path, log_mb: u64) {
    let wal_dir = dir.join("recovery");
    let _ = std::fs::remove_dir_all(&wal_dir);
    let mut log = FileLogStore::open(&wal_dir, LogConfig::default()).unwrap();
    let data = Bytes::from(vec![0x5Au8; 1024]);
    let entries = log_mb * (1 << 20) / 1024;
    while log.last_index().0 < entries {
        log.append(&make_batch(log.last_index().0 + 1, 256, &data));
        let _proof = log.sync().unwrap();
    }
    drop(log);
    let files = segment_files(&wal_dir);
    println!();
    println!(
        "recovery of a {log_mb} MiB log (1 KiB entries, {} segments of 64 MiB):",
        files.len()
    );
    println!(
        "{:<8} {:>18} {:>18} {:>7}",
        "cache", "bare read MB/s", "recovery MB/s", "ratio"
    );
    for cold in [true, false] {
        // Alternate bare reads and recoveries; report the best of each.
        let (mut bare_best, mut rec_best) = (Duration::MAX, Duration::MAX);
        let mut bytes = 0;
        for _ in 0..2 {
            if cold {
                drop_page_cache(&files);
            }
            let (read, bare) = bare_read(&files);
            bytes = read;
            bare_best = bare_best.min(bare);
            if cold {
                drop_page_cache(&files);
            }
            let start = Instant::now();
            let log = FileLogStore::open(&wal_dir, LogConfig::default()).unwrap();
            rec_best = rec_best.min(start.elapsed());
            assert_eq!(log.last_index().0, entries);
            assert_eq!(log.recovery_report().bytes_read, bytes);
        }
        let bare_mb = bytes as f64 / bare_best.as_secs_f64() / 1e6;
        let rec_mb = bytes as f64 / rec_best.as_secs_f64() / 1e6;
        let label = if cold { "cold" } else { "warm" };
        println!(
            "{label:<8} {bare_mb:>18.0} {rec_mb:>18.0} {:>6.0}%",
            100.0 * rec_mb / bare_mb
        );
    }
    std::fs::remove_dir_all(&wal_dir).unwrap();
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let base = std::env::var_os("KEEL_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = tempfile::tempdir_in(base).unwrap();
    let budget = Duration::from_millis(env_u64("KEEL_BENCH_MS", 150));
    let rounds = env_u64("KEEL_BENCH_ROUNDS", 15).max(1) as usize;
    let log_mb = env_u64("KEEL_BENCH_RECOVERY_MB", 256);

    println!(
        "group commit: one fdatasync per batch, {rounds} alternating rounds of {budget:?}, medians"
    );
    println!(
        "/same and /rewr: medians of each round's WAL throughput over the baseline's in that round"
    );
    println!(
        "{:>5} {:>5} {:>7} | {:>9} {:>7} | {:>9} {:>7} | {:>9} {:>11} {:>7} {:>7} | {:>6} {:>7}",
        "batch",
        "entry",
        "bytes",
        "same b/s",
        "cpu µs",
        "rewr b/s",
        "cpu µs",
        "WAL b/s",
        "entries/s",
        "MB/s",
        "cpu µs",
        "/same",
        "/rewr"
    );
    for entry_bytes in [128usize, 1024] {
        for batch in [1usize, 16, 256] {
            let batch_bytes = wal_batch_bytes(dir.path(), batch, entry_bytes);
            let (mut same, mut rewrite, mut wal) = (Vec::new(), Vec::new(), Vec::new());
            for round in 0..rounds {
                // Rotate the order, so that no loop always follows another
                // (each leaves the disk busy with its write-back).
                for turn in 0..3 {
                    match (round + turn) % 3 {
                        0 => same.push(bare_same_bytes(dir.path(), batch_bytes, budget)),
                        1 => rewrite.push(bare_rewrite(dir.path(), batch * entry_bytes, budget)),
                        _ => wal.push(wal_loop(dir.path(), batch, entry_bytes, budget)),
                    }
                }
            }
            // The disk is shared and its speed drifts, so compare each WAL
            // round with the baselines of the same round.
            let ratio = |base: &[Round]| {
                median(
                    base.iter()
                        .zip(&wal)
                        .map(|(b, w)| w.batches_per_sec() / b.batches_per_sec())
                        .collect(),
                )
            };
            let rate = |loop_rounds: &[Round]| {
                median(loop_rounds.iter().map(Round::batches_per_sec).collect())
            };
            let cpu = |loop_rounds: &[Round]| {
                median(loop_rounds.iter().map(Round::cpu_us_per_batch).collect())
            };
            let wal_rate = rate(&wal);
            println!(
                "{batch:>5} {entry_bytes:>5} {batch_bytes:>7} | {:>9.0} {:>7.1} | {:>9.0} {:>7.1} | \
                 {:>9.0} {:>11.0} {:>7.1} {:>7.1} | {:>5.0}% {:>6.0}%",
                rate(&same),
                cpu(&same),
                rate(&rewrite),
                cpu(&rewrite),
                wal_rate,
                wal_rate * batch as f64,
                wal_rate * batch_bytes as f64 / 1e6,
                cpu(&wal),
                100.0 * ratio(&same),
                100.0 * ratio(&rewrite),
            );
        }
    }
    recovery(dir.path(), log_mb);
}
