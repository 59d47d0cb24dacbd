//! `keel cluster up`: start the members that are not running, wait for a
//! leader, print how to reach the cluster, then supervise until Ctrl-C.
//!
//! A first run plans names and ports and writes `cluster.toml`; later runs
//! reuse it, so members come back with the same ports, ids and data. A run
//! while another `cluster up` supervises only restarts the missing members
//! and leaves them to that supervisor's Ctrl-C (or `cluster down`).

use std::path::Path;
use std::process::Child;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use super::ClusterDir;
use super::certs::TlsFiles;
use super::down::stop_members;
use super::ports::{check_free, plan};
use super::process::{
    is_supervisor_process, running_member, serve_args, spawn, worker_threads_per_member,
};
use super::state::ClusterFile;
use super::wait::{Ready, wait_for_leader};
use crate::duration;
use crate::logging::LogLevel;

/// How long stopping members may take on Ctrl-C before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How often the supervisor looks at its members.
const SUPERVISE_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Args, Debug)]
pub struct UpArgs {
    /// How many members to start, 1 to 9 [default: 3, or as many as the
    /// existing cluster in --data-dir has].
    #[arg(long, value_name = "N")]
    pub members: Option<u16>,
    #[command(flatten)]
    pub dir: ClusterDir,
    /// The first member's client port; member i (from 0) uses
    /// BASE+100·i for clients, +1 for peers and +2 for metrics.
    #[arg(
        long,
        env = "KEEL_BASE_PORT",
        default_value_t = 2379,
        value_name = "PORT"
    )]
    pub base_port: u16,
    /// How long to wait for the members to elect a leader (e.g. 30s).
    #[arg(long, default_value = "30s", value_parser = duration::parse, value_name = "DURATION")]
    pub wait_timeout: Duration,
    /// The members' log level; their logs are in DIR/NAME/keel.log.
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
    /// Return once the cluster has a leader and leave the members running;
    /// stop them with `keel cluster down`.
    #[arg(long)]
    pub detach: bool,
    /// Make a throwaway CA and certificates in DIR/tls and run a new
    /// cluster with TLS on client and peer URLs, certificates required on
    /// both (a cluster keeps the choice it was created with).
    #[arg(long)]
    pub tls: bool,
}

/// The existing cluster in `cluster_dir`, checked against the flags, or a
/// new plan.
fn load_or_plan(args: &UpArgs, cluster_dir: &Path) -> anyhow::Result<(ClusterFile, bool)> {
    match ClusterFile::load(cluster_dir)? {
        Some(file) => {
            if args.tls && !file.tls {
                bail!(
                    "{} holds a cluster created without TLS; run without --tls, \
                     or use another --data-dir for a TLS cluster",
                    cluster_dir.display()
                );
            }
            let existing = file.members.len();
            if args.members.is_some_and(|n| usize::from(n) != existing) {
                bail!(
                    "{} holds a {existing}-member cluster; run with --members {existing}, \
                     or use another --data-dir (or delete this one to start over)",
                    cluster_dir.display()
                );
            }
            Ok((file, false))
        }
        None => {
            let members = plan(args.members.unwrap_or(3), args.base_port, args.tls)?;
            let seed = format!(
                "{}{:?}",
                cluster_dir.display(),
                std::time::SystemTime::now()
            );
            let token = format!("keel-{:08x}", crc32c::crc32c(seed.as_bytes()));
            let file = ClusterFile {
                token,
                supervisor_pid: None,
                tls: args.tls,
                members,
            };
            Ok((file, true))
        }
    }
}

/// Children started by this run; dropped (on an error) they are killed,
/// so a failed `up` leaves nothing behind.
struct Started(Vec<(String, Child)>);

impl Drop for Started {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How to run this very binary from the user's shell, for printed hints.
fn self_command() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return "keel".into();
    };
    let relative = std::env::current_dir()
        .ok()
        .and_then(|cwd| Some(exe.strip_prefix(cwd).ok()?.to_path_buf()));
    match relative {
        Some(relative) => format!("./{}", relative.display()),
        None => exe.display().to_string(),
    }
}

/// ` --data-dir DIR` for printed commands, unless DIR is the default.
fn dir_flag(cluster_dir: &Path) -> String {
    let default = std::path::absolute(super::DEFAULT_DIR).ok();
    if default.as_deref() == Some(cluster_dir) {
        String::new()
    } else {
        format!(" --data-dir {}", cluster_dir.display())
    }
}

