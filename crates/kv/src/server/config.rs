//! [`MemberConfig`]: what starts one member, in etcd's vocabulary (the
//! same flags mean the same things), with etcd's defaults.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::ServerError;
use super::urls::host_port;
use crate::service::MAX_REQUEST_BYTES_DEFAULT;

/// Whether the member founds a new cluster or joins a running one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClusterState {
    /// Bootstrap a new cluster whose voters are `initial_cluster`.
    #[default]
    New,
    /// Join a cluster that added this member with `MemberAdd`.
    Existing,
}

impl FromStr for ClusterState {
    type Err = ServerError;

    fn from_str(s: &str) -> Result<ClusterState, ServerError> {
        match s {
            "new" => Ok(ClusterState::New),
            "existing" => Ok(ClusterState::Existing),
            _ => Err(ServerError::Config(format!(
                "--initial-cluster-state must be `new` or `existing`, not {s:?}"
            ))),
        }
    }
}

/// Configuration of one member. Start from [`MemberConfig::new`].
///
/// The `initial_*` fields matter on first start only; later starts resume
/// from `data_dir` (as etcd does), where the member's IDs are stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberConfig {
    /// This member's name, as it appears in `initial_cluster`.
    pub name: String,
    pub data_dir: PathBuf,
    /// Where to serve clients (`http://host:port`; port 0 picks one).
    pub listen_client_urls: Vec<String>,
    /// The client URLs other members and clients are told; empty means
    /// the bound listen addresses.
    pub advertise_client_urls: Vec<String>,
    /// Where to serve peers; exactly one.
    pub listen_peer_urls: Vec<String>,
    /// The peer URLs other members use; empty means the bound listen
    /// address. They determine this member's ID (`ids.rs`).
    pub initial_advertise_peer_urls: Vec<String>,
    /// Every founding member as `(name, peer URL)`; a name may repeat for
    /// a member with several URLs.
    pub initial_cluster: Vec<(String, String)>,
    pub initial_cluster_state: ClusterState,
    /// Names the cluster; members of different clusters refuse each other.
    pub initial_cluster_token: String,
    /// How often the leader sends heartbeats (also the Raft tick).
    pub heartbeat_interval: Duration,
    /// A follower that hears no leader for this long (randomized up to
    /// twice as long) starts an election. At least 5 heartbeats.
    pub election_timeout: Duration,
    /// Take a Raft snapshot (and compact the log) every this many entries.
    pub snapshot_count: u64,
    /// The largest write request accepted (etcd's `--max-request-bytes`).
    pub max_request_bytes: usize,
    /// How long a request may wait for a leader, a quorum or a read.
    pub request_timeout: Duration,
    /// The shortest TTL a lease gets (etcd: 2 s, so that an election does
    /// not expire leases).
    pub lease_ttl_min_seconds: i64,
    /// The period of watch progress notifications (etcd's
    /// `--experimental-watch-progress-notify-interval`, 10 minutes; at
    /// least 100 ms).
    pub watch_progress_notify_interval: Duration,
}

/// The shortest watch progress period (etcd's `minWatchProgressInterval`).
const WATCH_PROGRESS_NOTIFY_INTERVAL_MIN: Duration = Duration::from_millis(100);

impl MemberConfig {
    /// etcd's defaults for member `name` keeping its state in `data_dir`:
    /// clients on `http://localhost:2379`, peers on `http://localhost:2380`,
    /// a one-member cluster, heartbeats every 50 ms, elections after 400 ms
    /// (randomized up to 800 ms), so that a lost leader is replaced within
    /// about a second.
    pub fn new(name: impl Into<String>, data_dir: impl Into<PathBuf>) -> MemberConfig {
        let name = name.into();
        MemberConfig {
            listen_client_urls: vec!["http://localhost:2379".into()],
            advertise_client_urls: Vec::new(),
            listen_peer_urls: vec!["http://localhost:2380".into()],
            initial_advertise_peer_urls: Vec::new(),
            initial_cluster: vec![(name.clone(), "http://localhost:2380".into())],
            initial_cluster_state: ClusterState::New,
            initial_cluster_token: "etcd-cluster".into(),
            heartbeat_interval: Duration::from_millis(50),
            election_timeout: Duration::from_millis(400),
            snapshot_count: 100_000,
            max_request_bytes: MAX_REQUEST_BYTES_DEFAULT,
            request_timeout: Duration::from_secs(5),
            lease_ttl_min_seconds: 2,
            watch_progress_notify_interval: Duration::from_secs(600),
            name,
            data_dir: data_dir.into(),
        }
    }

