//! `keel cluster up|down|status`: a whole cluster of member processes on
//! this machine, for development, demos and tests.
//!
//! `up` spawns one `keel serve` per member and records them in
//! `<data-dir>/cluster.toml`; `down` and `status` read that file, so they
//! work from any terminal.

mod certs;
mod down;
mod ports;
mod probe;
mod process;
mod state;
mod status;
mod up;
mod wait;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

/// Where `cluster` commands keep a local cluster unless told otherwise.
pub const DEFAULT_DIR: &str = "./keel-data";

/// The directory that holds a local cluster.
#[derive(Args, Debug, Clone)]
pub struct ClusterDir {
    /// The local cluster's directory: cluster.toml, and each member's data
    /// and keel.log under a directory named after it.
    #[arg(
        long,
        env = "KEEL_CLUSTER_DIR",
        default_value = DEFAULT_DIR,
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,
}

impl ClusterDir {
    /// The absolute path, so that the recorded member command lines match
    /// whatever directory a later command runs from.
    fn resolve(&self) -> anyhow::Result<PathBuf> {
        absolute(&self.data_dir)
    }
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("--data-dir {}", path.display()))
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Start (or restart from its data) a cluster of member processes on
    /// 127.0.0.1, wait for a leader and print its endpoints; stays in the
    /// foreground until Ctrl-C, which stops every member.
    Up(up::UpArgs),
    /// Stop every member of the cluster that `cluster up` started in
    /// --data-dir (SIGTERM, then SIGKILL after --grace).
    Down(down::DownArgs),
    /// Show each member's role, term, leader, indexes, log and db size, and
    /// warn about members that are down or lagging.
    Status(status::StatusArgs),
}

pub async fn run(command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Up(args) => up::run(args).await,
        ClusterCommand::Down(args) => down::run(args),
        ClusterCommand::Status(args) => status::run(args).await,
    }
}
