//! `keel-sim`: runs seeds of the cluster simulator and summarises them.
//!
//! ```text
//! cargo run --release -p keel-sim -- --seeds 1..10001          # many seeds
//! cargo run --release -p keel-sim -- --seed 42 --trace         # replay one
//! ```

use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use keel_sim::{CallerBugs, FaultSet, Profile, RunReport, SimOptions, Summary, run_seed};

/// Deterministic simulation of a Keel cluster: faults from a seed,
/// invariants after every step, linearizability of the client history.
#[derive(Debug, Parser)]
#[command(name = "keel-sim", version)]
struct Args {
    /// Seeds to run, as a Rust range: `1..10001` (end excluded) or `1..=10000`.
    #[arg(long, default_value = "1..101", value_parser = parse_seeds)]
    seeds: SeedRange,
    /// Run this one seed (overrides --seeds).
    #[arg(long)]
    seed: Option<u64>,
    /// Print every event of the run (use with --seed).
    #[arg(long)]
    trace: bool,
    /// Cluster size (3, 5 or 7); drawn from the seed when absent.
    #[arg(long)]
    nodes: Option<usize>,
    /// Fault classes: all, none, or a list of network, partition, crash,
    /// pause, disk, membership, transfer, snapshot.
    #[arg(long, default_value = "all")]
    faults: FaultSet,
    /// Fault schedule: random (every enabled class at random moments),
    /// figure8 (rounds of the Raft paper's Figure 8, partitions chosen
    /// around the current leaders; 3 or 5 nodes), vote-crash (a split
    /// vote whose voter crashes right after granting; 3 nodes), joint-lag
    /// (joint changes proposed while the outgoing majority is cut off; 5
    /// nodes) or isolated-leader (a leader cut off while clients read from
    /// it; 3 or 5 nodes).
    #[arg(long, default_value = "random")]
    profile: Profile,
    /// Length of the safety (faulty) phase, in ticks.
    #[arg(long, default_value_t = SimOptions::default().safety_ticks)]
    ticks: u64,
    /// Length of the heal phase, in ticks.
    #[arg(long, default_value_t = SimOptions::default().heal_ticks)]
    heal_ticks: u64,
    /// Break the caller on purpose: acknowledge entries before fsync.
    #[arg(long)]
    ack_before_fsync: bool,
    /// Break the caller on purpose: serve reads locally, unconfirmed.
    #[arg(long)]
    stale_reads: bool,
    /// Break the caller on purpose: never persist votes.
    #[arg(long)]
    forget_votes: bool,
    /// Crashes keep each Ready's writes all or nothing (no crash between
    /// a Ready's entries and its hard state).
    #[arg(long)]
    atomic_ready_writes: bool,
    /// Break the core on purpose (keel-raft's test-only switches).
    #[cfg(feature = "core-bugs")]
    #[arg(long, value_enum, value_delimiter = ',')]
    core_bug: Vec<CoreBug>,
    /// Worker threads; each run is single-threaded and deterministic.
    #[arg(long, default_value_t = default_jobs())]
    jobs: usize,
    /// Events shown for a failing seed.
    #[arg(long, default_value_t = 60)]
    tail: usize,
}

/// keel-raft's `Bugs` switches, by name.
#[cfg(feature = "core-bugs")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum CoreBug {
    VoteWithoutLogCheck,
    CommitPreviousTermByCounting,
    ReadIndexWithoutHeartbeat,
    LeaseNeverExpires,
    VoteBeforePersist,
    JointIncomingMajorityOnly,
    CheckQuorumIgnored,
}

#[derive(Clone, Copy, Debug)]
struct SeedRange {
    start: u64,
    end_exclusive: u64,
}

/// Why a `--seeds` value is not a range.
#[derive(Debug, thiserror::Error)]
#[error("expected a range like 1..10001 or 1..=10000, got {0:?}")]
struct BadRange(String);

fn parse_seeds(s: &str) -> Result<SeedRange, BadRange> {
    let bad = || BadRange(s.to_owned());
    let (start, end, inclusive) = if let Some((a, b)) = s.split_once("..=") {
        (a, b, true)
    } else if let Some((a, b)) = s.split_once("..") {
        (a, b, false)
    } else {
        return Err(bad());
    };
    let start: u64 = start.trim().parse().map_err(|_| bad())?;
    let end: u64 = end.trim().parse().map_err(|_| bad())?;
    let end_exclusive = if inclusive { end + 1 } else { end };
    if end_exclusive <= start {
        return Err(bad());
    }
    Ok(SeedRange {
        start,
        end_exclusive,
    })
}

fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn main() -> ExitCode {
    let args = Args::parse();
    // The update fills fields that exist only with the `core-bugs` feature.
    #[allow(clippy::needless_update)]
    let options = SimOptions {
        nodes: args.nodes,
        faults: args.faults.clone(),
        profile: args.profile,
        safety_ticks: args.ticks,
        heal_ticks: args.heal_ticks,
        echo_trace: args.trace,
        trace_tail: args.tail,
        atomic_ready_writes: args.atomic_ready_writes,
        caller_bugs: CallerBugs {
            ack_before_fsync: args.ack_before_fsync,
            stale_reads: args.stale_reads,
            forget_votes: args.forget_votes,
        },
        ..SimOptions::default()
    };
    #[cfg(feature = "core-bugs")]
    let options = SimOptions {
        core_bugs: keel_raft::Bugs {
            vote_without_log_check: args.core_bug.contains(&CoreBug::VoteWithoutLogCheck),
            commit_previous_term_by_counting: args
                .core_bug
                .contains(&CoreBug::CommitPreviousTermByCounting),
            read_index_without_heartbeat: args
                .core_bug
                .contains(&CoreBug::ReadIndexWithoutHeartbeat),
            lease_never_expires: args.core_bug.contains(&CoreBug::LeaseNeverExpires),
            vote_before_persist: args.core_bug.contains(&CoreBug::VoteBeforePersist),
            joint_incoming_majority_only: args
                .core_bug
                .contains(&CoreBug::JointIncomingMajorityOnly),
            check_quorum_ignored: args.core_bug.contains(&CoreBug::CheckQuorumIgnored),
        },
        ..options
    };
    if let Some(seed) = args.seed {
        let report = run_seed(seed, &options);
        print_run(&report, !args.trace, &args);
        return if report.passed() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let summary = run_many(&args, &options);
    println!("{summary}");
    if summary.failed_seeds.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs the seed range on `--jobs` threads; reports are folded in seed
/// order so that the summary does not depend on scheduling.
fn run_many(args: &Args, options: &SimOptions) -> Summary {
    let range = args.seeds;
    let total = range.end_exclusive - range.start;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} seeds  {elapsed_precise} (eta {eta})  {msg}",
        )
        .expect("a valid template"),
    );
    let started = Instant::now();
    let next = Mutex::new(range.start);
    let reports = Mutex::new(Vec::with_capacity(total as usize));
    std::thread::scope(|scope| {
        for _ in 0..args.jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let seed = {
                        let mut next = next.lock().expect("no worker panics holding it");
                        if *next >= range.end_exclusive {
                            break;
                        }
                        *next += 1;
                        *next - 1
                    };
                    let report = run_seed(seed, options);
                    if !report.passed() {
                        bar.suspend(|| print_run(&report, true, args));
                        bar.set_message(format!("FAILED seed {seed}"));
                    }
                    bar.inc(1);
                    reports
                        .lock()
                        .expect("no worker panics holding it")
                        .push(report);
                }
            });
        }
    });
    bar.finish();
    let mut reports = reports.into_inner().expect("workers are done");
    reports.sort_by_key(|r| r.seed);
    let mut summary = Summary::default();
    for report in &reports {
        summary.add(report);
    }
    summary.wall = started.elapsed();
    summary
}

/// The flags that make a run of one seed repeat this one.
fn replay_flags(args: &Args) -> String {
    let mut flags = format!("--ticks {} --heal-ticks {}", args.ticks, args.heal_ticks);
    if let Some(n) = args.nodes {
        flags += &format!(" --nodes {n}");
    }
    flags += &format!(" --faults {}", args.faults);
    if args.profile != Profile::Random {
        flags += &format!(" --profile {}", args.profile);
    }
    for (on, flag) in [
        (args.ack_before_fsync, " --ack-before-fsync"),
        (args.stale_reads, " --stale-reads"),
        (args.forget_votes, " --forget-votes"),
        (args.atomic_ready_writes, " --atomic-ready-writes"),
    ] {
        if on {
            flags += flag;
        }
    }
    #[cfg(feature = "core-bugs")]
    for bug in &args.core_bug {
        let value = clap::ValueEnum::to_possible_value(bug).expect("no switch is hidden");
        flags += &format!(" --core-bug {}", value.get_name());
    }
    flags
}

/// The command that runs this binary again: a broken core exists only
/// with the `core-bugs` feature.
fn replay_command(args: &Args) -> &'static str {
    #[cfg(feature = "core-bugs")]
    if !args.core_bug.is_empty() {
        return "cargo run --release -p keel-sim --features core-bugs --";
    }
    #[cfg(not(feature = "core-bugs"))]
    let _ = args;
    "cargo run --release -p keel-sim --"
}

fn print_run(report: &RunReport, with_tail: bool, args: &Args) {
    println!(
        "seed {}: {} nodes, {} steps, {} ops ({} ok, {} failed, {} unknown), fingerprint {:016x}",
        report.seed,
        report.nodes,
        report.steps,
        report.ops.invoked,
        report.ops.ok,
        report.ops.failed,
        report.ops.unknown,
        report.fingerprint
    );
    match &report.failure {
        None => println!("seed {}: passed ({:?})", report.seed, report.verdict),
        Some(failure) => {
            println!(
                "seed {}: VIOLATION at {}: {}",
                report.seed, failure.at, failure.violation
            );
            if with_tail {
                println!("last events:");
                for line in &failure.trace_tail {
                    println!("  {line}");
                }
            }
            println!(
                "replay: {} --seed {} {} --trace",
                replay_command(args),
                report.seed,
                replay_flags(args)
            );
        }
    }
}
