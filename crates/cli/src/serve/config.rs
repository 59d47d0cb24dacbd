//! From merged [`Settings`] to a checked [`ServeConfig`]: defaults filled
//! in, URLs parsed, and the cluster description checked for consistency.
//!
//! Every refusal names the flag at fault and says what would fix it,
//! because a member that starts with a wrong cluster description either
//! fails much later with a confusing peer error or, worse, bootstraps a
//! second cluster.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use keel_kv::server::{DurationError, TlsConfig, parse_go_duration};
use keel_kv::service::{AutoCompaction, REVISION_CHECK_EVERY_DEFAULT};

use super::settings::{ClusterState, Settings};
use super::urls::{HttpUrl, UrlError, join};
use crate::logging::{LogFormat, LogLevel};

/// etcd's rule: an election timeout under five heartbeats makes spurious
/// elections likely when one heartbeat is late.
const ELECTION_HEARTBEATS_MIN: u64 = 5;

/// A member's complete, checked configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_client_urls: Vec<HttpUrl>,
    pub advertise_client_urls: Vec<HttpUrl>,
    pub listen_peer_urls: Vec<HttpUrl>,
    pub initial_advertise_peer_urls: Vec<HttpUrl>,
    /// Member name → its peer URLs, as --initial-cluster gives them.
    pub initial_cluster: BTreeMap<String, Vec<HttpUrl>>,
    pub initial_cluster_state: ClusterState,
    pub initial_cluster_token: String,
    pub force_new_cluster: bool,
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    pub snapshot_count: u64,
    /// `None`: keel-kv's default.
    pub watch_progress_notify_interval: Option<Duration>,
    /// etcd's `--quota-backend-bytes` (0: 2 GiB; negative: none).
    pub quota_backend_bytes: i64,
    pub auto_compaction: AutoCompaction,
    pub listen_metrics_urls: Vec<HttpUrl>,
    /// TLS for clients and for peers, checked against each other and the
    /// URLs by keel-kv when the member starts (`MemberConfig::validate`).
    pub client_tls: TlsConfig,
    pub peer_tls: TlsConfig,
    /// etcd's `--auth-token`, `--auth-token-ttl` and `--bcrypt-cost`;
    /// `None`: keel-kv's default. keel-kv checks them when the member
    /// starts (`MemberConfig::validate`).
    pub auth_token: Option<String>,
    pub auth_token_ttl: Option<Duration>,
    pub bcrypt_cost: Option<u32>,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
}

/// A configuration that cannot be used, with the flag at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "--name must not be empty, nor contain `=` or `,` (it is written into --initial-cluster)"
    )]
    BadName,
    #[error(
        "--{flag}: `{value}` is not usable: {why} (write http://HOST:PORT or https://HOST:PORT, e.g. http://127.0.0.1:2379)"
    )]
    BadUrl {
        flag: &'static str,
        value: String,
        why: UrlError,
    },
    #[error("--listen-metrics-urls {url}: the side-car serves plain HTTP only; use http://")]
    HttpsMetrics { url: String },
    #[error("--{flag} is empty; give at least one http://HOST:PORT")]
    NoUrl { flag: &'static str },
    #[error(
        "--{flag} {url} is a wildcard address that others cannot dial; set --{advertise} to this host's reachable URL"
    )]
    WildcardAdvertised {
        flag: &'static str,
        advertise: &'static str,
        url: String,
    },
    #[error(
        "--initial-cluster: `{entry}` is not NAME=PEER-URL (e.g. m1=http://127.0.0.1:2380,m2=http://127.0.0.1:2480)"
    )]
    BadClusterEntry { entry: String },
    #[error(
        "--initial-cluster gives the peer URL {url} to both `{first}` and `{second}`; each member needs its own"
    )]
    SharedPeerUrl {
        url: String,
        first: String,
        second: String,
    },
    #[error(
        "--initial-cluster does not list this member `{name}` (it lists {listed}); add `{name}=<its peer URL>` or set --name to one of those"
    )]
    NotInCluster { name: String, listed: String },
    #[error(
        "--initial-cluster gives `{name}` the peer URLs {in_cluster}, but --initial-advertise-peer-urls is {advertised}; make them the same"
    )]
    PeerUrlMismatch {
        name: String,
        in_cluster: String,
        advertised: String,
    },
    #[error("--initial-cluster-token must not be empty")]
    EmptyToken,
    #[error("--{flag} must be at least 1")]
    Zero { flag: &'static str },
    #[error("--election-timeout ({election_ms} ms) must be at least {ELECTION_HEARTBEATS_MIN} × --heartbeat-interval ({heartbeat_ms} ms); raise --election-timeout to {} or lower --heartbeat-interval", heartbeat_ms * ELECTION_HEARTBEATS_MIN)]
    ElectionTooShort { election_ms: u64, heartbeat_ms: u64 },
    /// `--auto-compaction-mode` or `--auto-compaction-retention` unusable;
    /// the message names the flag.
    #[error("{0}")]
    BadAutoCompaction(String),
    #[error("--{flag}: {error}")]
    BadDuration {
        flag: &'static str,
        error: DurationError,
    },
    #[error("--{first} and --{second} both use {authority}; give each its own port")]
    PortClash {
        first: &'static str,
        second: &'static str,
        authority: String,
    },
}

