//! Starting the two systems: a single-member etcd and a Keel cluster of
//! `keel-kv` processes, on free loopback ports in a temporary directory.
//! Every process is killed when its guard is dropped, a panic included.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use keel_kv::proto::etcdserverpb::MemberListRequest;
use keel_kv::proto::etcdserverpb::cluster_client::ClusterClient;
use tonic::transport::Endpoint;

use crate::target::{Target, TargetError};

/// How long a system may take to serve its first linearizable read.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How many times a start is retried with fresh ports (another process
/// may take a port between our probe and the server's bind).
const START_ATTEMPTS: usize = 3;
/// Keel's timing: fast elections, so that a start takes a second.
const KEEL_HEARTBEAT_MS: &str = "50";
const KEEL_ELECTION_MS: &str = "500";

/// Errors of starting a system.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{what} did not serve within {START_TIMEOUT:?} in {START_ATTEMPTS} attempts; logs in {logs}"
    )]
    NotServing { what: &'static str, logs: PathBuf },
    #[error(transparent)]
    Target(#[from] crate::target::TargetError),
}

/// A child process that is killed and reaped when dropped.
pub struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        // It may have exited already; either way it must be gone after.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running system: its processes, its client endpoints, and the
/// directory that holds its data and logs.
pub struct System {
    processes: Vec<Killed>,
    pub endpoints: Vec<String>,
    pub dir: PathBuf,
}

/// A port that was free a moment ago.
fn free_port() -> Result<u16, StartError> {
    let io = |source| StartError::Io {
        path: PathBuf::from("127.0.0.1:0"),
        source,
    };
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io)?;
    Ok(listener.local_addr().map_err(io)?.port())
}

fn log_file(path: &Path) -> Result<File, StartError> {
    File::create(path).map_err(|source| StartError::Io {
        path: path.to_owned(),
        source,
    })
}

fn spawn(mut command: Command, log: &Path) -> Result<Killed, StartError> {
    let program = command.get_program().to_string_lossy().into_owned();
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file(log)?)
        .spawn()
        .map(Killed)
        .map_err(|source| StartError::Spawn { program, source })
}

/// Starts a single-member etcd (`etcd_bin`) with its data under `dir`.
pub async fn start_etcd(etcd_bin: &Path, dir: &Path) -> Result<System, StartError> {
    for attempt in 0..START_ATTEMPTS {
        let data = dir.join(format!("etcd-{attempt}"));
        let (client, peer) = (free_port()?, free_port()?);
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut command = Command::new(etcd_bin);
        command
            .arg("--data-dir")
            .arg(&data)
            .args(["--name", "default"])
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("default={peer_url}")]);
        let process = spawn(command, &data.with_extension("log"))?;
        let system = System {
            processes: vec![process],
            endpoints: vec![client_url],
            dir: dir.to_owned(),
        };
        if system.wait_serving().await? {
            return Ok(system);
        }
    }
    Err(StartError::NotServing {
        what: "etcd",
        logs: dir.to_owned(),
    })
}

/// Starts a Keel cluster of `members` `keel-kv` processes (`keel_bin`)
/// with their data under `dir`.
pub async fn start_keel(keel_bin: &Path, dir: &Path, members: usize) -> Result<System, StartError> {
    for attempt in 0..START_ATTEMPTS {
        let mut ports = Vec::with_capacity(members);
        for _ in 0..members {
            ports.push((free_port()?, free_port()?));
        }
        let peer_url = |port: u16| format!("http://127.0.0.1:{port}");
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, &(_, peer))| format!("m{i}={}", peer_url(peer)))
            .collect::<Vec<_>>()
            .join(",");
        let mut processes = Vec::with_capacity(members);
        let mut endpoints = Vec::with_capacity(members);
        for (i, &(client, peer)) in ports.iter().enumerate() {
            let data = dir.join(format!("keel-{attempt}-m{i}"));
            let client_url = format!("http://127.0.0.1:{client}");
            let mut command = Command::new(keel_bin);
            command
                .args(["--name", &format!("m{i}")])
                .arg("--data-dir")
                .arg(&data)
                .args(["--listen-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url(peer)])
                .args(["--initial-advertise-peer-urls", &peer_url(peer)])
                .args(["--initial-cluster", &initial_cluster])
                .args(["--initial-cluster-token", "keel-difftest"])
                .args(["--heartbeat-interval", KEEL_HEARTBEAT_MS])
                .args(["--election-timeout", KEEL_ELECTION_MS])
                .env("RUST_LOG", "warn");
            processes.push(spawn(command, &data.with_extension("log"))?);
            endpoints.push(client_url);
        }
        let system = System {
            processes,
            endpoints,
            dir: dir.to_owned(),
        };
        if system.wait_serving().await? && system.wait_published(members).await? {
            return Ok(system);
        }
    }
    Err(StartError::NotServing {
        what: "the Keel cluster",
        logs: dir.to_owned(),
    })
}

impl System {
    /// Whether every member answers a linearizable read in time.
    async fn wait_serving(&self) -> Result<bool, StartError> {
        let target = Target::new(&self.endpoints)?;
        for member in 0..target.member_count() {
            if !target.wait_serving(member, START_TIMEOUT).await {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether every member soon lists `members` members, each with its
    /// client URLs: a follower relays lease calls to the leader's client
    /// URL, which the leader publishes in the member registry only after
    /// it starts serving.
    async fn wait_published(&self, members: usize) -> Result<bool, StartError> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if self.published(members).await? {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn published(&self, members: usize) -> Result<bool, StartError> {
        for endpoint in &self.endpoints {
            let channel = Endpoint::from_shared(endpoint.clone())
                .map_err(|source| TargetError::Endpoint {
                    endpoint: endpoint.clone(),
                    source,
                })?
                .connect_timeout(Duration::from_secs(1))
                .timeout(Duration::from_secs(2))
                .connect_lazy();
            let Ok(list) = ClusterClient::new(channel)
                .member_list(MemberListRequest::default())
                .await
            else {
                return Ok(false);
            };
            let list = list.into_inner().members;
            if list.len() != members || list.iter().any(|m| m.client_ur_ls.is_empty()) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// How many processes the system runs.
    pub fn process_count(&self) -> usize {
        self.processes.len()
    }
}

/// Finds `name`: beside the running executable (cargo puts every binary of
/// a workspace in one directory, and test executables one below it in
/// `deps/`), else on `PATH`.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let beside = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    beside.or_else(|| {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
    })
}
