//! WAL throughput beside a bare `write` + `fdatasync` loop measured in the
//! same run, and recovery speed beside a bare sequential read.
//!
//! `cargo bench -p keel-storage --bench wal`. Environment:
//! * `KEEL_BENCH_DIR`: where to write (default: the system temp directory);
//!   put it on the disk you want to measure.
//! * `KEEL_BENCH_MS`: milliseconds per measurement round (default 300; seven
//!   rounds, alternating baseline and WAL, the median is reported).
//! * `KEEL_BENCH_RECOVERY_MB`: size of the log to recover (default 256; set
//!   1024 for the 1 GiB figure).

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
const ROUNDS: usize = 7;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Throughput of one measurement.
#[derive(Clone, Copy)]
struct Rate {
    batches_per_sec: f64,
    entries_per_sec: f64,
    mb_per_sec: f64,
}

fn median(mut rates: Vec<Rate>) -> Rate {
    rates.sort_by(|a, b| a.entries_per_sec.total_cmp(&b.entries_per_sec));
    rates[rates.len() / 2]
}

fn rate(batches: u64, batch: usize, entry_bytes: usize, elapsed: Duration) -> Rate {
    let secs = elapsed.as_secs_f64();
    let entries = batches as f64 * batch as f64;
    Rate {
        batches_per_sec: batches as f64 / secs,
        entries_per_sec: entries / secs,
        mb_per_sec: entries * entry_bytes as f64 / secs / 1e6,
    }
}

/// The baseline: the same payload bytes written with one `pwrite` and one
/// `fdatasync` per batch into a preallocated file, as fast as the disk allows.
fn bare_loop(dir: &Path, batch: usize, entry_bytes: usize, budget: Duration) -> Rate {
    let path = dir.join("baseline.dat");
    let _ = std::fs::remove_file(&path);
    let file = File::options()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    rustix::fs::fallocate(
        file.as_fd(),
        rustix::fs::FallocateFlags::empty(),
        0,
        SEGMENT_BYTES,
    )
    .unwrap();
    file.sync_all().unwrap();
    let buf = vec![0xA5u8; batch * entry_bytes];
    let (mut offset, mut batches) = (0u64, 0u64);
    let start = Instant::now();
    while start.elapsed() < budget {
        if offset + buf.len() as u64 > SEGMENT_BYTES {
            offset = 0;
        }
        file.write_all_at(&buf, offset).unwrap();
        file.sync_data().unwrap();
        offset += buf.len() as u64;
        batches += 1;
    }
    let r = rate(batches, batch, entry_bytes, start.elapsed());
    drop(file);
    std::fs::remove_file(&path).unwrap();
    r
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
fn wal_loop(dir: &Path, batch: usize, entry_bytes: usize, budget: Duration) -> Rate {
    let wal_dir = dir.join("wal");
    let _ = std::fs::remove_dir_all(&wal_dir);
    let mut log = FileLogStore::open(&wal_dir, LogConfig::default()).unwrap();
    let data = Bytes::from(vec![0xA5u8; entry_bytes]);
    let mut batches = 0u64;
    let start = Instant::now();
    while start.elapsed() < budget {
        let entries = make_batch(log.last_index().0 + 1, batch, &data);
        log.append(&entries);
        let _proof = log.sync().unwrap();
        batches += 1;
    }
    let r = rate(batches, batch, entry_bytes, start.elapsed());
    drop(log);
    std::fs::remove_dir_all(&wal_dir).unwrap();
    r
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
    let budget = Duration::from_millis(env_u64("KEEL_BENCH_MS", 300));
    let log_mb = env_u64("KEEL_BENCH_RECOVERY_MB", 256);

    println!(
        "group commit: one fdatasync per batch, {ROUNDS} alternating rounds of {budget:?}, median"
    );
    println!(
        "{:>5} {:>6} | {:>10} {:>11} {:>7} | {:>10} {:>11} {:>7} | {:>6}",
        "batch", "entry", "bare b/s", "entries/s", "MB/s", "WAL b/s", "entries/s", "MB/s", "ratio"
    );
    for entry_bytes in [128usize, 1024] {
        for batch in [1usize, 16, 256] {
            let (mut bare, mut wal) = (Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                bare.push(bare_loop(dir.path(), batch, entry_bytes, budget));
                wal.push(wal_loop(dir.path(), batch, entry_bytes, budget));
            }
            // The disk is shared and its speed drifts, so compare each WAL
            // round with the baseline round just before it.
            let mut ratios: Vec<f64> = bare
                .iter()
                .zip(&wal)
                .map(|(b, w)| w.entries_per_sec / b.entries_per_sec)
                .collect();
            ratios.sort_by(f64::total_cmp);
            let ratio = ratios[ratios.len() / 2];
            let (b, w) = (median(bare), median(wal));
            println!(
                "{batch:>5} {entry_bytes:>6} | {:>10.0} {:>11.0} {:>7.1} | {:>10.0} {:>11.0} {:>7.1} | {:>5.0}%",
                b.batches_per_sec,
                b.entries_per_sec,
                b.mb_per_sec,
                w.batches_per_sec,
                w.entries_per_sec,
                w.mb_per_sec,
                100.0 * ratio
            );
        }
    }
    recovery(dir.path(), log_mb);
}
