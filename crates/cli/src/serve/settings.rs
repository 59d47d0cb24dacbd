//! A member's settings as the user gives them: one struct that is both the
//! `keel serve` flags (each with its `KEEL_*` variable) and the keys of the
//! optional TOML file, so the three sources cannot drift apart.
//!
//! Every field is optional here; defaults are applied after the sources
//! are merged (`config.rs`), so that "not given" is never confused with
//! "given the default".

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;

use crate::logging::{LogFormat, LogLevel};

/// Whether a member bootstraps a new cluster or joins a running one.
#[derive(clap::ValueEnum, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClusterState {
    /// Bootstrap a new cluster whose members are --initial-cluster.
    #[default]
    New,
    /// Join a running cluster that already added this member (`keel member
    /// add`).
    Existing,
}

/// The flags of `keel serve`. In the TOML file, write each key as its flag
/// without the dashes in front, e.g. `name = "m1"`,
/// `listen-client-urls = "http://127.0.0.1:2379"`, `heartbeat-interval = 100`.
#[derive(Args, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    /// This member's name, unique in the cluster [default: default].
    #[arg(long, env = "KEEL_NAME", value_name = "NAME")]
    pub name: Option<String>,

    /// Where the member keeps its log, snapshots and key-value data
    /// [default: ./NAME.keel].
    #[arg(long, env = "KEEL_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Comma-separated URLs to serve clients (the etcd API) on
    /// [default: http://127.0.0.1:2379].
    #[arg(long, env = "KEEL_LISTEN_CLIENT_URLS", value_name = "URLS")]
    pub listen_client_urls: Option<String>,

    /// Comma-separated client URLs this member announces to clients and
    /// other members [default: --listen-client-urls].
    #[arg(long, env = "KEEL_ADVERTISE_CLIENT_URLS", value_name = "URLS")]
    pub advertise_client_urls: Option<String>,

    /// Comma-separated URLs to serve other members (Raft traffic) on
    /// [default: http://127.0.0.1:2380].
    #[arg(long, env = "KEEL_LISTEN_PEER_URLS", value_name = "URLS")]
    pub listen_peer_urls: Option<String>,

    /// Comma-separated peer URLs this member announces to the other members;
    /// must match its entry in --initial-cluster [default: --listen-peer-urls].
    #[arg(long, env = "KEEL_INITIAL_ADVERTISE_PEER_URLS", value_name = "URLS")]
    pub initial_advertise_peer_urls: Option<String>,

    /// Every member of the initial cluster as NAME=PEER-URL, comma-separated,
    /// e.g. m1=http://127.0.0.1:2380,m2=http://127.0.0.1:2480
    /// [default: NAME=--initial-advertise-peer-urls, a one-member cluster].
    #[arg(long, env = "KEEL_INITIAL_CLUSTER", value_name = "MEMBERS")]
    pub initial_cluster: Option<String>,

    /// `new` to bootstrap the cluster in --initial-cluster, `existing` to
    /// join a running cluster after `keel member add` [default: new].
    #[arg(long, env = "KEEL_INITIAL_CLUSTER_STATE", value_name = "STATE")]
    pub initial_cluster_state: Option<ClusterState>,

    /// A token unique to this cluster, so that members of two clusters
    /// bootstrapped from the same --initial-cluster refuse each other
    /// [default: keel-cluster].
    #[arg(long, env = "KEEL_INITIAL_CLUSTER_TOKEN", value_name = "TOKEN")]
    pub initial_cluster_token: Option<String>,

    /// Restart this member as the only voter of its cluster, keeping its
    /// data, to recover a cluster that lost its quorum for good; then add
    /// members back with `keel member add`. Unsafe: writes only the lost
    /// members held are gone, and they must not come back with their old
    /// data [default: false].
    #[arg(long, env = "KEEL_FORCE_NEW_CLUSTER", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub force_new_cluster: Option<bool>,

    /// Milliseconds between a leader's heartbeats [default: 50].
    #[arg(long, env = "KEEL_HEARTBEAT_INTERVAL", value_name = "MS")]
    pub heartbeat_interval: Option<u64>,

    /// Milliseconds a follower waits without hearing from a leader before it
    /// campaigns; at least 5 × --heartbeat-interval [default: 400].
    #[arg(long, env = "KEEL_ELECTION_TIMEOUT", value_name = "MS")]
    pub election_timeout: Option<u64>,

    /// Committed entries between two snapshots; taking one lets the member
    /// drop the log before the previous one, so the log holds one to two
    /// intervals [default: 100000].
    #[arg(long, env = "KEEL_SNAPSHOT_COUNT", value_name = "ENTRIES")]
    pub snapshot_count: Option<u64>,

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

    /// Comma-separated URLs to serve /metrics (Prometheus), /health,
    /// /livez, /readyz and /version on over plain HTTP, apart from the
    /// client port, which serves them too [default: none].
    #[arg(long, env = "KEEL_LISTEN_METRICS_URLS", value_name = "URLS")]
    pub listen_metrics_urls: Option<String>,

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

    /// The kind of auth token, as etcd writes it: `simple` (the only kind
    /// served; a `jwt,…` setting is refused) [default: simple].
    #[arg(long, env = "KEEL_AUTH_TOKEN", value_name = "KIND")]
    pub auth_token: Option<String>,

    /// Seconds a simple auth token lives without use [default: 300].
    #[arg(long, env = "KEEL_AUTH_TOKEN_TTL", value_name = "SECONDS")]
    pub auth_token_ttl: Option<u64>,

    /// The bcrypt cost of password hashes, 4 to 31; lower it only for
    /// tests [default: 10].
    #[arg(long, env = "KEEL_BCRYPT_COST", value_name = "COST")]
    pub bcrypt_cost: Option<u32>,

    /// The least severe log events to print; RUST_LOG overrides it
    /// [default: info].
    #[arg(long, env = "KEEL_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<LogLevel>,

    /// `human` for readable lines, `json` for one JSON object per line
    /// [default: human].
    #[arg(long, env = "KEEL_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
}

