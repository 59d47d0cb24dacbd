//! Member processes: starting them so that they cannot outlive their
//! supervisor, recognising them later by pid, and stopping them politely
//! (SIGTERM) and then firmly (SIGKILL).

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::certs::TlsFiles;
use super::state::MemberEntry;

/// How often a stopping process is checked on.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The variable a member's async runtime (tokio) reads for its number of
/// worker threads.
const WORKER_THREADS_VAR: &str = "TOKIO_WORKER_THREADS";

/// How many async worker threads each of `members` members sharing this
/// machine gets: its cores divided among them, at least one. A member
/// alone on a machine takes one per core; members sharing the cores that
/// each took them all only wake each other's idle workers: three members
/// on two cores, one worker each instead of two, spent 8% less server CPU
/// per put at 1 and at 16 clients and the same at 100 (BENCHMARKS.md).
pub fn worker_threads_per_member(members: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / members.max(1)).max(1)
}

/// The `keel serve` command line of a cluster member; with `tls`, TLS on
/// its client and peer ports, certificates required on both, from the
/// cluster's own CA.
pub fn serve_args(
    member: &MemberEntry,
    cluster_dir: &Path,
    initial_cluster: &str,
    token: &str,
    tls: Option<&TlsFiles>,
) -> Vec<String> {
    let flags = [
        ("--name", member.name.clone()),
        (
            "--data-dir",
            member.data_dir(cluster_dir).display().to_string(),
        ),
        ("--listen-client-urls", member.client_url.clone()),
        ("--advertise-client-urls", member.client_url.clone()),
        ("--listen-peer-urls", member.peer_url.clone()),
        ("--initial-advertise-peer-urls", member.peer_url.clone()),
        ("--initial-cluster", initial_cluster.to_string()),
        ("--initial-cluster-state", "new".to_string()),
        ("--initial-cluster-token", token.to_string()),
        ("--listen-metrics-urls", member.metrics_url.clone()),
    ];
    let mut args = vec!["serve".to_string()];
    for (flag, value) in flags {
        args.push(flag.to_string());
        args.push(value);
    }
    if let Some(files) = tls {
        let path = |p: &Path| p.display().to_string();
        for (flag, value) in [
            ("--cert-file", path(&files.member_cert)),
            ("--key-file", path(&files.member_key)),
            ("--trusted-ca-file", path(&files.ca)),
            ("--peer-cert-file", path(&files.member_cert)),
            ("--peer-key-file", path(&files.member_key)),
            ("--peer-trusted-ca-file", path(&files.ca)),
        ] {
            args.push(flag.to_string());
            args.push(value);
        }
        args.push("--client-cert-auth".to_string());
        args.push("--peer-client-cert-auth".to_string());
    }
    args
}

/// Starts `keel serve` for `member`, appending its output to its log,
/// with `worker_threads` async workers unless the user's environment
/// names a number ([`WORKER_THREADS_VAR`]).
///
/// The member gets its own process group, so that a Ctrl-C meant for the
/// supervisor reaches the members only as the supervisor's orderly
/// SIGTERM. Unless `detach`, it is also told to die with its supervisor,
/// which covers a supervisor killed with SIGKILL.
pub fn spawn(
    member: &MemberEntry,
    cluster_dir: &Path,
    args: &[String],
    log_level: &str,
    detach: bool,
    worker_threads: usize,
) -> anyhow::Result<Child> {
    let dir = member.dir(cluster_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let log_path = member.log_file(cluster_dir);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the keel executable")?;
    let mut command = Command::new(exe);
    command
        .args(args)
        .arg("--log-level")
        .arg(log_level)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    // The member's configuration is exactly its flags: settings meant for
    // the user's own `keel serve` must not leak in.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KEEL_") {
            command.env_remove(name);
        }
    }
    if std::env::var_os(WORKER_THREADS_VAR).is_none() {
        command.env(WORKER_THREADS_VAR, worker_threads.to_string());
    }
    if !detach {
        die_with_parent(&mut command);
    }
    command
        .spawn()
        .with_context(|| format!("cannot start member {}", member.name))
}

#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only
    // makes one async-signal-safe system call (prctl).
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

/// Whether `pid` is a running `keel serve` for `data_dir` (and not some
/// other process that inherited a recycled pid).
pub fn is_member_process(pid: u32, data_dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // A zombie has exited; only its parent's wait is missing.
    let zombie = stat
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
    let wanted = data_dir.display().to_string();
    !zombie
        && cmdline
            .split(|&b| b == 0)
            .any(|arg| arg == wanted.as_bytes())
}

/// The running member process for `data_dir`: the recorded `pid` if it
/// still is one, else any found in /proc (e.g. one whose `cluster up` died
/// before recording it).
pub fn running_member(pid: Option<u32>, data_dir: &Path) -> Option<u32> {
    if let Some(pid) = pid.filter(|&pid| is_member_process(pid, data_dir)) {
        return Some(pid);
    }
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|&pid| is_member_process(pid, data_dir))
}

/// Whether `pid` is a running `keel cluster up` (any cluster).
pub fn is_supervisor_process(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        args.windows(2).any(|w| w == [&b"cluster"[..], &b"up"[..]])
    })
}

pub fn signal(pid: u32, signal: Signal) {
    // The process may be gone already; that is what we want anyway.
    let _ = kill(Pid::from_raw(pid as i32), signal);
}

/// Waits until `alive` turns false, for at most `timeout`.
pub fn wait_until_gone(timeout: Duration, mut alive: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while alive() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    true
}
