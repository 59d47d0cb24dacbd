//! [`MemberConfig`]: what starts one member, in etcd's vocabulary (the
//! same flags mean the same things). Both `keel serve` and the `keel-kv`
//! binary parse their flags with [`MemberFlags`] into it, so they cannot
//! disagree; defaults of settings the runtime owns (heartbeat, election
//! timeout, snapshot count, request timeout) are the runtime's constants.
//!
//! - `flags.rs`: [`MemberFlags`], the flags (and `KEEL_*` variables and
//!   config file keys) and their resolution into a [`MemberConfig`].
//! - `validate.rs`: [`MemberConfig::validate`], the one validator.
//! - `tls.rs`: [`TlsConfig`], one side's TLS flags; `side.rs`: [`Side`].
//! - `error.rs`: [`ConfigError`], every refusal, typed.

mod error;
mod flags;
mod side;
mod tls;
mod validate;

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::urls::HttpUrl;
use crate::service::{AutoCompaction, DISK_RESERVE_BYTES_DEFAULT, MAX_REQUEST_BYTES_DEFAULT};

pub use super::ids::INITIAL_CLUSTER_TOKEN_DEFAULT;
pub use error::{ConfigError, ELECTION_HEARTBEATS_MIN};
pub use flags::MemberFlags;
pub use side::Side;
pub use tls::TlsConfig;

/// Where a member serves clients unless told otherwise (etcd: port 2379;
/// an IP rather than `localhost`, which may resolve to `::1` first).
pub const LISTEN_CLIENT_URL_DEFAULT: &str = "http://127.0.0.1:2379";

/// Where a member serves peers unless told otherwise (etcd: port 2380).
pub const LISTEN_PEER_URL_DEFAULT: &str = "http://127.0.0.1:2380";

/// The shortest TTL a lease gets (etcd: 2 s, so that an election does not
/// expire leases).
pub const LEASE_TTL_MIN_SECONDS_DEFAULT: i64 = 2;

/// etcd's `--experimental-watch-progress-notify-interval` default.
pub const WATCH_PROGRESS_NOTIFY_INTERVAL_DEFAULT: Duration = Duration::from_secs(600);

/// The shortest watch progress period (etcd's `minWatchProgressInterval`).
pub const WATCH_PROGRESS_NOTIFY_INTERVAL_MIN: Duration = Duration::from_millis(100);

/// Whether the member founds a new cluster or joins a running one.
#[derive(clap::ValueEnum, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClusterState {
    /// Bootstrap a new cluster whose members are --initial-cluster.
    #[default]
    New,
    /// Join a running cluster that already added this member (`member
    /// add`).
    Existing,
}

/// Configuration of one member. Start from [`MemberConfig::new`], or
/// parse flags with [`MemberFlags::resolve`].
///
/// The `initial_*` fields matter on first start only; later starts resume
/// from `data_dir` (as etcd does), where the member's IDs are stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberConfig {
    /// This member's name, as it appears in `initial_cluster`.
    pub name: String,
    pub data_dir: PathBuf,
    /// Where to serve clients; port 0 picks a free port.
    pub listen_client_urls: Vec<HttpUrl>,
    /// The client URLs other members and clients are told; empty means
    /// the bound listen addresses.
    pub advertise_client_urls: Vec<HttpUrl>,
    /// Where to serve peers; exactly one.
    pub listen_peer_urls: Vec<HttpUrl>,
    /// The peer URLs other members use; empty means the bound listen
    /// address. They determine this member's ID (`ids.rs`).
    pub initial_advertise_peer_urls: Vec<HttpUrl>,
    /// Every founding member as `(name, peer URL)`; a name may repeat for
    /// a member with several URLs.
    pub initial_cluster: Vec<(String, HttpUrl)>,
    pub initial_cluster_state: ClusterState,
    /// Names the cluster; members of different clusters refuse each other.
    pub initial_cluster_token: String,
    /// Restart as the only voter of the cluster, keeping this member's
    /// data (etcd's `--force-new-cluster`): recovers a cluster that lost
    /// its quorum for good. Unsafe; see `docs/operations.md`.
    pub force_new_cluster: bool,
    /// How often the leader sends heartbeats (also the Raft tick).
    pub heartbeat_interval: Duration,
    /// A follower that hears no leader for this long (randomized up to
    /// twice as long) starts an election. At least
    /// [`ELECTION_HEARTBEATS_MIN`] heartbeats.
    pub election_timeout: Duration,
    /// Take a Raft snapshot (and compact the log) every this many entries.
    pub snapshot_count: u64,
    /// The largest write request accepted (etcd's `--max-request-bytes`).
    pub max_request_bytes: usize,
    /// How long a request may wait for a leader, a quorum or a read.
    pub request_timeout: Duration,
    /// The shortest TTL a lease gets.
    pub lease_ttl_min_seconds: i64,
    /// The period of watch progress notifications (etcd's
    /// `--experimental-watch-progress-notify-interval`; at least
    /// [`WATCH_PROGRESS_NOTIFY_INTERVAL_MIN`]).
    pub watch_progress_notify_interval: Duration,
    /// TLS on `https://` client URLs, and for this member's own calls to
    /// another member's client URL.
    pub client_tls: TlsConfig,
    /// TLS between members: required when the peer URLs are `https://`.
    pub peer_tls: TlsConfig,
    /// etcd's `--quota-backend-bytes`: the store's file size past which
    /// writes are refused and a NOSPACE alarm is raised; 0 means etcd's
    /// default (2 GiB), a negative value no quota.
    pub quota_backend_bytes: i64,
    /// Keel's `--disk-reserve-bytes`: the free space this member keeps on
    /// its data directory's filesystem; below it, it raises a NOSPACE
    /// alarm. 0: no watch.
    pub disk_reserve_bytes: u64,
    /// etcd's `--auto-compaction-mode` and `--auto-compaction-retention`;
    /// off by default.
    pub auto_compaction: AutoCompaction,
    /// etcd's `--auth-token`: only `simple` tokens (optionally followed by
    /// `,option=value` pairs, which simple tokens ignore, as in etcd).
    pub auth_token: String,
    /// etcd's `--auth-token-ttl`: how long a token lives unused.
    pub auth_token_ttl: Duration,
    /// etcd's `--bcrypt-cost` for password hashes, 4 to 31.
    pub bcrypt_cost: u32,
}