fn print_ready(file: &ClusterFile, cluster_dir: &Path, ready: &Ready, detach: bool) {
    let keel = self_command();
    let dir = dir_flag(cluster_dir);
    let endpoints = file.endpoints();
    let urls = file
        .members
        .iter()
        .map(|m| m.client_url.as_str())
        .collect::<Vec<_>>()
        .join(",");
    println!(
        "Keel cluster of {} members is up: leader {} (term {}).",
        file.members.len(),
        ready.leader_name,
        ready.term
    );
    println!();
    for m in &file.members {
        println!(
            "  {:<4} client {}  metrics {}/metrics  log {}",
            m.name,
            m.client_url,
            m.metrics_url,
            m.log_file(cluster_dir).display()
        );
    }
    println!();
    if let Some(first) = file.members.first() {
        println!(
            "Watch it live: open {}/ in a browser (every member's metrics port serves the whole cluster's page).",
            first.metrics_url
        );
        println!();
    }
    println!("Try:");
    match file.tls_files(cluster_dir) {
        Some(tls) => {
            let (ca, cert, key) = (
                tls.ca.display(),
                tls.client_cert.display(),
                tls.client_key.display(),
            );
            println!(
                "  export KEEL_ENDPOINTS={urls} KEEL_CACERT={ca} KEEL_CERT={cert} KEEL_KEY={key}"
            );
            println!("  {keel} put greeting hello && {keel} get greeting");
            println!("  {keel} cluster status{dir}");
            println!(
                "  ETCDCTL_API=3 etcdctl --endpoints={urls} --cacert={ca} --cert={cert} --key={key} endpoint status -w table"
            );
        }
        None => {
            println!("  export KEEL_ENDPOINTS={endpoints}");
            println!("  {keel} put greeting hello && {keel} get greeting");
            println!("  {keel} cluster status{dir}");
            println!("  ETCDCTL_API=3 etcdctl --endpoints={endpoints} endpoint status -w table");
        }
    }
    println!();
    if detach {
        println!("Stop it with `{keel} cluster down{dir}`.");
    } else {
        println!("Ctrl-C stops the cluster (or `{keel} cluster down{dir}` from another terminal).");
    }
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let cluster_dir = args.dir.resolve()?;
    std::fs::create_dir_all(&cluster_dir)
        .with_context(|| format!("--data-dir: cannot create {}", cluster_dir.display()))?;
    let (mut file, new) = load_or_plan(&args, &cluster_dir)?;
    let other_supervisor = file
        .supervisor_pid
        .filter(|&pid| pid != std::process::id() && is_supervisor_process(pid));
    // Members still running (e.g. after a detached `up`) are adopted.
    for m in &mut file.members {
        m.pid = running_member(m.pid, &m.data_dir(&cluster_dir));
    }
    let missing: Vec<usize> = (0..file.members.len())
        .filter(|&i| file.members[i].pid.is_none())
        .collect();
    if missing.is_empty() {
        bail!(
            "the cluster in {} is already running; `keel cluster status --data-dir {0}` shows it, \
             `keel cluster down --data-dir {0}` stops it",
            cluster_dir.display()
        );
    }
    let hint = if new {
        "pick other ports with --base-port (e.g. --base-port 12379)"
    } else {
        "this cluster's members keep their ports; stop what uses it"
    };
    let wanted: Vec<_> = missing.iter().map(|&i| file.members[i].clone()).collect();
    check_free(&wanted, hint)?;
    if new {
        println!(
            "Starting a new {}-member cluster in {}",
            file.members.len(),
            cluster_dir.display()
        );
    } else {
        let names: Vec<&str> = wanted.iter().map(|m| m.name.as_str()).collect();
        println!(
            "Starting {} from {}",
            names.join(", "),
            cluster_dir.display()
        );
    }

    // Without a supervisor of our own the members must outlive us.
    let detach = args.detach || other_supervisor.is_some();
    // A new TLS cluster gets its certificates before any member starts;
    // a restarted one keeps those it was created with.
    let tls = if new && file.tls {
        let files = TlsFiles::generate(&cluster_dir)?;
        println!(
            "Made a throwaway CA and certificates in {}",
            TlsFiles::dir(&cluster_dir).display()
        );
        Some(files)
    } else {
        file.tls_files(&cluster_dir)
    };
    let initial_cluster = file.initial_cluster();
    let worker_threads = worker_threads_per_member(file.members.len());
    let mut started = Started(Vec::new());
    for &i in &missing {
        let member = &file.members[i];
        let serve = serve_args(
            member,
            &cluster_dir,
            &initial_cluster,
            &file.token,
            tls.as_ref(),
        );
        let child = spawn(
            member,
            &cluster_dir,
            &serve,
            args.log_level.name(),
            detach,
            worker_threads,
        )?;
        started.0.push((member.name.clone(), child));
        file.members[i].pid = started.0.last().map(|(_, child)| child.id());
    }
    if other_supervisor.is_none() {
        file.supervisor_pid = (!detach).then(std::process::id);
    }
    file.save(&cluster_dir)?;

    let ready = wait_for_leader(&file, &cluster_dir, &mut started.0, args.wait_timeout).await?;
    print_ready(&file, &cluster_dir, &ready, detach);
    if detach {
        // The members run on; forget them instead of killing them.
        std::mem::take(&mut started.0);
        return Ok(());
    }
    supervise(&cluster_dir, &mut started.0).await?;
    std::mem::take(&mut started.0);
    Ok(())
}

/// Reports members that exit, until Ctrl-C or SIGTERM (`cluster down`),
/// then stops every member of the cluster.
async fn supervise(cluster_dir: &Path, children: &mut Vec<(String, Child)>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            _ = tokio::time::sleep(SUPERVISE_INTERVAL) => {}
        }
        children.retain_mut(|(name, child)| match child.try_wait() {
            Ok(Some(status)) => {
                eprintln!(
                    "member {name} (pid {}) exited ({status}); the others keep running. \
                     `{} cluster up{}` in another terminal starts it again.",
                    child.id(),
                    self_command(),
                    dir_flag(cluster_dir)
                );
                false
            }
            _ => true,
        });
    }
    eprintln!("stopping the cluster…");
    let mut file = ClusterFile::require(cluster_dir)?;
    let stopped = stop_members(&mut file, cluster_dir, STOP_GRACE, || {
        for (_, child) in children.iter_mut() {
            let _ = child.try_wait();
        }
    });
    file.supervisor_pid = None;
    file.save(cluster_dir)?;
    for (_, child) in children.iter_mut() {
        let _ = child.wait();
    }
    eprintln!("stopped {}", stopped.join(", "));
    Ok(())
}
