//! [`MemberConfig`]: what starts one member, in etcd's vocabulary (the
//! same flags mean the same things), with etcd's defaults.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::ServerError;
use super::urls::{host_port, is_https};
use crate::service::{AutoCompaction, MAX_REQUEST_BYTES_DEFAULT, REVISION_CHECK_EVERY_DEFAULT};

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

/// TLS for one side of a member, clients or peers, with etcd's flags and
/// meanings (`--cert-file`, `--key-file`, `--trusted-ca-file`,
/// `--client-cert-auth`, and their `--peer-` twins).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// This member's certificate (PEM; a chain, leaf first), served on
    /// `https://` URLs and presented when it connects as a client.
    pub cert_file: Option<PathBuf>,
    /// The certificate's private key (PEM).
    pub key_file: Option<PathBuf>,
    /// The CA certificates (PEM) that sign the other side's certificates.
    /// As in etcd 3.4, giving it also makes the listener require client
    /// certificates signed by it; when this member connects out, it
    /// verifies servers against it (the system's roots without it).
    pub trusted_ca_file: Option<PathBuf>,
    /// Require a client certificate signed by `trusted_ca_file`.
    pub client_cert_auth: bool,
    /// Admit only client certificates with this subject common name
    /// (etcd's `--peer-cert-allowed-cn`; peers only).
    pub allowed_cn: Option<String>,
}

/// Which side a [`TlsConfig`] is for: the flag names differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Peer,
}

impl Side {
    /// The prefix of the side's TLS flags.
    fn prefix(self) -> &'static str {
        match self {
            Side::Client => "",
            Side::Peer => "peer-",
        }
    }

    fn who(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Peer => "peer",
        }
    }
}

impl TlsConfig {
    /// Whether the listener requires client certificates (etcd 3.4: a
    /// trusted CA file or `client-cert-auth`).
    pub fn requires_client_certs(&self) -> bool {
        self.client_cert_auth || self.trusted_ca_file.is_some()
    }

    /// Checks the flags against each other and against the side's
    /// listening URLs; every refusal says which flag to add or drop.
    pub(crate) fn validate(
        &self,
        side: Side,
        urls_flag: &str,
        urls: &[String],
    ) -> Result<(), ServerError> {
        let p = side.prefix();
        let bad = |msg: String| Err(ServerError::Config(msg));
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => {
                return bad(format!(
                    "--{p}cert-file is given without --{p}key-file; give the certificate's private key too"
                ));
            }
            (None, Some(_)) => {
                return bad(format!(
                    "--{p}key-file is given without --{p}cert-file; give the certificate that goes with the key too"
                ));
            }
            _ => {}
        }
        if let Some(url) = urls.iter().find(|u| is_https(u))
            && self.cert_file.is_none()
        {
            return bad(format!(
                "--{urls_flag} has {url}, an https URL: give --{p}cert-file and --{p}key-file (this member's certificate and key), or use http://"
            ));
        }
        if self.client_cert_auth && self.trusted_ca_file.is_none() {
            return bad(format!(
                "--{p}client-cert-auth needs --{p}trusted-ca-file, the CA that must have signed a {}'s certificate",
                side.who()
            ));
        }
        if self.allowed_cn.is_some() && !self.requires_client_certs() {
            return bad(format!(
                "--{p}cert-allowed-cn needs --{p}client-cert-auth and --{p}trusted-ca-file: a common name is only checked on a verified certificate"
            ));
        }
        if self.allowed_cn.as_deref() == Some("") {
            return bad(format!("--{p}cert-allowed-cn must not be empty"));
        }
        Ok(())
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
    /// Restart as the only voter of the cluster, keeping this member's
    /// data (etcd's `--force-new-cluster`): recovers a cluster that lost
    /// its quorum for good. Unsafe; see `docs/operations.md`.
    pub force_new_cluster: bool,
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
    /// TLS on `https://` client URLs, and for this member's own calls to
    /// another member's client URL.
    pub client_tls: TlsConfig,
    /// TLS between members: required when the peer URLs are `https://`.
    pub peer_tls: TlsConfig,
    /// etcd's `--quota-backend-bytes`: the store's file size past which
    /// writes are refused and a NOSPACE alarm is raised; 0 means etcd's
    /// default (2 GiB), a negative value no quota.
    pub quota_backend_bytes: i64,
    /// etcd's `--auto-compaction-mode` and `--auto-compaction-retention`,
    /// parsed with [`MemberConfig::parse_auto_compaction`]; off by default.
    pub auto_compaction: AutoCompaction,
    /// etcd's `--auth-token`: only `simple` tokens (optionally followed by
    /// `,option=value` pairs, which simple tokens ignore, as in etcd).
    pub auth_token: String,
    /// etcd's `--auth-token-ttl`: how long a token lives unused.
    pub auth_token_ttl: Duration,
    /// etcd's `--bcrypt-cost` for password hashes, 4 to 31.
    pub bcrypt_cost: u32,
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
            force_new_cluster: false,
            heartbeat_interval: Duration::from_millis(50),
            election_timeout: Duration::from_millis(400),
            snapshot_count: 100_000,
            max_request_bytes: MAX_REQUEST_BYTES_DEFAULT,
            request_timeout: Duration::from_secs(5),
            lease_ttl_min_seconds: 2,
            watch_progress_notify_interval: Duration::from_secs(600),
            client_tls: TlsConfig::default(),
            peer_tls: TlsConfig::default(),
            quota_backend_bytes: 0,
            auto_compaction: AutoCompaction::Off,
            auth_token: "simple".into(),
            auth_token_ttl: crate::auth::TOKEN_TTL_DEFAULT,
            bcrypt_cost: crate::auth::BCRYPT_COST_DEFAULT,
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

