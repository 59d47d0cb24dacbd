//! `keel cluster down`, and the stopping that `cluster up` does on Ctrl-C.

use std::path::Path;
use std::time::Duration;

use clap::Args;
use nix::sys::signal::Signal;

use super::ClusterDir;
use super::process::{
    is_member_process, is_supervisor_process, running_member, signal, wait_until_gone,
};
use super::state::ClusterFile;
use crate::duration;

#[derive(Args, Debug)]
pub struct DownArgs {
    #[command(flatten)]
    pub dir: ClusterDir,
    /// How long members get to stop after SIGTERM before they are killed
    /// with SIGKILL (e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = duration::parse, value_name = "DURATION")]
    pub grace: Duration,
}

/// Stops every recorded member that still runs: SIGTERM, then SIGKILL
/// after `grace`. Returns the names of the members it stopped. `reap` is
/// called while waiting, so that a parent can collect its children (a
/// zombie would otherwise look alive to nobody but itself).
pub fn stop_members(
    file: &mut ClusterFile,
    cluster_dir: &Path,
    grace: Duration,
    mut reap: impl FnMut(),
) -> Vec<String> {
    let running: Vec<(String, u32, std::path::PathBuf)> = file
        .members
        .iter()
        .filter_map(|m| {
            let data_dir = m.data_dir(cluster_dir);
            let pid = running_member(m.pid, &data_dir)?;
            Some((m.name.clone(), pid, data_dir))
        })
        .collect();
    for (_, pid, _) in &running {
        signal(*pid, Signal::SIGTERM);
    }
    let mut alive = || {
        reap();
        running
            .iter()
            .any(|(_, pid, dir)| is_member_process(*pid, dir))
    };
    if !wait_until_gone(grace, &mut alive) {
        for (name, pid, dir) in &running {
            if is_member_process(*pid, dir) {
                eprintln!("{name} (pid {pid}) did not stop within {grace:?}; killing it");
                signal(*pid, Signal::SIGKILL);
            }
        }
        wait_until_gone(grace, &mut alive);
    }
    for member in &mut file.members {
        member.pid = None;
    }
    running.into_iter().map(|(name, _, _)| name).collect()
}

pub fn run(args: DownArgs) -> anyhow::Result<()> {
    let cluster_dir = args.dir.resolve()?;
    let mut file = ClusterFile::require(&cluster_dir)?;
    // A supervising `cluster up` stops its members itself, and would
    // otherwise report them as crashed.
    if let Some(pid) = file
        .supervisor_pid
        .filter(|&pid| is_supervisor_process(pid))
    {
        signal(pid, Signal::SIGTERM);
        if wait_until_gone(args.grace + Duration::from_secs(5), || {
            is_supervisor_process(pid)
        }) {
            println!("stopped `keel cluster up` (pid {pid})");
        }
        // It rewrote the file when it stopped.
        file = ClusterFile::require(&cluster_dir)?;
    }
    let stopped = stop_members(&mut file, &cluster_dir, args.grace, || {});
    file.supervisor_pid = None;
    file.save(&cluster_dir)?;
    let still_running: Vec<&str> = file
        .members
        .iter()
        .filter(|m| running_member(None, &m.data_dir(&cluster_dir)).is_some())
        .map(|m| m.name.as_str())
        .collect();
    if !still_running.is_empty() {
        anyhow::bail!("members still running: {}", still_running.join(", "));
    }
    if stopped.is_empty() {
        println!(
            "no member of the cluster in {} was running",
            cluster_dir.display()
        );
    } else {
        println!("stopped {}", stopped.join(", "));
    }
    Ok(())
}
