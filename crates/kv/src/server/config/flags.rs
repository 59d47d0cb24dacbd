//! [`MemberFlags`]: a member's settings as the user gives them, one struct
//! that is the flags of both `keel serve` and the `keel-kv` binary (each
//! with its `KEEL_*` variable) and the keys of `keel serve`'s TOML file,
//! so that no two of them can drift apart. Flag names are etcd's.
//!
//! Every field is optional here; defaults are applied by
//! [`MemberFlags::resolve`] from [`MemberConfig::new`] and the constants it
//! reads, after the sources are merged, so that "not given" is never
//! confused with "given the default".

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use super::super::duration::parse_go_duration;
use super::super::urls::HttpUrl;
use super::error::ConfigError;
use super::{ClusterState, MemberConfig, TlsConfig};
use crate::service::{AutoCompaction, REVISION_CHECK_EVERY_DEFAULT};

fn heartbeat_help() -> String {
    format!(
        "Milliseconds between a leader's heartbeats, which is also the Raft tick [default: {}]",
        keel::HEARTBEAT_INTERVAL_DEFAULT.as_millis()
    )
}

fn election_help() -> String {
    format!(
        "Milliseconds a follower waits without hearing from a leader before it campaigns; at least 5 × --heartbeat-interval [default: {}]",
        keel::ELECTION_TIMEOUT_DEFAULT.as_millis()
    )
}

fn snapshot_count_help() -> String {
    format!(
        "Committed entries between two snapshots; taking one lets the member drop the log before the previous one, so the log holds one to two intervals [default: {}]",
        keel::SNAPSHOT_ENTRIES_DEFAULT
    )
}