fn urls(flag: &'static str, text: &str) -> Result<Vec<HttpUrl>, ConfigError> {
    let urls = HttpUrl::parse_list(text).map_err(|(value, why)| ConfigError::BadUrl {
        flag,
        value,
        why,
    })?;
    if urls.is_empty() {
        return Err(ConfigError::NoUrl { flag });
    }
    Ok(urls)
}

/// Advertised URLs default to the listened ones, which must then be
/// dialable.
fn advertised(
    given: Option<&str>,
    flag: &'static str,
    listen: &[HttpUrl],
    listen_flag: &'static str,
) -> Result<Vec<HttpUrl>, ConfigError> {
    if let Some(text) = given {
        return urls(flag, text);
    }
    if let Some(wild) = listen.iter().find(|u| u.is_unspecified()) {
        return Err(ConfigError::WildcardAdvertised {
            flag: listen_flag,
            advertise: flag,
            url: wild.to_string(),
        });
    }
    Ok(listen.to_vec())
}

fn parse_cluster(text: &str) -> Result<BTreeMap<String, Vec<HttpUrl>>, ConfigError> {
    let mut cluster: BTreeMap<String, Vec<HttpUrl>> = BTreeMap::new();
    let mut owners: BTreeMap<HttpUrl, String> = BTreeMap::new();
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
        if let Some(first) = owners.insert(url.clone(), name.to_string()) {
            return Err(ConfigError::SharedPeerUrl {
                url: url.to_string(),
                first,
                second: name.to_string(),
            });
        }
        // A name given twice has two peer URLs, as in etcd.
        cluster.entry(name.to_string()).or_default().push(url);
    }
    Ok(cluster)
}

