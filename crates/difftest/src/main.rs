//! `keel-difftest`: the same seeded etcd v3 requests to etcd and to Keel,
//! every response compared. Exits non-zero on a divergence that is not
//! documented as intended.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use keel_difftest::process::{System, find_binary, start_etcd, start_keel};
use keel_difftest::run::{RunConfig, Summary, run};
use keel_difftest::target::Target;

#[derive(Parser, Debug)]
#[command(about = "Differential test: Keel KV against etcd, request by request")]
struct Args {
    /// The first seed; each seed names one request sequence.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many seeds to run, from --seed on (each against fresh systems
    /// unless --etcd and --keel are given).
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Requests per seed.
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    /// Stop after this many seconds in all.
    #[arg(long, default_value_t = 3600)]
    time_max_seconds: u64,
    /// Divergences to print per seed.
    #[arg(long, default_value_t = 5)]
    show: usize,
    /// Print every request and both replies to stderr.
    #[arg(long)]
    trace: bool,
    /// An etcd endpoint to use instead of starting one.
    #[arg(long, requires = "keel")]
    etcd: Option<String>,
    /// Keel member endpoints, comma separated, instead of starting a cluster.
    #[arg(long, requires = "etcd", value_delimiter = ',')]
    keel: Vec<String>,
    /// Members of the Keel cluster to start.
    #[arg(long, default_value_t = 3)]
    members: usize,
    /// The etcd binary [default: `etcd` on PATH].
    #[arg(long)]
    etcd_bin: Option<PathBuf>,
    /// The keel-kv binary [default: beside this one, else on PATH].
    #[arg(long)]
    keel_bin: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.time_max_seconds);
    let (mut requests, mut unexpected, mut intended, mut seeds_run) = (0, 0, 0, 0);
    let started = std::time::Instant::now();
    for seed in args.seed..args.seed.saturating_add(args.seeds) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        let config = RunConfig {
            seed,
            requests: args.requests,
            time_max: left,
            trace: args.trace,
        };
        // On SIGINT or SIGTERM the seed's future is dropped, and with it
        // the guards that kill the processes it started.
        let summary = tokio::select! {
            summary = run_seed(&args, config) => summary?,
            signal = interrupted() => {
                signal?;
                eprintln!("interrupted: stopped etcd and Keel");
                return Ok(ExitCode::FAILURE);
            }
        };
        report(&summary, seed, args.show);
        requests += summary.requests;
        unexpected += summary.unexpected().count();
        intended += summary.divergences.len() - summary.unexpected().count();
        seeds_run += 1;
    }
    println!(
        "total: {seeds_run} seeds, {requests} requests in {:.1?}: {unexpected} unexpected divergences, {intended} intended",
        started.elapsed()
    );
    Ok(if unexpected == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Resolves on the first SIGINT or SIGTERM.
async fn interrupted() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    tokio::select! {
        ctrl_c = tokio::signal::ctrl_c() => ctrl_c.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// Runs one seed against the given endpoints, or against systems started
/// for it (and stopped after it).
async fn run_seed(args: &Args, config: RunConfig) -> anyhow::Result<Summary> {
    if let Some(etcd) = &args.etcd {
        let etcd = Target::new(std::slice::from_ref(etcd))?;
        let keel = Target::new(&args.keel)?;
        return Ok(run(&etcd, &keel, config).await);
    }
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let (etcd, keel) = start_both(args, dir.path()).await?;
    let summary = run(
        &Target::new(&etcd.endpoints)?,
        &Target::new(&keel.endpoints)?,
        config,
    )
    .await;
    if summary.unexpected().next().is_some() {
        // Keep the logs of a failed run; the processes stop either way.
        let kept = dir.keep();
        eprintln!("logs kept in {}", kept.display());
    }
    Ok(summary)
}

async fn start_both(args: &Args, dir: &std::path::Path) -> anyhow::Result<(System, System)> {
    let etcd_bin = args
        .etcd_bin
        .clone()
        .or_else(|| find_binary("etcd"))
        .context("no etcd binary: install etcd-server or pass --etcd-bin")?;
    let keel_bin = args
        .keel_bin
        .clone()
        .or_else(|| find_binary("keel-kv"))
        .context("no keel-kv binary: run `cargo build -p keel-kv` or pass --keel-bin")?;
    if args.members == 0 {
        bail!("--members must be at least 1");
    }
    let etcd = start_etcd(&etcd_bin, dir).await.context("starting etcd")?;
    let keel = start_keel(&keel_bin, dir, args.members)
        .await
        .context("starting Keel")?;
    Ok((etcd, keel))
}

fn report(summary: &Summary, seed: u64, show: usize) {
    for d in summary.unexpected().take(show) {
        println!("{d}");
    }
    if let Some(index) = summary.lost_at {
        println!(
            "seed {seed}: a system stopped answering at request {index}; the seed ended there"
        );
    }
    let unexpected = summary.unexpected().count();
    println!(
        "seed {seed}: {} requests in {:.1?}: {unexpected} unexpected divergences, {} intended",
        summary.requests,
        summary.elapsed,
        summary.divergences.len() - unexpected
    );
}
