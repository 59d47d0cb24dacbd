//! A real Keel KV cluster for end-to-end tests: one `keel-kv` process per
//! member on loopback ports, in a temporary directory. Every wait is
//! bounded, and every process is killed when the cluster is dropped.

#![allow(dead_code)] // each test binary uses a different part of it

pub mod certs;
pub mod etcd;
pub mod etcdctl;
pub mod single_node;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use keel_kv::proto::etcdserverpb::cluster_client::ClusterClient;
use keel_kv::proto::etcdserverpb::kv_client::KvClient;
use keel_kv::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use keel_kv::proto::etcdserverpb::{MemberListRequest, PutRequest, RangeRequest, StatusRequest};
use keel_transport::tls::ClientTls;
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

/// How long a cluster may take to elect a leader, or a member to come up.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
const HEARTBEAT_MS: &str = "50";
const ELECTION_MS: &str = "500";

/// A port that was free a moment ago. Another process may take it before
/// the member binds it; `Cluster::start` retries with new ports then.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Member {
    pub name: String,
    pub dir: PathBuf,
    pub client_port: u16,
    pub peer_port: u16,
    /// Whether the member serves clients, and peers, over TLS.
    pub client_https: bool,
    pub peer_https: bool,
    /// Flags instead of the cluster's, for this member only.
    pub flags: Option<Vec<String>>,
    child: Option<Child>,
}

impl Member {
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn client_url(&self) -> String {
        let scheme = if self.client_https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    pub fn peer_url(&self) -> String {
        let scheme = if self.peer_https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.peer_port)
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// How the process ended, once it has (`None` while it runs).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Everything the member's processes wrote to stderr (logs, and the
    /// final `Error:` line of one that stopped).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.with_extension("log")
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
    }
}

pub struct Cluster {
    root: tempfile::TempDir,
    pub members: Vec<Member>,
    pub token: String,
    /// Extra flags every member gets.
    flags: Vec<String>,
    /// How the test speaks to `https://` client URLs.
    tls: Option<ClientTls>,
}

impl Cluster {
    /// Starts `n` members with `flags` and waits until they agree on a
    /// leader and every one of them serves a linearizable read.
    pub async fn start(n: usize, flags: &[&str]) -> Cluster {
        Cluster::start_with_tls(n, flags, None).await
    }

    /// Like [`Cluster::start`]; with `tls`, every member serves clients
    /// and peers on `https://` URLs (`flags` must give the certificates)
    /// and the cluster's own calls use `tls`.
    pub async fn start_with_tls(n: usize, flags: &[&str], tls: Option<ClientTls>) -> Cluster {
        for _attempt in 0..3 {
            let mut cluster = Cluster::launch_with_tls(n, flags, tls.clone());
            if cluster.wait_ready().await {
                return cluster;
            }
            // A port was taken meanwhile (or worse): show why, try afresh.
            cluster.dump_logs();
        }
        panic!("the cluster did not start in three attempts");
    }

    /// Like [`Cluster::start`], calling `prepare` on each attempt's
    /// cluster before any member starts (to mount a filesystem at a
    /// member's data directory, say); returns what `prepare` returned for
    /// the attempt that started.
    pub async fn start_prepared<T>(
        n: usize,
        flags: &[&str],
        prepare: impl Fn(&Cluster) -> T,
    ) -> (Cluster, T) {
        for _attempt in 0..3 {
            let mut cluster = Cluster::prepare(n, flags, None);
            let prepared = prepare(&cluster);
            for i in 0..n {
                cluster.spawn(i, "new");
            }
            if cluster.wait_ready().await {
                return (cluster, prepared);
            }
            cluster.dump_logs();
        }
        panic!("the cluster did not start in three attempts");
    }

    /// Like [`Cluster::start_with_tls`] with TLS, one member per entry of
    /// `flags`, each with its own.
    pub async fn start_with_member_flags(flags: Vec<Vec<String>>, tls: ClientTls) -> Cluster {
        for _attempt in 0..3 {
            let mut cluster = Cluster::prepare(flags.len(), &[], Some(tls.clone()));
            for (m, own) in cluster.members.iter_mut().zip(&flags) {
                m.flags = Some(own.clone());
            }
            for i in 0..flags.len() {
                cluster.spawn(i, "new");
            }
            if cluster.wait_ready().await {
                return cluster;
            }
            cluster.dump_logs();
        }
        panic!("the cluster did not start in three attempts");
    }

