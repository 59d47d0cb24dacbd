//! A single real etcd member on loopback ports, to compare Keel with.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::etcdctl::Etcdctl;
use super::free_port;

/// How long etcd may take to serve.
const START_TIMEOUT: Duration = Duration::from_secs(20);

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