    /// Parses etcd's `--initial-cluster` syntax: `name=url,name=url,…`.
    pub fn parse_initial_cluster(s: &str) -> Result<Vec<(String, String)>, ServerError> {
        s.split(',')
            .filter(|entry| !entry.trim().is_empty())
            .map(|entry| {
                let (name, url) = entry.trim().split_once('=').ok_or_else(|| {
                    ServerError::Config(format!(
                        "--initial-cluster entry {entry:?} is not name=url"
                    ))
                })?;
                Ok((name.to_owned(), url.to_owned()))
            })
            .collect()
    }

    /// Parses a comma-separated URL list, as etcd's URL flags take.
    pub fn parse_urls(s: &str) -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The peer URLs of each founding member, by name, in first-seen order.
    pub(crate) fn founders(&self) -> Vec<(String, Vec<String>)> {
        let mut founders: Vec<(String, Vec<String>)> = Vec::new();
        for (name, url) in &self.initial_cluster {
            match founders.iter_mut().find(|(n, _)| n == name) {
                Some((_, urls)) => urls.push(url.clone()),
                None => founders.push((name.clone(), vec![url.clone()])),
            }
        }
        founders
    }

    /// Checks what can be checked before binding anything.
    pub fn validate(&self) -> Result<(), ServerError> {
        let bad = |msg: String| Err(ServerError::Config(msg));
        if self.name.is_empty() {
            return bad("--name must not be empty".into());
        }
        if self.listen_peer_urls.len() != 1 {
            return bad("exactly one --listen-peer-urls is supported".into());
        }
        if self.listen_client_urls.is_empty() {
            return bad("--listen-client-urls must name at least one URL".into());
        }
        let urls = self
            .listen_client_urls
            .iter()
            .chain(&self.advertise_client_urls)
            .chain(&self.listen_peer_urls)
            .chain(&self.initial_advertise_peer_urls)
            .chain(self.initial_cluster.iter().map(|(_, u)| u));
        for url in urls {
            if host_port(url).is_none() {
                return bad(format!("{url:?} is not an http://host:port URL"));
            }
        }
        let founders = self.founders();
        let Some((_, mine)) = founders.iter().find(|(n, _)| *n == self.name) else {
            return bad(format!(
                "--initial-cluster must include this member ({})",
                self.name
            ));
        };
        if !self.initial_advertise_peer_urls.is_empty()
            && !same_urls(mine, &self.initial_advertise_peer_urls)
        {
            return bad(format!(
                "--initial-cluster has {}={} but --initial-advertise-peer-urls is {}",
                self.name,
                mine.join(","),
                self.initial_advertise_peer_urls.join(",")
            ));
        }
        if self.heartbeat_interval < Duration::from_millis(1) {
            return bad("--heartbeat-interval must be at least 1 ms".into());
        }
        if self.election_timeout < self.heartbeat_interval * 5 {
            return bad("--election-timeout must be at least 5 times --heartbeat-interval".into());
        }
        if self.snapshot_count == 0 || self.max_request_bytes == 0 {
            return bad("--snapshot-count and --max-request-bytes must be positive".into());
        }
        if self.watch_progress_notify_interval < WATCH_PROGRESS_NOTIFY_INTERVAL_MIN {
            return bad(
                "--experimental-watch-progress-notify-interval must be at least 100ms".into(),
            );
        }
        Ok(())
    }
}

fn same_urls(a: &[String], b: &[String]) -> bool {
    let norm = |urls: &[String]| {
        let mut v: Vec<String> = urls
            .iter()
            .map(|u| u.trim_end_matches('/').to_owned())
            .collect();
        v.sort();
        v
    };
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_initial_cluster_parses() {
        assert!(MemberConfig::new("n1", "/tmp/x").validate().is_ok());
        let parsed = MemberConfig::parse_initial_cluster("a=http://h:1,b=http://h:2").unwrap();
        assert_eq!(parsed[1], ("b".into(), "http://h:2".into()));
        assert!(MemberConfig::parse_initial_cluster("a").is_err());
    }

    #[test]
    fn member_missing_from_initial_cluster_is_refused() {
        let config = MemberConfig {
            initial_cluster: vec![("other".into(), "http://h:1".into())],
            ..MemberConfig::new("n1", "/tmp/x")
        };
        assert!(matches!(config.validate(), Err(ServerError::Config(_))));
    }
}