/// The flags of a member. In `keel serve`'s TOML file, write each key as
/// its flag without the dashes in front, e.g. `name = "m1"`,
/// `listen-client-urls = "http://127.0.0.1:2379"`, `heartbeat-interval = 50`.
#[derive(Args, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MemberFlags {
    /// This member's name, unique in the cluster [default: default].
    #[arg(long, env = "KEEL_NAME", value_name = "NAME")]
    pub name: Option<String>,

    /// Where the member keeps its log, snapshots and key-value data
    /// [default: ./NAME.keel].
    #[arg(long, env = "KEEL_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Comma-separated URLs to serve clients (the etcd API) on; port 0
    /// picks a free port [default: http://127.0.0.1:2379].
    #[arg(long, env = "KEEL_LISTEN_CLIENT_URLS", value_name = "URLS")]
    pub listen_client_urls: Option<String>,

    /// Comma-separated client URLs this member announces to clients and
    /// other members [default: the bound --listen-client-urls].
    #[arg(long, env = "KEEL_ADVERTISE_CLIENT_URLS", value_name = "URLS")]
    pub advertise_client_urls: Option<String>,

    /// The URL to serve other members (Raft traffic) on
    /// [default: http://127.0.0.1:2380].
    #[arg(long, env = "KEEL_LISTEN_PEER_URLS", value_name = "URLS")]
    pub listen_peer_urls: Option<String>,

    /// Comma-separated peer URLs this member announces to the other members;
    /// must match its entry in --initial-cluster; they determine this
    /// member's ID [default: the bound --listen-peer-urls].
    #[arg(long, env = "KEEL_INITIAL_ADVERTISE_PEER_URLS", value_name = "URLS")]
    pub initial_advertise_peer_urls: Option<String>,

    /// Every member of the initial cluster as NAME=PEER-URL, comma-separated,
    /// e.g. m1=http://127.0.0.1:2380,m2=http://127.0.0.1:2480
    /// [default: NAME=--initial-advertise-peer-urls, a one-member cluster].
    #[arg(long, env = "KEEL_INITIAL_CLUSTER", value_name = "MEMBERS")]
    pub initial_cluster: Option<String>,

    /// `new` to bootstrap the cluster in --initial-cluster, `existing` to
    /// join a running cluster after `member add` [default: new].
    #[arg(long, env = "KEEL_INITIAL_CLUSTER_STATE", value_name = "STATE")]
    pub initial_cluster_state: Option<ClusterState>,

    /// A token unique to this cluster, so that members of two clusters
    /// bootstrapped from the same --initial-cluster refuse each other; it
    /// enters every member ID, so give every start of every member the
    /// same one [default: keel-cluster].
    #[arg(long, env = "KEEL_INITIAL_CLUSTER_TOKEN", value_name = "TOKEN")]
    pub initial_cluster_token: Option<String>,

    /// Restart this member as the only voter of its cluster, keeping its
    /// data, to recover a cluster that lost its quorum for good; then add
    /// members back with `member add`. Unsafe: writes only the lost
    /// members held are gone, and they must not come back with their old
    /// data [default: false].
    #[arg(long, env = "KEEL_FORCE_NEW_CLUSTER", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub force_new_cluster: Option<bool>,

    #[arg(long, env = "KEEL_HEARTBEAT_INTERVAL", value_name = "MS", help = heartbeat_help())]
    pub heartbeat_interval: Option<u64>,

    #[arg(long, env = "KEEL_ELECTION_TIMEOUT", value_name = "MS", help = election_help())]
    pub election_timeout: Option<u64>,

    #[arg(long, env = "KEEL_SNAPSHOT_COUNT", value_name = "ENTRIES", help = snapshot_count_help())]
    pub snapshot_count: Option<u64>,

    /// The largest request a client may send, in bytes (a write's key,
    /// value and framing) [default: 1.5 MiB, etcd's].
    #[arg(long, env = "KEEL_MAX_REQUEST_BYTES", value_name = "BYTES")]
    pub max_request_bytes: Option<usize>,

    /// The period of watch progress notifications, written as etcd writes
    /// durations (500ms, 10s, 10m) [default: 10m].
    #[arg(
        long,
        env = "KEEL_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL",
        value_name = "DURATION"
    )]
    pub experimental_watch_progress_notify_interval: Option<String>,

    /// The store's size in bytes past which writes are refused and a
    /// NOSPACE alarm is raised; 0 means 2 GiB, a negative value no quota
    /// [default: 0].
    #[arg(
        long,
        env = "KEEL_QUOTA_BACKEND_BYTES",
        value_name = "BYTES",
        allow_negative_numbers = true
    )]
    pub quota_backend_bytes: Option<i64>,

    /// Keel only (etcd has no such flag): the free space this member keeps
    /// on the filesystem holding its data directory; below it, the member
    /// raises a NOSPACE alarm, so that the cluster refuses writes that
    /// grow the store before this disk is full; 0 turns the watch off
    /// [default: 268435456, 256 MiB].
    #[arg(long, env = "KEEL_DISK_RESERVE_BYTES", value_name = "BYTES")]
    pub disk_reserve_bytes: Option<u64>,

    /// `periodic` (keep a period of history) or `revision` (keep a number
    /// of revisions) [default: periodic].
    #[arg(long, env = "KEEL_AUTO_COMPACTION_MODE", value_name = "MODE")]
    pub auto_compaction_mode: Option<String>,

    /// History auto-compaction keeps: in periodic mode hours (1) or a
    /// duration (30m), in revision mode revisions (1000); 0 turns it off
    /// [default: 0].
    #[arg(long, env = "KEEL_AUTO_COMPACTION_RETENTION", value_name = "RETENTION")]
    pub auto_compaction_retention: Option<String>,

    /// How often revision-mode auto-compaction looks (Keel only; etcd
    /// always looks every 5m) [default: 5m].
    #[arg(
        long,
        env = "KEEL_EXPERIMENTAL_AUTO_COMPACTION_REVISION_CHECK_INTERVAL",
        value_name = "DURATION"
    )]
    pub experimental_auto_compaction_revision_check_interval: Option<String>,

    /// This member's certificate (PEM) for https client URLs; also the
    /// certificate it presents when it calls another member's client URL.
    #[arg(long, env = "KEEL_CERT_FILE", value_name = "FILE")]
    pub cert_file: Option<PathBuf>,

    /// The private key (PEM) of --cert-file.
    #[arg(long, env = "KEEL_KEY_FILE", value_name = "FILE")]
    pub key_file: Option<PathBuf>,

    /// Require every client to present a certificate signed by
    /// --trusted-ca-file [default: false].
    #[arg(long, env = "KEEL_CLIENT_CERT_AUTH", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub client_cert_auth: Option<bool>,

    /// CA certificates (PEM) that sign client certificates. As in etcd
    /// 3.4, giving it also requires client certificates.
    #[arg(long, env = "KEEL_TRUSTED_CA_FILE", value_name = "FILE")]
    pub trusted_ca_file: Option<PathBuf>,

    /// Revocation lists (PEM) of client certificates: a client whose
    /// certificate they name is refused. Needs --trusted-ca-file.
    #[arg(long, env = "KEEL_CLIENT_CRL_FILE", value_name = "FILE")]
    pub client_crl_file: Option<PathBuf>,

    /// Serve https client URLs with a self-signed certificate generated in
    /// the data directory when --cert-file is not given; clients must skip
    /// verifying it [default: false].
    #[arg(long, env = "KEEL_AUTO_TLS", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub auto_tls: Option<bool>,

    /// This member's certificate (PEM) for https peer URLs, presented to
    /// the other members too.
    #[arg(long, env = "KEEL_PEER_CERT_FILE", value_name = "FILE")]
    pub peer_cert_file: Option<PathBuf>,

    /// The private key (PEM) of --peer-cert-file.
    #[arg(long, env = "KEEL_PEER_KEY_FILE", value_name = "FILE")]
    pub peer_key_file: Option<PathBuf>,

    /// Require every member calling this one to present a certificate
    /// signed by --peer-trusted-ca-file [default: false].
    #[arg(long, env = "KEEL_PEER_CLIENT_CERT_AUTH", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub peer_client_cert_auth: Option<bool>,

    /// CA certificates (PEM) that sign the members' peer certificates.
    #[arg(long, env = "KEEL_PEER_TRUSTED_CA_FILE", value_name = "FILE")]
    pub peer_trusted_ca_file: Option<PathBuf>,

    /// Admit only peer certificates whose subject common name is this.
    #[arg(long, env = "KEEL_PEER_CERT_ALLOWED_CN", value_name = "CN")]
    pub peer_cert_allowed_cn: Option<String>,

    /// Revocation lists (PEM) of peer certificates: a member whose
    /// certificate they name is refused. Needs --peer-trusted-ca-file.
    #[arg(long, env = "KEEL_PEER_CRL_FILE", value_name = "FILE")]
    pub peer_crl_file: Option<PathBuf>,

    /// Serve https peer URLs with a self-signed certificate generated in
    /// the data directory when --peer-cert-file is not given; members
    /// then encrypt their traffic but do not verify each other's
    /// certificates, as etcd's do [default: false].
    #[arg(long, env = "KEEL_PEER_AUTO_TLS", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub peer_auto_tls: Option<bool>,

    /// The kind of auth token: `simple` (the only kind served), optionally
    /// followed by `,option=value` pairs, which simple tokens ignore
    /// [default: simple].
    #[arg(long, env = "KEEL_AUTH_TOKEN", value_name = "KIND")]
    pub auth_token: Option<String>,

    /// Seconds an auth token lives unused [default: 300].
    #[arg(long, env = "KEEL_AUTH_TOKEN_TTL", value_name = "SECONDS")]
    pub auth_token_ttl: Option<u64>,

    /// The bcrypt cost of password hashes, 4 to 31 [default: 10].
    #[arg(long, env = "KEEL_BCRYPT_COST", value_name = "COST")]
    pub bcrypt_cost: Option<u32>,
}

