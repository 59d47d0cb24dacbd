//! Keel KV's apply path on its own: committed puts applied to a store on a
//! file, as a member's apply thread applies them, with nothing else on the
//! machine's clock.
//!
//! `cargo bench -p keel-kv --bench apply`. Each row applies batches of
//! 8-byte keys with 256-byte values (compare.sh's puts), cycling through
//! 100,000 keys so that most puts overwrite a key; *watched* rows hold a
//! subscription to the watch hub, as a member with a watcher does, and so
//! build every put's watch event. CPU is this thread's time on a CPU
//! (`/proc/thread-self/schedstat`) per put. Rows take turns in short
//! rounds and medians are reported, so a noisy neighbour hits all alike.
//!
//! Environment: `KEEL_BENCH_DIR` (where the store's file goes; default the
//! system temp directory), `KEEL_BENCH_MS` (milliseconds per round, default
//! 150), `KEEL_BENCH_ROUNDS` (default 15).

use std::time::{Duration, Instant};

use bytes::Bytes;
use keel_kv::KvStateMachine;
use keel_kv::command::encode;
use keel_kv::mvcc::EntryPayload;
use keel_kv::proto::command::command::Op;
use keel_kv::proto::etcdserverpb::PutRequest;

const KEYS: u64 = 100_000;
const VALUE_BYTES: usize = 256;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// One row: a store, its next Raft index and key, and its rounds.
struct Row {
    name: String,
    batch: usize,
    sm: std::sync::Arc<KvStateMachine>,
    _subscription: Option<tokio::sync::watch::Receiver<i64>>,
    _dir: tempfile::TempDir,
    next_index: u64,
    next_key: u64,
    /// (puts, wall seconds, CPU ns) per round.
    rounds: Vec<(u64, f64, u64)>,
}

impl Row {
    fn new(batch: usize, watched: bool, base: &std::path::Path) -> Row {
        let dir = tempfile::tempdir_in(base).expect("a temporary directory");
        let sm = KvStateMachine::open(dir.path(), false).expect("a fresh store opens");
        let subscription = watched.then(|| sm.hub().subscribe());
        let name = format!(
            "batch {batch:>3}, {}",
            if watched { "watched" } else { "unwatched" }
        );
        Row {
            name,
            batch,
            sm,
            _subscription: subscription,
            _dir: dir,
            next_index: 1,
            next_key: 0,
            rounds: Vec::new(),
        }
    }

    fn commands(&mut self) -> Vec<Bytes> {
        (0..self.batch)
            .map(|_| {
                let key = format!("{:08}", self.next_key % KEYS);
                self.next_key += 1;
                encode(Op::Put(PutRequest {
                    key: key.into_bytes().into(),
                    value: vec![b'v'; VALUE_BYTES].into(),
                    ..Default::default()
                }))
            })
            .collect()
    }

    /// Applies batches for `length`, recording the round.
    fn round(&mut self, length: Duration) {
        let started = Instant::now();
        let cpu_started = thread_cpu_ns();
        let mut puts = 0;
        while started.elapsed() < length {
            let commands = self.commands();
            let entries: Vec<_> = commands
                .iter()
                .enumerate()
                .map(|(k, c)| (self.next_index + k as u64, 1, EntryPayload::Command(c)))
                .collect();
            self.sm.apply(&entries).expect("puts apply");
            self.next_index += commands.len() as u64;
            puts += commands.len() as u64;
        }
        let secs = started.elapsed().as_secs_f64();
        self.rounds
            .push((puts, secs, thread_cpu_ns().saturating_sub(cpu_started)));
    }

    /// Median puts/s and median CPU µs per put over the rounds.
    fn medians(&self) -> (f64, f64) {
        let mut rates: Vec<f64> = self.rounds.iter().map(|&(n, s, _)| n as f64 / s).collect();
        let mut cpu: Vec<f64> = self
            .rounds
            .iter()
            .map(|&(n, _, ns)| ns as f64 / 1000.0 / n as f64)
            .collect();
        rates.sort_by(f64::total_cmp);
        cpu.sort_by(f64::total_cmp);
        (rates[rates.len() / 2], cpu[cpu.len() / 2])
    }
}

fn main() {
    let base = std::env::var_os("KEEL_BENCH_DIR")
        .map(Into::into)
        .unwrap_or_else(std::env::temp_dir);
    let length = Duration::from_millis(env_or("KEEL_BENCH_MS", 150));
    let rounds = env_or("KEEL_BENCH_ROUNDS", 15);
    let mut rows: Vec<Row> = [1, 16, 128]
        .into_iter()
        .flat_map(|batch| [Row::new(batch, false, &base), Row::new(batch, true, &base)])
        .collect();
    // A first pass writes every key once, so that rounds overwrite.
    for row in &mut rows {
        while row.next_key < KEYS {
            row.round(Duration::from_millis(1));
        }
        row.rounds.clear();
    }
    for _ in 0..rounds {
        for row in &mut rows {
            row.round(length);
        }
    }
    println!("Keel KV apply, {rounds} rounds of {length:?} per row, medians:");
    println!("{:<24} {:>10} {:>12}", "row", "puts/s", "CPU µs/put");
    for row in &rows {
        let (rate, cpu) = row.medians();
        println!("{:<24} {:>10.0} {:>12.1}", row.name, rate, cpu);
    }
}