    /// Starts `n` members with `flags` and returns at once, before they
    /// elect a leader or listen.
    pub fn launch(n: usize, flags: &[&str]) -> Cluster {
        Cluster::launch_with_tls(n, flags, None)
    }

    fn launch_with_tls(n: usize, flags: &[&str], tls: Option<ClientTls>) -> Cluster {
        let mut cluster = Cluster::prepare(n, flags, tls);
        for i in 0..n {
            cluster.spawn(i, "new");
        }
        cluster
    }

    /// `n` members on fresh ports, none started yet.
    fn prepare(n: usize, flags: &[&str], tls: Option<ClientTls>) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let https = tls.is_some();
        Cluster {
            members: (0..n)
                .map(|i| Member {
                    name: format!("m{i}"),
                    dir: root.path().join(format!("m{i}")),
                    client_port: free_port(),
                    peer_port: free_port(),
                    client_https: https,
                    peer_https: https,
                    flags: None,
                    child: None,
                })
                .collect(),
            root,
            token: "keel-e2e".into(),
            flags: flags.iter().map(|f| f.to_string()).collect(),
            tls,
        }
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts member `i`'s process (again), with `state` new or existing.
    pub fn spawn(&mut self, i: usize, state: &str) {
        let initial_cluster = self.initial_cluster();
        let m = &self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(m.log_path())
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_keel-kv"))
            .args(["--name", &m.name, "--data-dir"])
            .arg(&m.dir)
            .args(["--listen-client-urls", &m.client_url()])
            .args(["--listen-peer-urls", &m.peer_url()])
            .args(["--initial-advertise-peer-urls", &m.peer_url()])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", &self.token])
            .args(["--heartbeat-interval", HEARTBEAT_MS])
            .args(["--election-timeout", ELECTION_MS])
            .args(m.flags.as_ref().unwrap_or(&self.flags))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.members[i].child = Some(child);
    }

    /// Adds a member to the list (not to the cluster): its process starts
    /// with [`Cluster::spawn`] once `MemberAdd` made room for it.
    pub fn reserve_member(&mut self) -> usize {
        let i = self.members.len();
        let https = self.tls.is_some();
        self.members.push(Member {
            name: format!("m{i}"),
            dir: self.root.path().join(format!("m{i}")),
            client_port: free_port(),
            peer_port: free_port(),
            client_https: https,
            peer_https: https,
            flags: None,
            child: None,
        });
        i
    }

