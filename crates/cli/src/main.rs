//! `keel`: run a Keel KV member (`serve`), a whole cluster on this machine
//! (`cluster up|down|status`), and talk to any of them over etcd's v3 API
//! (`put`, `get`, `del`, `watch`, `member`, `endpoint`, `transfer-leader`,
//! `snapshot`), and measure any etcd-API server (`bench`).
//!
//! This file only parses the command line and dispatches; each command
//! lives in its own module and returns `anyhow::Result`, so that every
//! failure reaches the user as one message with its chain of causes.

mod client;
mod cluster;
mod duration;
mod logging;
mod metrics;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: a put allocates and frees many
/// small buffers on several threads (gRPC framing, protobuf, the command
/// and its result, redb pages), and a profile of a leader under 100
/// clients spent about 13% of its CPU in glibc's malloc and free.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keel: a Raft-replicated key-value store that speaks etcd's v3 API.
///
/// Start a local three-member cluster with `keel cluster up`, then use
/// `keel put`, `keel get` or any etcd v3 client against the endpoints it
/// prints.
#[derive(Parser, Debug)]
#[command(name = "keel", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one cluster member in the foreground.
    ///
    /// With no flags, starts a single-member cluster serving clients on
    /// http://127.0.0.1:2379 with its data in ./default.keel. Every flag can
    /// also be set as a KEEL_* environment variable or in a TOML file given
    /// with --config; a flag beats its variable, which beats the file.
    Serve(Box<serve::ServeArgs>),
    /// Run a whole cluster of member processes on this machine.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Write a key.
    Put(client::kv::PutArgs),
    /// Read a key or a range of keys.
    Get(client::kv::GetArgs),
    /// Delete a key or a range of keys.
    Del(client::kv::DelArgs),
    /// Print changes to a key or a range of keys as they happen (Ctrl-C
    /// stops).
    Watch(client::watch::WatchArgs),
    /// List and change the cluster's members.
    #[command(subcommand)]
    Member(client::member::MemberCommand),
    /// Ask the leader to hand leadership to another member.
    TransferLeader(client::leader::TransferLeaderArgs),
    /// Check endpoints: their Raft status or their health.
    #[command(subcommand)]
    Endpoint(client::endpoint::EndpointCommand),
    /// Save a snapshot of the key-value state, check one, or restore one
    /// into a new cluster.
    #[command(subcommand)]
    Snapshot(client::snapshot::SnapshotCommand),
    /// Load-test any server that speaks etcd's v3 KV API (Keel or etcd).
    ///
    /// Prints throughput, latency percentiles and errors by kind; --json
    /// for machines, --plot for an SVG of latency over time.
    Bench(Box<keel_bench::BenchArgs>),
}

fn main() -> ExitCode {
    refuse_transparent_huge_pages();
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Turns transparent huge pages off for this process and the members it
/// starts (children inherit the setting). mimalloc asks the kernel for huge
/// pages on its arenas but hands memory back in 64 KiB pieces, so under a
/// write load the kernel kept faulting in, and zeroing, whole 2 MiB pages:
/// page faults were 10% of three members' CPU under 100-client puts, 2.8%
/// with huge pages off, and server CPU per put fell by about 7%
/// (BENCHMARKS.md). Databases commonly advise the same. The setting is an
/// optimisation only: a kernel that refuses it changes nothing else.
fn refuse_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
}

fn run(command: Command) -> anyhow::Result<()> {
    // A member configures its own logging, from flags that may come from
    // its config file, and needs every core; so does a load generator. The other commands log
    // warnings to stderr and run on this thread alone: `cluster up` must
    // spawn its members from the main thread, because their parent-death
    // signal fires when the spawning *thread* exits.
    let runtime = if matches!(command, Command::Serve(_)) {
        keel_kv::server::member_runtime()?
    } else if matches!(command, Command::Bench(_)) {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    } else {
        logging::init_for_tools();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    };
    runtime.block_on(async move {
        match command {
            Command::Serve(a) => serve::run(*a).await,
            Command::Cluster(c) => cluster::run(c).await,
            Command::Put(a) => client::kv::put(a).await,
            Command::Get(a) => client::kv::get(a).await,
            Command::Del(a) => client::kv::del(a).await,
            Command::Watch(a) => client::watch::run(a).await,
            Command::Member(c) => client::member::run(c).await,
            Command::TransferLeader(a) => client::leader::run(a).await,
            Command::Endpoint(c) => client::endpoint::run(c).await,
            Command::Snapshot(c) => client::snapshot::run(c).await,
            Command::Bench(a) => bench(*a).await,
        }
    })
}

async fn bench(args: keel_bench::BenchArgs) -> anyhow::Result<()> {
    let report = keel_bench::run(&args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};
    use keel_kv::server::{INITIAL_CLUSTER_TOKEN_DEFAULT, MemberFlags};

    /// `keel serve` with no flags runs the member the `keel-kv` binary runs
    /// with none (its own test pins that one), with the runtime's timing
    /// and the one default token: every default is read from its owner.
    #[test]
    fn serve_defaults_are_the_owning_constants() {
        let cli = super::Cli::try_parse_from(["keel", "serve"]).unwrap();
        let super::Command::Serve(args) = cli.command else {
            panic!("`keel serve` parsed as another command");
        };
        let config = crate::serve::ServeConfig::resolve(args.settings).unwrap();
        let member = config.member;
        assert_eq!(member, MemberFlags::default().resolve().unwrap());
        assert_eq!(member.heartbeat_interval, keel::HEARTBEAT_INTERVAL_DEFAULT);
        assert_eq!(member.election_timeout, keel::ELECTION_TIMEOUT_DEFAULT);
        assert_eq!(member.snapshot_count, keel::SNAPSHOT_ENTRIES_DEFAULT);
        assert_eq!(member.initial_cluster_token, INITIAL_CLUSTER_TOKEN_DEFAULT);
    }

    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }

    /// Every subcommand says what it does and every flag or argument what
    /// it means, so `--help` is complete at every level.
    #[test]
    fn every_command_and_argument_has_help() {
        fn check(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
                let path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() {
                    missing.push(path.clone());
                }
                for arg in sub.get_arguments() {
                    let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                    if !builtin && arg.get_help().is_none() {
                        missing.push(format!("{path} {}", arg.get_id()));
                    }
                }
                check(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        check(&super::Cli::command(), "keel", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }
}