/// Parses a URL flag's comma-separated list; given but empty is refused.
fn urls(flag: &'static str, text: Option<String>) -> Result<Option<Vec<HttpUrl>>, ConfigError> {
    let Some(text) = text else {
        return Ok(None);
    };
    let urls = HttpUrl::parse_list(&text).map_err(|(value, why)| ConfigError::BadUrl {
        flag,
        value,
        why,
    })?;
    if urls.is_empty() {
        return Err(ConfigError::NoUrl { flag });
    }
    Ok(Some(urls))
}

/// Parses a Go-style duration flag.
fn duration(flag: &'static str, text: Option<String>) -> Result<Option<Duration>, ConfigError> {
    text.as_deref()
        .map(parse_go_duration)
        .transpose()
        .map_err(|error| ConfigError::BadDuration { flag, error })
}

impl MemberFlags {
    /// These flags, with `lower`'s filling the ones not given here (flags
    /// over variables over the config file).
    pub fn or(self, lower: MemberFlags) -> MemberFlags {
        MemberFlags {
            name: self.name.or(lower.name),
            data_dir: self.data_dir.or(lower.data_dir),
            listen_client_urls: self.listen_client_urls.or(lower.listen_client_urls),
            advertise_client_urls: self.advertise_client_urls.or(lower.advertise_client_urls),
            listen_peer_urls: self.listen_peer_urls.or(lower.listen_peer_urls),
            initial_advertise_peer_urls: self
                .initial_advertise_peer_urls
                .or(lower.initial_advertise_peer_urls),
            initial_cluster: self.initial_cluster.or(lower.initial_cluster),
            initial_cluster_state: self.initial_cluster_state.or(lower.initial_cluster_state),
            initial_cluster_token: self.initial_cluster_token.or(lower.initial_cluster_token),
            force_new_cluster: self.force_new_cluster.or(lower.force_new_cluster),
            heartbeat_interval: self.heartbeat_interval.or(lower.heartbeat_interval),
            election_timeout: self.election_timeout.or(lower.election_timeout),
            snapshot_count: self.snapshot_count.or(lower.snapshot_count),
            max_request_bytes: self.max_request_bytes.or(lower.max_request_bytes),
            experimental_watch_progress_notify_interval: self
                .experimental_watch_progress_notify_interval
                .or(lower.experimental_watch_progress_notify_interval),
            quota_backend_bytes: self.quota_backend_bytes.or(lower.quota_backend_bytes),
            disk_reserve_bytes: self.disk_reserve_bytes.or(lower.disk_reserve_bytes),
            auto_compaction_mode: self.auto_compaction_mode.or(lower.auto_compaction_mode),
            auto_compaction_retention: self
                .auto_compaction_retention
                .or(lower.auto_compaction_retention),
            experimental_auto_compaction_revision_check_interval: self
                .experimental_auto_compaction_revision_check_interval
                .or(lower.experimental_auto_compaction_revision_check_interval),
            cert_file: self.cert_file.or(lower.cert_file),
            key_file: self.key_file.or(lower.key_file),
            client_cert_auth: self.client_cert_auth.or(lower.client_cert_auth),
            trusted_ca_file: self.trusted_ca_file.or(lower.trusted_ca_file),
            client_crl_file: self.client_crl_file.or(lower.client_crl_file),
            auto_tls: self.auto_tls.or(lower.auto_tls),
            peer_cert_file: self.peer_cert_file.or(lower.peer_cert_file),
            peer_key_file: self.peer_key_file.or(lower.peer_key_file),
            peer_client_cert_auth: self.peer_client_cert_auth.or(lower.peer_client_cert_auth),
            peer_trusted_ca_file: self.peer_trusted_ca_file.or(lower.peer_trusted_ca_file),
            peer_cert_allowed_cn: self.peer_cert_allowed_cn.or(lower.peer_cert_allowed_cn),
            peer_crl_file: self.peer_crl_file.or(lower.peer_crl_file),
            peer_auto_tls: self.peer_auto_tls.or(lower.peer_auto_tls),
            auth_token: self.auth_token.or(lower.auth_token),
            auth_token_ttl: self.auth_token_ttl.or(lower.auth_token_ttl),
            bcrypt_cost: self.bcrypt_cost.or(lower.bcrypt_cost),
        }
    }