    /// Kills member `i` with SIGKILL: no chance to flush anything.
    pub async fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            child.kill().await.unwrap();
        }
    }

    /// Stops member `i` with SIGTERM and waits for it to exit.
    pub async fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let pid = child.id().expect("a running child has a pid");
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                child.kill().await.unwrap();
                panic!("member {i} did not stop within 10 s of SIGTERM");
            }
        }
    }

    pub fn endpoints(&self) -> String {
        self.running_endpoints().join(",")
    }

    /// Endpoints of members whose process is running.
    pub fn running_endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .map(Member::endpoint)
            .collect()
    }

    pub async fn channel(&self, i: usize) -> Channel {
        let endpoint = self
            .endpoint(i)
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(10));
        match self.tls_of(i) {
            Some(tls) => tls.connect_lazy(endpoint),
            None => endpoint.connect_lazy(),
        }
    }

    /// Member `i`'s client URL as an endpoint (for [`Cluster::connect`]).
    pub fn endpoint(&self, i: usize) -> Endpoint {
        ClientTls::endpoint(&self.members[i].client_url()).unwrap()
    }

    /// The test's TLS towards member `i`, if it serves `https://`.
    fn tls_of(&self, i: usize) -> Option<&ClientTls> {
        self.tls.as_ref().filter(|_| self.members[i].client_https)
    }

    /// A channel to member `i` over `endpoint`, connected now.
    pub async fn connect(&self, i: usize, endpoint: Endpoint) -> Option<Channel> {
        match self.tls_of(i) {
            Some(tls) => tls.connect(endpoint).await.ok(),
            None => endpoint.connect().await.ok(),
        }
    }

    /// `(member id, leader id)` as member `i` reports them, if it answers.
    pub async fn status(&self, i: usize) -> Option<(u64, u64)> {
        let endpoint = self
            .endpoint(i)
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(2));
        let channel = self.connect(i, endpoint).await?;
        let status = MaintenanceClient::new(channel)
            .status(StatusRequest {})
            .await
            .ok()?
            .into_inner();
        Some((status.header?.member_id, status.leader))
    }

    /// The index of the member that leads according to every running
    /// member, once they agree.
    pub async fn wait_leader(&self) -> usize {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(leader) = self.agreed_leader().await {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within {START_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn agreed_leader(&self) -> Option<usize> {
        let mut ids = Vec::new();
        let mut leaders = Vec::new();
        for (i, m) in self.members.iter().enumerate() {
            if m.child.is_none() {
                continue;
            }
            let (id, leader) = self.status(i).await?;
            ids.push((i, id));
            leaders.push(leader);
        }
        let leader = *leaders.first()?;
        if leader == 0 || leaders.iter().any(|&l| l != leader) {
            return None;
        }
        ids.iter().find(|(_, id)| *id == leader).map(|(i, _)| *i)
    }

    /// Waits for a leader, for a linearizable read on every member, and for
    /// every member to know every member's client URLs: a follower relays
    /// lease keep-alives and membership calls to the leader's client URL,
    /// which the leader publishes in the registry only after it starts.
    /// (Writes do not wait for it: they are forwarded over the peer port.)
    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let exited = self
                .members
                .iter_mut()
                .any(|m| m.child.is_some() && !m.is_running());
            if exited || Instant::now() > deadline {
                return false;
            }
            if self.agreed_leader().await.is_some()
                && self.all_read().await
                && self.all_published().await
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn all_read(&self) -> bool {
        for (i, m) in self.members.iter().enumerate() {
            if m.child.is_none() {
                continue;
            }
            let mut kv = KvClient::new(self.channel(i).await);
            if kv.range(range("health")).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Whether every running member lists every member with client URLs.
    async fn all_published(&self) -> bool {
        for (i, m) in self.members.iter().enumerate() {
            if m.child.is_none() {
                continue;
            }
            let mut cluster = ClusterClient::new(self.channel(i).await);
            let Ok(list) = cluster.member_list(MemberListRequest::default()).await else {
                return false;
            };
            let members = list.into_inner().members;
            if members.len() != self.members.len()
                || members.iter().any(|m| m.client_ur_ls.is_empty())
            {
                return false;
            }
        }
        true
    }

    /// Waits until member `i` answers a linearizable read (it is up and
    /// has caught up with the commit index at the time of the read).
    pub async fn wait_serving(&self, i: usize) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let ok = async {
                let endpoint = self
                    .endpoint(i)
                    .connect_timeout(Duration::from_millis(500))
                    .timeout(Duration::from_secs(3));
                let ch = self.connect(i, endpoint).await?;
                KvClient::new(ch).range(range("health")).await.ok()
            }
            .await
            .is_some();
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "member {i} did not serve within {START_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn dump_logs(&self) {
        for m in &self.members {
            let log = std::fs::read_to_string(m.log_path()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("---- {} ({}) ----", m.name, m.log_path().display());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
    }
}

/// A channel to `url` that fails fast when the member is down.
pub async fn channel(url: &str) -> Channel {
    Endpoint::from_shared(url.to_owned())
        .unwrap()
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(10))
        .connect_lazy()
}

pub fn put(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.to_owned().into(),
        value: value.to_owned().into(),
        ..Default::default()
    }
}

pub fn range(key: &str) -> RangeRequest {
    RangeRequest {
        key: key.to_owned().into(),
        ..Default::default()
    }
}

pub fn prefix(key: &str) -> RangeRequest {
    let mut end = key.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    RangeRequest {
        key: key.to_owned().into(),
        range_end: end.into(),
        ..Default::default()
    }
}
