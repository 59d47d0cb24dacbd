//! A single real etcd member on loopback ports, to compare Keel with.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::etcdctl::Etcdctl;
use super::free_port;

/// How long etcd may take to serve.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How many sets of ports a cluster is started on before giving up.
const START_ATTEMPTS: usize = 3;

/// A running etcd cluster, killed when dropped.
pub struct EtcdCluster {
    /// Each member's process; `None` once killed.
    children: Vec<Option<Child>>,
    _dir: tempfile::TempDir,
    /// Each member's client URL.
    pub endpoints: Vec<String>,
}

impl EtcdCluster {
    /// Starts `n` etcd members with client URLs of `client_scheme`, peer
    /// URLs of `peer_scheme` and `flags`; waits until etcdctl with
    /// `etcdctl_flags` can write through every member. Ports are picked
    /// free but may be taken by another test before etcd binds them, so a
    /// cluster that does not come up is started again on other ports.
    pub async fn start(
        n: usize,
        client_scheme: &str,
        peer_scheme: &str,
        flags: &[String],
        etcdctl_flags: &[String],
    ) -> EtcdCluster {
        for _ in 0..START_ATTEMPTS {
            let started =
                EtcdCluster::try_start(n, client_scheme, peer_scheme, flags, etcdctl_flags).await;
            if let Some(cluster) = started {
                return cluster;
            }
        }
        panic!("etcd never served, on {START_ATTEMPTS} sets of ports");
    }

    /// One attempt of [`EtcdCluster::start`]: `None` once a member has
    /// exited or [`START_TIMEOUT`] has passed without every member serving.
    async fn try_start(
        n: usize,
        client_scheme: &str,
        peer_scheme: &str,
        flags: &[String],
        etcdctl_flags: &[String],
    ) -> Option<EtcdCluster> {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let peer_url = |p: u16| format!("{peer_scheme}://127.0.0.1:{p}");
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("e{i}={}", peer_url(*p)))
            .collect::<Vec<_>>()
            .join(",");
        let mut children = Vec::new();
        let mut endpoints = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let client_url = format!("{client_scheme}://127.0.0.1:{client}");
            children.push(
                Command::new("etcd")
                    .args(["--name", &format!("e{i}"), "--data-dir"])
                    .arg(dir.path().join(format!("e{i}")))
                    .args(["--listen-client-urls", &client_url])
                    .args(["--advertise-client-urls", &client_url])
                    .args(["--listen-peer-urls", &peer_url(*peer)])
                    .args(["--initial-advertise-peer-urls", &peer_url(*peer)])
                    .args(["--initial-cluster", &initial_cluster])
                    .args(flags)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .unwrap(),
            );
            endpoints.push(client_url);
        }
        let deadline = Instant::now() + START_TIMEOUT;
        for endpoint in &endpoints {
            let etcdctl = Etcdctl::new(endpoint)
                .flags(etcdctl_flags)
                .command_timeout_seconds(2);
            while etcdctl.run(&["put", "health", "x"]).await.stdout.trim() != "OK" {
                let exited = children
                    .iter_mut()
                    .any(|c: &mut Child| !matches!(c.try_wait(), Ok(None)));
                if exited || Instant::now() >= deadline {
                    eprintln!("etcd at {endpoint} did not serve; starting it again on other ports");
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Etcdctl::new(&endpoints[0])
            .flags(etcdctl_flags)
            .run(&["del", "health"])
            .await;
        Some(EtcdCluster {
            children: children.into_iter().map(Some).collect(),
            _dir: dir,
            endpoints,
        })
    }

    /// Kills member `i` with SIGKILL.
    pub async fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            child.kill().await.expect("an etcd member can be killed");
        }
    }
}

/// A running etcd, killed when dropped.
pub struct Etcd {
    _child: Child,
    _dir: tempfile::TempDir,
    /// Its client URL.
    pub endpoint: String,
}

impl Etcd {
    /// Starts etcd with client URLs of `scheme` (`http` or `https`) and
    /// `flags` (bcrypt cost, TLS files…); waits until etcdctl with
    /// `etcdctl_flags` can write to it.
    pub async fn start(scheme: &str, flags: &[String], etcdctl_flags: &[String]) -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("{scheme}://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .arg("--data-dir")
            .arg(dir.path().join("etcd"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("default={peer_url}")])
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let etcdctl = Etcdctl::new(&client_url)
            .flags(etcdctl_flags)
            .command_timeout_seconds(2);
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if etcdctl.run(&["put", "health", "x"]).await.stdout.trim() == "OK" {
                etcdctl.run(&["del", "health"]).await;
                return Etcd {
                    _child: child,
                    _dir: dir,
                    endpoint: client_url,
                };
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("etcd at {client_url} never served");
    }
}