    /// The member configuration these flags describe: each flag parsed,
    /// [`MemberConfig::new`]'s defaults for the rest, and the whole checked
    /// by [`MemberConfig::validate`].
    pub fn resolve(self) -> Result<MemberConfig, ConfigError> {
        let name = self.name.unwrap_or_else(|| "default".into());
        let data_dir = self
            .data_dir
            .unwrap_or_else(|| MemberConfig::data_dir_default(&name));
        let d = MemberConfig::new(name.clone(), data_dir);
        let listen_client_urls =
            urls("listen-client-urls", self.listen_client_urls)?.unwrap_or(d.listen_client_urls);
        let advertise_client_urls = urls("advertise-client-urls", self.advertise_client_urls)?
            .unwrap_or(d.advertise_client_urls);
        let listen_peer_urls =
            urls("listen-peer-urls", self.listen_peer_urls)?.unwrap_or(d.listen_peer_urls);
        let initial_advertise_peer_urls = urls(
            "initial-advertise-peer-urls",
            self.initial_advertise_peer_urls,
        )?
        .unwrap_or(d.initial_advertise_peer_urls);
        let initial_cluster = match self.initial_cluster.as_deref() {
            Some(text) => MemberConfig::parse_initial_cluster(text)?,
            None => {
                let mine = match initial_advertise_peer_urls.is_empty() {
                    true => &listen_peer_urls,
                    false => &initial_advertise_peer_urls,
                };
                mine.iter().map(|u| (name.clone(), u.clone())).collect()
            }
        };
        let revision_check_every = duration(
            "experimental-auto-compaction-revision-check-interval",
            self.experimental_auto_compaction_revision_check_interval,
        )?
        .unwrap_or(REVISION_CHECK_EVERY_DEFAULT);
        if revision_check_every.is_zero() {
            return Err(ConfigError::Zero {
                flag: "experimental-auto-compaction-revision-check-interval",
            });
        }
        let auto_compaction = match (self.auto_compaction_mode, self.auto_compaction_retention) {
            (None, None) => d.auto_compaction,
            (mode, retention) => AutoCompaction::parse(
                mode.as_deref().unwrap_or("periodic"),
                retention.as_deref().unwrap_or("0"),
                revision_check_every,
            )?,
        };
        let watch_progress_notify_interval = duration(
            "experimental-watch-progress-notify-interval",
            self.experimental_watch_progress_notify_interval,
        )?
        .unwrap_or(d.watch_progress_notify_interval);
        let config = MemberConfig {
            listen_client_urls,
            advertise_client_urls,
            listen_peer_urls,
            initial_advertise_peer_urls,
            initial_cluster,
            initial_cluster_state: self.initial_cluster_state.unwrap_or_default(),
            initial_cluster_token: self
                .initial_cluster_token
                .unwrap_or(d.initial_cluster_token),
            force_new_cluster: self.force_new_cluster.unwrap_or(d.force_new_cluster),
            heartbeat_interval: self
                .heartbeat_interval
                .map_or(d.heartbeat_interval, Duration::from_millis),
            election_timeout: self
                .election_timeout
                .map_or(d.election_timeout, Duration::from_millis),
            snapshot_count: self.snapshot_count.unwrap_or(d.snapshot_count),
            max_request_bytes: self.max_request_bytes.unwrap_or(d.max_request_bytes),
            watch_progress_notify_interval,
            quota_backend_bytes: self.quota_backend_bytes.unwrap_or(d.quota_backend_bytes),
            disk_reserve_bytes: self.disk_reserve_bytes.unwrap_or(d.disk_reserve_bytes),
            auto_compaction,
            client_tls: TlsConfig {
                cert_file: self.cert_file,
                key_file: self.key_file,
                trusted_ca_file: self.trusted_ca_file,
                client_cert_auth: self.client_cert_auth.unwrap_or(false),
                allowed_cn: None,
                crl_file: self.client_crl_file,
                auto_tls: self.auto_tls.unwrap_or(false),
            },
            peer_tls: TlsConfig {
                cert_file: self.peer_cert_file,
                key_file: self.peer_key_file,
                trusted_ca_file: self.peer_trusted_ca_file,
                client_cert_auth: self.peer_client_cert_auth.unwrap_or(false),
                allowed_cn: self.peer_cert_allowed_cn,
                crl_file: self.peer_crl_file,
                auto_tls: self.peer_auto_tls.unwrap_or(false),
            },
            auth_token: self.auth_token.unwrap_or(d.auth_token),
            auth_token_ttl: self
                .auth_token_ttl
                .map_or(d.auth_token_ttl, Duration::from_secs),
            bcrypt_cost: self.bcrypt_cost.unwrap_or(d.bcrypt_cost),
            ..d
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::urls::join;
    use super::*;

    fn three(name: &str) -> MemberFlags {
        let port = match name {
            "m1" => 2380,
            "m2" => 2480,
            _ => 2580,
        };
        MemberFlags {
            name: Some(name.into()),
            listen_client_urls: Some(format!("http://127.0.0.1:{}", port - 1)),
            listen_peer_urls: Some(format!("http://127.0.0.1:{port}")),
            initial_cluster: Some(
                "m1=http://127.0.0.1:2380,m2=http://127.0.0.1:2480,m3=http://127.0.0.1:2580".into(),
            ),
            ..MemberFlags::default()
        }
    }

    #[test]
    fn no_flags_give_the_default_member() {
        let config = MemberFlags::default().resolve().unwrap();
        assert_eq!(config, MemberConfig::new("default", "default.keel"));
        assert_eq!(join(&config.listen_client_urls), "http://127.0.0.1:2379");
        assert_eq!(join(&config.founders()[0].1), "http://127.0.0.1:2380");
    }

    #[test]
    fn three_member_description_resolves() {
        let config = three("m2").resolve().unwrap();
        assert_eq!(config.founders().len(), 3);
        assert_eq!(config.data_dir, PathBuf::from("m2.keel"));
        assert_eq!(join(&config.listen_client_urls), "http://127.0.0.1:2479");
    }

    #[test]
    fn member_missing_from_initial_cluster_is_named() {
        let error = MemberFlags {
            name: Some("m4".into()),
            ..three("m1")
        }
        .resolve()
        .unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("--initial-cluster does not list this member `m4`"));
        assert!(text.contains("`m1`, `m2`, `m3`"), "{text}");
    }

    #[test]
    fn advertised_peer_url_must_match_the_cluster_entry() {
        let error = MemberFlags {
            listen_peer_urls: Some("http://127.0.0.1:9999".into()),
            ..three("m1")
        }
        .resolve()
        .unwrap_err();
        assert!(
            matches!(error, ConfigError::PeerUrlMismatch { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("--initial-advertise-peer-urls"));
    }

    #[test]
    fn bad_url_names_its_flag() {
        let error = MemberFlags {
            listen_client_urls: Some("127.0.0.1:2379".into()),
            ..MemberFlags::default()
        }
        .resolve()
        .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("--listen-client-urls: `127.0.0.1:2379`")
        );
    }

    #[test]
    fn wildcard_listen_needs_an_advertised_url() {
        let error = MemberFlags {
            listen_client_urls: Some("http://0.0.0.0:2379".into()),
            ..MemberFlags::default()
        }
        .resolve()
        .unwrap_err();
        assert!(error.to_string().contains("set --advertise-client-urls"));
    }

    #[test]
    fn watch_progress_interval_takes_etcds_duration_syntax() {
        let config = MemberFlags {
            experimental_watch_progress_notify_interval: Some("1m30s".into()),
            ..MemberFlags::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(
            config.watch_progress_notify_interval,
            Duration::from_secs(90)
        );
        let error = MemberFlags {
            experimental_watch_progress_notify_interval: Some("90".into()),
            ..MemberFlags::default()
        }
        .resolve()
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
    fn disk_space_flags_parse_as_etcd_reads_them() {
        let config = MemberFlags {
            quota_backend_bytes: Some(4 << 20),
            disk_reserve_bytes: Some(64 << 20),
            auto_compaction_mode: Some("revision".into()),
            auto_compaction_retention: Some("1000".into()),
            experimental_auto_compaction_revision_check_interval: Some("30s".into()),
            ..MemberFlags::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(config.quota_backend_bytes, 4 << 20);
        assert_eq!(config.disk_reserve_bytes, 64 << 20);
        assert_eq!(
            MemberFlags::default().resolve().unwrap().disk_reserve_bytes,
            crate::service::DISK_RESERVE_BYTES_DEFAULT
        );
        assert_eq!(
            config.auto_compaction,
            AutoCompaction::Revision {
                retention: 1000,
                check_every: Duration::from_secs(30)
            }
        );
        let error = MemberFlags {
            auto_compaction_mode: Some("hourly".into()),
            auto_compaction_retention: Some("1".into()),
            ..MemberFlags::default()
        }
        .resolve()
        .unwrap_err();
        assert_eq!(error.to_string(), "unknown auto-compaction-mode \"hourly\"");
    }

    #[test]
    fn given_flag_beats_the_lower_source() {
        let high = MemberFlags {
            name: Some("flag".into()),
            ..MemberFlags::default()
        };
        let low = MemberFlags {
            name: Some("file".into()),
            snapshot_count: Some(7),
            ..MemberFlags::default()
        };
        let merged = high.or(low);
        assert_eq!(merged.name.as_deref(), Some("flag"));
        assert_eq!(merged.snapshot_count, Some(7));
    }
}
