//! `keel-sim-stack`: runs seeds of the full-stack simulation (the runtime's
//! node loop and Keel KV under seeded faults) and summarises them.
//!
//! ```text
//! cargo run --release -p keel-sim --bin keel-sim-stack -- --seeds 1..1001
//! cargo run --release -p keel-sim --bin keel-sim-stack -- --seed 42 --profile paused-leader
//! ```

use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use clap::Parser;
use keel_sim::stack::{StackBugs, StackOptions, StackProfile, StackReport, run_stack_seed};
use keel_sim::{OpCounts, Verdict};

/// The full stack under seeded faults: every client history checked for
/// linearizability, Election Safety after every step, exactly-once apply
/// and agreement at the end.
#[derive(Debug, Parser)]
#[command(name = "keel-sim-stack", version)]
struct Args {
    /// Seeds to run, `first..end` (end excluded).
    #[arg(long, default_value = "1..101")]
    seeds: String,
    /// Run this one seed (overrides --seeds) and print its notes.
    #[arg(long)]
    seed: Option<u64>,
    /// random, paused-leader or restarted-reader.
    #[arg(long, default_value = "random", value_parser = parse_profile)]
    profile: StackProfile,
    #[arg(long, default_value_t = StackOptions::default().safety_ticks)]
    ticks: u64,
    #[arg(long, default_value_t = StackOptions::default().heal_ticks)]
    heal_ticks: u64,
    /// Break the shell on purpose: number every life's reads from 0.
    #[arg(long)]
    read_ids_from_zero: bool,
    /// Break the node loop on purpose (keel's test-only switches).
    #[cfg(feature = "core-bugs")]
    #[arg(long, value_enum, value_delimiter = ',')]
    runtime_bug: Vec<RuntimeBug>,
    /// Worker threads; each run is single-threaded and deterministic.
    #[arg(long, default_value_t = std::thread::available_parallelism().map_or(1, usize::from))]
    jobs: usize,
}

/// keel's `RuntimeBugs` switches, by name.
#[cfg(feature = "core-bugs")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum RuntimeBug {
    AckBeforeFsync,
    TickPerTimer,
}

fn parse_profile(s: &str) -> Result<StackProfile, String> {
    match s {
        "random" => Ok(StackProfile::Random),
        "paused-leader" => Ok(StackProfile::PausedLeader),
        "restarted-reader" => Ok(StackProfile::RestartedReader),
        other => Err(format!(
            "unknown profile {other:?}; use random, paused-leader or restarted-reader"
        )),
    }
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let bad = || format!("expected a range like 1..1001, got {s:?}");
    let (a, b) = s.split_once("..").ok_or_else(bad)?;
    let (a, b) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if b <= a {
        return Err(bad());
    }
    Ok((a, b))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = StackOptions {
        safety_ticks: args.ticks,
        heal_ticks: args.heal_ticks,
        profile: args.profile,
        bugs: StackBugs {
            read_ids_from_zero: args.read_ids_from_zero,
            #[cfg(feature = "core-bugs")]
            runtime: keel::RuntimeBugs {
                ack_before_fsync: args.runtime_bug.contains(&RuntimeBug::AckBeforeFsync),
                tick_per_timer: args.runtime_bug.contains(&RuntimeBug::TickPerTimer),
            },
        },
        ..StackOptions::default()
    };
    if let Some(seed) = args.seed {
        let report = run_stack_seed(seed, &options);
        print_run(seed, &report);
        for note in &report.notes {
            println!("  note: {note}");
        }
        return if report.failure.is_none() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let (first, end) = match parse_range(&args.seeds) {
        Ok(range) => range,
        Err(e) => {
            eprintln!("error: --seeds: {e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let next = AtomicU64::new(first);
    let totals = Mutex::new(Totals::default());
    std::thread::scope(|scope| {
        for _ in 0..args.jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    let report = run_stack_seed(seed, &options);
                    if report.failure.is_some() {
                        print_run(seed, &report);
                    }
                    totals
                        .lock()
                        .expect("no worker panics holding it")
                        .add(seed, &report);
                }
            });
        }
    });
    let wall = started.elapsed();
    let mut totals = totals.into_inner().expect("workers are done");
    totals.failed.sort_unstable();
    let seeds = end - first;
    println!(
        "{seeds} seeds in {:.1} s ({:.1} seeds/s): {} steps, {} restarts, {} pauses, {} failed syncs, {} closed connections",
        wall.as_secs_f64(),
        seeds as f64 / wall.as_secs_f64(),
        totals.steps,
        totals.restarts,
        totals.pauses,
        totals.sync_failures,
        totals.disconnects,
    );
    println!(
        "client operations: {} invoked, {} ok, {} failed, {} unknown; {} runs inconclusive; {} seeds failed",
        totals.ops.invoked,
        totals.ops.ok,
        totals.ops.failed,
        totals.ops.unknown,
        totals.inconclusive,
        totals.failed.len(),
    );
    if totals.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!("failed seeds: {:?}", totals.failed);
        ExitCode::FAILURE
    }
}

/// What the seeds of a run add up to.
#[derive(Default)]
struct Totals {
    steps: u64,
    restarts: u64,
    pauses: u64,
    sync_failures: u64,
    disconnects: u64,
    ops: OpCounts,
    inconclusive: u64,
    failed: Vec<u64>,
}

impl Totals {
    fn add(&mut self, seed: u64, report: &StackReport) {
        self.steps += report.steps;
        self.restarts += report.restarts;
        self.pauses += report.pauses;
        self.sync_failures += report.sync_failures;
        self.disconnects += report.disconnects;
        self.ops.add(&report.ops);
        if matches!(report.verdict, Verdict::Inconclusive { .. }) {
            self.inconclusive += 1;
        }
        if report.failure.is_some() {
            self.failed.push(seed);
        }
    }
}

fn print_run(seed: u64, report: &StackReport) {
    println!(
        "seed {seed}: {} steps, {} restarts, {} pauses, {} failed syncs, {} ops ({} ok, {} failed, {} unknown), fingerprint {:016x}",
        report.steps,
        report.restarts,
        report.pauses,
        report.sync_failures,
        report.ops.invoked,
        report.ops.ok,
        report.ops.failed,
        report.ops.unknown,
        report.fingerprint
    );
    match &report.failure {
        None => println!("seed {seed}: passed ({:?})", report.verdict),
        Some(failure) => println!("seed {seed}: VIOLATION: {failure}"),
    }
}