    /// Parses etcd's `--auto-compaction-mode` (`periodic`, `revision`) and
    /// `--auto-compaction-retention` (periodic: hours or a Go duration such
    /// as `30m`; revision: a number of revisions; `0`: off). Revision mode
    /// looks every `revision_check_every` (`None`: etcd's five minutes).
    pub fn parse_auto_compaction(
        mode: &str,
        retention: &str,
        revision_check_every: Option<Duration>,
    ) -> Result<AutoCompaction, ServerError> {
        let every = revision_check_every.unwrap_or(REVISION_CHECK_EVERY_DEFAULT);
        if every.is_zero() {
            return Err(ServerError::Config(
                "the auto-compaction revision check interval must be positive".into(),
            ));
        }
        AutoCompaction::parse(mode, retention, every).map_err(ServerError::Config)
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
                return bad(format!("{url:?} is not an http(s)://host:port URL"));
            }
        }
        self.client_tls
            .validate(Side::Client, "listen-client-urls", &self.listen_client_urls)?;
        if self.client_tls.allowed_cn.is_some() {
            return bad(
                "a certificate common name is only checked for peers (--peer-cert-allowed-cn)"
                    .into(),
            );
        }
        self.peer_tls
            .validate(Side::Peer, "listen-peer-urls", &self.listen_peer_urls)?;
        let peer_urls: Vec<&String> = self
            .listen_peer_urls
            .iter()
            .chain(&self.initial_advertise_peer_urls)
            .chain(self.initial_cluster.iter().map(|(_, u)| u))
            .collect();
        let https = peer_urls.iter().filter(|u| is_https(u)).count();
        if https != 0 && https != peer_urls.len() {
            return bad(format!(
                "peer URLs mix http:// and https:// ({}); members speak TLS to each other or not at all: make every peer URL (--listen-peer-urls, --initial-advertise-peer-urls, --initial-cluster) https:// or every one http://",
                peer_urls
                    .iter()
                    .map(|u| u.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        self.validate_founders()?;
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
        let token_kind = self.auth_token.split(',').next().unwrap_or_default();
        if token_kind != "simple" {
            return bad(format!(
                "--auth-token {token_kind:?}: unsupported token type (Keel serves `simple` tokens only)"
            ));
        }
        if self.auth_token_ttl.is_zero() {
            return bad("--auth-token-ttl must be positive".into());
        }
        if !(4..=31).contains(&self.bcrypt_cost) {
            return bad("--bcrypt-cost must be between 4 and 31".into());
        }
        Ok(())
    }
}

impl MemberConfig {
    /// Checks the flags that found a cluster (`--name`,
    /// `--initial-cluster`, `--initial-advertise-peer-urls`), which is all
    /// that `snapshot restore` takes: every URL parses, this member is
    /// among the founders, and its advertised URLs are its entry's.
    pub(crate) fn validate_founders(&self) -> Result<(), ServerError> {
        let bad = |msg: String| Err(ServerError::Config(msg));
        if self.name.is_empty() {
            return bad("--name must not be empty".into());
        }
        let urls = self
            .initial_advertise_peer_urls
            .iter()
            .chain(self.initial_cluster.iter().map(|(_, u)| u));
        for url in urls {
            if host_port(url).is_none() {
                return bad(format!("{url:?} is not an http(s)://host:port URL"));
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

    fn tls_member() -> MemberConfig {
        MemberConfig {
            listen_client_urls: vec!["https://127.0.0.1:2379".into()],
            listen_peer_urls: vec!["https://127.0.0.1:2380".into()],
            initial_cluster: vec![("n1".into(), "https://127.0.0.1:2380".into())],
            client_tls: TlsConfig {
                cert_file: Some("c.pem".into()),
                key_file: Some("c.key".into()),
                ..TlsConfig::default()
            },
            peer_tls: TlsConfig {
                cert_file: Some("p.pem".into()),
                key_file: Some("p.key".into()),
                trusted_ca_file: Some("ca.pem".into()),
                client_cert_auth: true,
                allowed_cn: Some("member".into()),
            },
            ..MemberConfig::new("n1", "/tmp/x")
        }
    }

    fn refusal(config: MemberConfig) -> String {
        match config.validate() {
            Err(ServerError::Config(message)) => message,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn tls_flags_that_fit_together_are_accepted() {
        assert!(tls_member().validate().is_ok());
    }

    #[test]
    fn tls_flags_that_do_not_fit_together_say_what_to_do() {
        let mut c = tls_member();
        c.client_tls.cert_file = None;
        assert!(refusal(c).contains("key-file is given without --cert-file"));

        let mut c = tls_member();
        c.client_tls = TlsConfig::default();
        let msg = refusal(c);
        assert!(msg.contains("https://127.0.0.1:2379"), "{msg}");
        assert!(msg.contains("give --cert-file and --key-file"), "{msg}");

        let mut c = tls_member();
        c.peer_tls.trusted_ca_file = None;
        assert!(refusal(c).contains("--peer-client-cert-auth needs --peer-trusted-ca-file"));

        let mut c = tls_member();
        c.peer_tls.client_cert_auth = false;
        c.peer_tls.trusted_ca_file = None;
        assert!(refusal(c).contains("--peer-cert-allowed-cn needs"));

        let mut c = tls_member();
        c.initial_cluster
            .push(("n2".into(), "http://127.0.0.1:2480".into()));
        assert!(refusal(c).contains("mix http:// and https://"));
    }
}