impl MemberConfig {
    /// The defaults for member `name` keeping its state in `data_dir`:
    /// clients on [`LISTEN_CLIENT_URL_DEFAULT`], peers on
    /// [`LISTEN_PEER_URL_DEFAULT`], a one-member cluster, and the
    /// runtime's timing ([`keel::HEARTBEAT_INTERVAL_DEFAULT`],
    /// [`keel::ELECTION_TIMEOUT_DEFAULT`]).
    pub fn new(name: impl Into<String>, data_dir: impl Into<PathBuf>) -> MemberConfig {
        let name = name.into();
        let url = |text| HttpUrl::parse(text).expect("the default URLs parse");
        MemberConfig {
            listen_client_urls: vec![url(LISTEN_CLIENT_URL_DEFAULT)],
            advertise_client_urls: Vec::new(),
            listen_peer_urls: vec![url(LISTEN_PEER_URL_DEFAULT)],
            initial_advertise_peer_urls: Vec::new(),
            initial_cluster: vec![(name.clone(), url(LISTEN_PEER_URL_DEFAULT))],
            initial_cluster_state: ClusterState::New,
            initial_cluster_token: INITIAL_CLUSTER_TOKEN_DEFAULT.into(),
            force_new_cluster: false,
            heartbeat_interval: keel::HEARTBEAT_INTERVAL_DEFAULT,
            election_timeout: keel::ELECTION_TIMEOUT_DEFAULT,
            snapshot_count: keel::SNAPSHOT_ENTRIES_DEFAULT,
            max_request_bytes: MAX_REQUEST_BYTES_DEFAULT,
            request_timeout: keel::REQUEST_TIMEOUT_DEFAULT,
            lease_ttl_min_seconds: LEASE_TTL_MIN_SECONDS_DEFAULT,
            watch_progress_notify_interval: WATCH_PROGRESS_NOTIFY_INTERVAL_DEFAULT,
            client_tls: TlsConfig::default(),
            peer_tls: TlsConfig::default(),
            quota_backend_bytes: 0,
            disk_reserve_bytes: DISK_RESERVE_BYTES_DEFAULT,
            auto_compaction: AutoCompaction::Off,
            auth_token: "simple".into(),
            auth_token_ttl: crate::auth::TOKEN_TTL_DEFAULT,
            bcrypt_cost: crate::auth::BCRYPT_COST_DEFAULT,
            name,
            data_dir: data_dir.into(),
        }
    }

    /// The data directory a member named `name` uses unless told
    /// otherwise (etcd: `NAME.etcd`).
    pub fn data_dir_default(name: &str) -> PathBuf {
        PathBuf::from(format!("{name}.keel"))
    }

    /// Parses etcd's `--initial-cluster` syntax: `name=url,name=url,…`; a
    /// name may repeat (a member with several peer URLs), a URL may not.
    pub fn parse_initial_cluster(text: &str) -> Result<Vec<(String, HttpUrl)>, ConfigError> {
        let mut cluster: Vec<(String, HttpUrl)> = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = || ConfigError::BadClusterEntry {
                entry: entry.to_string(),
            };
            let (name, url) = entry.split_once('=').ok_or_else(bad)?;
            let (name, url) = (name.trim(), url.trim());
            if name.is_empty() {
                return Err(bad());
            }
            let url = HttpUrl::parse(url).map_err(|why| ConfigError::BadUrl {
                flag: "initial-cluster",
                value: entry.to_string(),
                why,
            })?;
            if let Some((first, _)) = cluster.iter().find(|(_, u)| *u == url) {
                return Err(ConfigError::SharedPeerUrl {
                    url: url.to_string(),
                    first: first.clone(),
                    second: name.to_string(),
                });
            }
            cluster.push((name.to_string(), url));
        }
        Ok(cluster)
    }

    /// The peer URLs of each founding member, by name, in first-seen order.
    pub fn founders(&self) -> Vec<(String, Vec<HttpUrl>)> {
        let mut founders: Vec<(String, Vec<HttpUrl>)> = Vec::new();
        for (name, url) in &self.initial_cluster {
            match founders.iter_mut().find(|(n, _)| n == name) {
                Some((_, urls)) => urls.push(url.clone()),
                None => founders.push((name.clone(), vec![url.clone()])),
            }
        }
        founders
    }

    /// The peer URLs this member announces, when known before binding:
    /// the advertised ones, else the listened ones unless they pick a port
    /// at bind time.
    pub(crate) fn known_advertise_peer_urls(&self) -> Option<&[HttpUrl]> {
        if !self.initial_advertise_peer_urls.is_empty() {
            return Some(&self.initial_advertise_peer_urls);
        }
        let listen = &self.listen_peer_urls;
        listen
            .iter()
            .all(|u| u.port != 0)
            .then_some(listen.as_slice())
    }
}