/// Sockets this member binds must not collide with each other.
fn check_ports(groups: &[(&'static str, &[HttpUrl])]) -> Result<(), ConfigError> {
    let mut seen: BTreeMap<(String, u16), &'static str> = BTreeMap::new();
    for &(flag, urls) in groups {
        for url in urls {
            if let Some(first) = seen.insert((url.host.clone(), url.port), flag) {
                return Err(ConfigError::PortClash {
                    first,
                    second: flag,
                    authority: url.authority(),
                });
            }
        }
    }
    Ok(())
}

impl ServeConfig {
    /// Applies defaults to `s` and checks the result.
    pub fn resolve(s: Settings) -> Result<ServeConfig, ConfigError> {
        let name = s.name.unwrap_or_else(|| "default".into());
        if name.is_empty() || name.contains(['=', ',']) {
            return Err(ConfigError::BadName);
        }
        let data_dir = s
            .data_dir
            .unwrap_or_else(|| PathBuf::from(format!("{name}.keel")));
        let listen_client_urls = urls(
            "listen-client-urls",
            s.listen_client_urls
                .as_deref()
                .unwrap_or("http://127.0.0.1:2379"),
        )?;
        let advertise_client_urls = advertised(
            s.advertise_client_urls.as_deref(),
            "advertise-client-urls",
            &listen_client_urls,
            "listen-client-urls",
        )?;
        let listen_peer_urls = urls(
            "listen-peer-urls",
            s.listen_peer_urls
                .as_deref()
                .unwrap_or("http://127.0.0.1:2380"),
        )?;
        let initial_advertise_peer_urls = advertised(
            s.initial_advertise_peer_urls.as_deref(),
            "initial-advertise-peer-urls",
            &listen_peer_urls,
            "listen-peer-urls",
        )?;
        let listen_metrics_urls = match s.listen_metrics_urls.as_deref() {
            Some(text) => {
                HttpUrl::parse_list(text).map_err(|(value, why)| ConfigError::BadUrl {
                    flag: "listen-metrics-urls",
                    value,
                    why,
                })?
            }
            None => Vec::new(),
        };
        if let Some(url) = listen_metrics_urls.iter().find(|u| u.tls) {
            return Err(ConfigError::HttpsMetrics {
                url: url.to_string(),
            });
        }
        check_ports(&[
            ("listen-client-urls", &listen_client_urls),
            ("listen-peer-urls", &listen_peer_urls),
            ("listen-metrics-urls", &listen_metrics_urls),
        ])?;

        let initial_cluster = match s.initial_cluster.as_deref() {
            Some(text) => parse_cluster(text)?,
            None => BTreeMap::from([(name.clone(), initial_advertise_peer_urls.clone())]),
        };
        let mine = initial_cluster
            .get(&name)
            .ok_or_else(|| ConfigError::NotInCluster {
                name: name.clone(),
                listed: initial_cluster
                    .keys()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let (mut a, mut b) = (mine.clone(), initial_advertise_peer_urls.clone());
        a.sort_by_key(ToString::to_string);
        b.sort_by_key(ToString::to_string);
        if a != b {
            return Err(ConfigError::PeerUrlMismatch {
                name: name.clone(),
                in_cluster: join(mine),
                advertised: join(&initial_advertise_peer_urls),
            });
        }
        let initial_cluster_token = s
            .initial_cluster_token
            .unwrap_or_else(|| "keel-cluster".into());
        if initial_cluster_token.is_empty() {
            return Err(ConfigError::EmptyToken);
        }

        let heartbeat_ms = s.heartbeat_interval.unwrap_or(50);
        let election_ms = s.election_timeout.unwrap_or(400);
        let snapshot_count = s.snapshot_count.unwrap_or(100_000);
        for (flag, value) in [
            ("heartbeat-interval", heartbeat_ms),
            ("snapshot-count", snapshot_count),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero { flag });
            }
        }
        if election_ms < heartbeat_ms * ELECTION_HEARTBEATS_MIN {
            return Err(ConfigError::ElectionTooShort {
                election_ms,
                heartbeat_ms,
            });
        }
        let watch_progress_notify_interval = s
            .experimental_watch_progress_notify_interval
            .as_deref()
            .map(parse_go_duration)
            .transpose()
            .map_err(|error| ConfigError::BadDuration {
                flag: "experimental-watch-progress-notify-interval",
                error,
            })?;
        let revision_check_every = s
            .experimental_auto_compaction_revision_check_interval
            .as_deref()
            .map(parse_go_duration)
            .transpose()
            .map_err(|error| ConfigError::BadDuration {
                flag: "experimental-auto-compaction-revision-check-interval",
                error,
            })?
            .unwrap_or(REVISION_CHECK_EVERY_DEFAULT);
        if revision_check_every.is_zero() {
            return Err(ConfigError::Zero {
                flag: "experimental-auto-compaction-revision-check-interval",
            });
        }
        let auto_compaction = AutoCompaction::parse(
            s.auto_compaction_mode.as_deref().unwrap_or("periodic"),
            s.auto_compaction_retention.as_deref().unwrap_or("0"),
            revision_check_every,
        )
        .map_err(ConfigError::BadAutoCompaction)?;
        Ok(ServeConfig {
            name,
            data_dir,
            listen_client_urls,
            advertise_client_urls,
            listen_peer_urls,
            initial_advertise_peer_urls,
            initial_cluster,
            initial_cluster_state: s.initial_cluster_state.unwrap_or_default(),
            initial_cluster_token,
            force_new_cluster: s.force_new_cluster.unwrap_or(false),
            heartbeat_interval: Duration::from_millis(heartbeat_ms),
            election_timeout: Duration::from_millis(election_ms),
            snapshot_count,
            watch_progress_notify_interval,
            quota_backend_bytes: s.quota_backend_bytes.unwrap_or(0),
            auto_compaction,
            listen_metrics_urls,
            client_tls: TlsConfig {
                cert_file: s.cert_file,
                key_file: s.key_file,
                trusted_ca_file: s.trusted_ca_file,
                client_cert_auth: s.client_cert_auth.unwrap_or(false),
                allowed_cn: None,
            },
            peer_tls: TlsConfig {
                cert_file: s.peer_cert_file,
                key_file: s.peer_key_file,
                trusted_ca_file: s.peer_trusted_ca_file,
                client_cert_auth: s.peer_client_cert_auth.unwrap_or(false),
                allowed_cn: s.peer_cert_allowed_cn,
            },
            auth_token: s.auth_token,
            auth_token_ttl: s.auth_token_ttl.map(Duration::from_secs),
            bcrypt_cost: s.bcrypt_cost,
            log_level: s.log_level.unwrap_or_default(),
            log_format: s.log_format.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three(name: &str) -> Settings {
        let port = match name {
            "m1" => 2380,
            "m2" => 2480,
            _ => 2580,
        };
        Settings {
            name: Some(name.into()),
            listen_client_urls: Some(format!("http://127.0.0.1:{}", port - 1)),
            listen_peer_urls: Some(format!("http://127.0.0.1:{port}")),
            initial_cluster: Some(
                "m1=http://127.0.0.1:2380,m2=http://127.0.0.1:2480,m3=http://127.0.0.1:2580".into(),
            ),
            ..Settings::default()
        }
    }

    #[test]
    fn no_settings_give_a_single_member_cluster_on_2379() {
        let config = ServeConfig::resolve(Settings::default()).unwrap();
        assert_eq!(config.name, "default");
        assert_eq!(config.data_dir, PathBuf::from("default.keel"));
        assert_eq!(join(&config.advertise_client_urls), "http://127.0.0.1:2379");
        assert_eq!(
            join(&config.initial_cluster["default"]),
            "http://127.0.0.1:2380"
        );
        assert_eq!(config.initial_cluster.len(), 1);
        assert_eq!(config.election_timeout, Duration::from_millis(400));
    }

    #[test]
    fn watch_progress_interval_takes_etcds_duration_syntax() {
        let config = ServeConfig::resolve(Settings {
            experimental_watch_progress_notify_interval: Some("1m30s".into()),
            ..Settings::default()
        })
        .unwrap();
        assert_eq!(
            config.watch_progress_notify_interval,
            Some(Duration::from_secs(90))
        );
        let error = ServeConfig::resolve(Settings {
            experimental_watch_progress_notify_interval: Some("90".into()),
            ..Settings::default()
        })
        .unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with(
                "--experimental-watch-progress-notify-interval: \"90\" is not a duration"
            ),
            "{text}"
        );
    }

    #[test]
    fn disk_space_flags_default_as_etcds_and_parse_as_etcd_reads_them() {
        let defaults = ServeConfig::resolve(Settings::default()).unwrap();
        let member = keel_kv::server::MemberConfig::new("default", "default.keel");
        assert_eq!(defaults.quota_backend_bytes, member.quota_backend_bytes);
        assert_eq!(defaults.auto_compaction, member.auto_compaction);
        assert_eq!(defaults.auto_compaction, AutoCompaction::Off);

        let config = ServeConfig::resolve(Settings {
            quota_backend_bytes: Some(4 << 20),
            auto_compaction_mode: Some("revision".into()),
            auto_compaction_retention: Some("1000".into()),
            experimental_auto_compaction_revision_check_interval: Some("30s".into()),
            ..Settings::default()
        })
        .unwrap();
        assert_eq!(config.quota_backend_bytes, 4 << 20);
        assert_eq!(
            config.auto_compaction,
            AutoCompaction::Revision {
                retention: 1000,
                check_every: Duration::from_secs(30)
            }
        );
        let error = ServeConfig::resolve(Settings {
            auto_compaction_mode: Some("hourly".into()),
            auto_compaction_retention: Some("1".into()),
            ..Settings::default()
        })
        .unwrap_err();
        assert_eq!(error.to_string(), "unknown auto-compaction-mode \"hourly\"");
    }

    #[test]
    fn three_member_description_resolves() {
        let config = ServeConfig::resolve(three("m2")).unwrap();
        assert_eq!(config.initial_cluster.len(), 3);
        assert_eq!(config.data_dir, PathBuf::from("m2.keel"));
        assert_eq!(join(&config.advertise_client_urls), "http://127.0.0.1:2479");
    }

    #[test]
    fn member_missing_from_initial_cluster_is_named() {
        let error = ServeConfig::resolve(Settings {
            name: Some("m4".into()),
            ..three("m1")
        })
        .unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("--initial-cluster does not list this member `m4`"));
        assert!(text.contains("`m1`, `m2`, `m3`"), "{text}");
    }

    #[test]
    fn advertised_peer_url_must_match_the_cluster_entry() {
        let error = ServeConfig::resolve(Settings {
            listen_peer_urls: Some("http://127.0.0.1:9999".into()),
            ..three("m1")
        })
        .unwrap_err();
        assert!(
            matches!(error, ConfigError::PeerUrlMismatch { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("--initial-advertise-peer-urls"));
    }

    #[test]
    fn short_election_timeout_says_the_minimum() {
        let error = ServeConfig::resolve(Settings {
            heartbeat_interval: Some(100),
            election_timeout: Some(300),
            ..Settings::default()
        })
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "--election-timeout (300 ms) must be at least 5 × --heartbeat-interval (100 ms); \
             raise --election-timeout to 500 or lower --heartbeat-interval"
        );
    }

    #[test]
    fn bad_url_names_its_flag() {
        let error = ServeConfig::resolve(Settings {
            listen_client_urls: Some("127.0.0.1:2379".into()),
            ..Settings::default()
        })
        .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("--listen-client-urls: `127.0.0.1:2379`")
        );
    }

    #[test]
    fn wildcard_listen_needs_an_advertised_url() {
        let error = ServeConfig::resolve(Settings {
            listen_client_urls: Some("http://0.0.0.0:2379".into()),
            ..Settings::default()
        })
        .unwrap_err();
        assert!(error.to_string().contains("set --advertise-client-urls"));
    }

    #[test]
    fn same_port_for_clients_and_peers_is_refused() {
        let error = ServeConfig::resolve(Settings {
            listen_peer_urls: Some("http://127.0.0.1:2379".into()),
            ..Settings::default()
        })
        .unwrap_err();
        assert!(matches!(error, ConfigError::PortClash { .. }), "{error}");
    }

    #[test]
    fn one_peer_url_for_two_members_is_refused() {
        let error = ServeConfig::resolve(Settings {
            initial_cluster: Some("default=http://127.0.0.1:2380,b=http://127.0.0.1:2380".into()),
            ..Settings::default()
        })
        .unwrap_err();
        assert!(
            matches!(error, ConfigError::SharedPeerUrl { .. }),
            "{error}"
        );
    }
}