/// Why the `--config` file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("--config {path}: cannot read it: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "--config {path}: {source}\nkeys are `keel serve` flags without the leading --, e.g. data-dir = \"./m1.keel\""
    )]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
}

impl Settings {
    /// Reads a TOML settings file.
    pub fn from_file(path: &Path) -> Result<Settings, FileError> {
        let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| FileError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    /// These settings, with `lower`'s filling the ones not given here.
    pub fn or(self, lower: Settings) -> Settings {
        Settings {
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
            experimental_watch_progress_notify_interval: self
                .experimental_watch_progress_notify_interval
                .or(lower.experimental_watch_progress_notify_interval),
            quota_backend_bytes: self.quota_backend_bytes.or(lower.quota_backend_bytes),
            auto_compaction_mode: self.auto_compaction_mode.or(lower.auto_compaction_mode),
            auto_compaction_retention: self
                .auto_compaction_retention
                .or(lower.auto_compaction_retention),
            experimental_auto_compaction_revision_check_interval: self
                .experimental_auto_compaction_revision_check_interval
                .or(lower.experimental_auto_compaction_revision_check_interval),
            listen_metrics_urls: self.listen_metrics_urls.or(lower.listen_metrics_urls),
            cert_file: self.cert_file.or(lower.cert_file),
            key_file: self.key_file.or(lower.key_file),
            client_cert_auth: self.client_cert_auth.or(lower.client_cert_auth),
            trusted_ca_file: self.trusted_ca_file.or(lower.trusted_ca_file),
            peer_cert_file: self.peer_cert_file.or(lower.peer_cert_file),
            peer_key_file: self.peer_key_file.or(lower.peer_key_file),
            peer_client_cert_auth: self.peer_client_cert_auth.or(lower.peer_client_cert_auth),
            peer_trusted_ca_file: self.peer_trusted_ca_file.or(lower.peer_trusted_ca_file),
            peer_cert_allowed_cn: self.peer_cert_allowed_cn.or(lower.peer_cert_allowed_cn),
            auth_token: self.auth_token.or(lower.auth_token),
            auth_token_ttl: self.auth_token_ttl.or(lower.auth_token_ttl),
            bcrypt_cost: self.bcrypt_cost.or(lower.bcrypt_cost),
            log_level: self.log_level.or(lower.log_level),
            log_format: self.log_format.or(lower.log_format),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_keys_are_the_flag_names() {
        let settings: Settings = toml::from_str(
            r#"
            name = "m1"
            data-dir = "/tmp/m1"
            initial-cluster-state = "existing"
            heartbeat-interval = 50
            log-format = "json"
            "#,
        )
        .unwrap();
        assert_eq!(settings.name.as_deref(), Some("m1"));
        assert_eq!(settings.data_dir, Some(PathBuf::from("/tmp/m1")));
        assert_eq!(settings.initial_cluster_state, Some(ClusterState::Existing));
        assert_eq!(settings.heartbeat_interval, Some(50));
        assert_eq!(settings.log_format, Some(LogFormat::Json));
    }

    #[test]
    fn unknown_file_key_is_refused() {
        let error = toml::from_str::<Settings>("nmae = \"m1\"").unwrap_err();
        assert!(error.to_string().contains("nmae"), "{error}");
    }

    #[test]
    fn given_setting_beats_the_lower_source() {
        let high = Settings {
            name: Some("flag".into()),
            ..Settings::default()
        };
        let low = Settings {
            name: Some("file".into()),
            snapshot_count: Some(7),
            ..Settings::default()
        };
        let merged = high.or(low);
        assert_eq!(merged.name.as_deref(), Some("flag"));
        assert_eq!(merged.snapshot_count, Some(7));
    }
}
