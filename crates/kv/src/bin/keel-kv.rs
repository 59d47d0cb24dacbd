//! `keel-kv`: one member of a Keel KV cluster, speaking etcd's v3 API.
//! A thin wrapper over [`keel_kv::server::run`]; the flags are etcd's.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use keel_kv::server::{ClusterState, MemberConfig, TlsConfig, parse_go_duration, run};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "A Keel KV member: an etcd-compatible replicated key-value store"
)]
struct Args {
    /// This member's name (must appear in --initial-cluster).
    #[arg(long, default_value = "default")]
    name: String,
    /// Where the member keeps its state.
    #[arg(long, default_value = "default.keel")]
    data_dir: PathBuf,
    /// Where clients connect, comma separated (e.g. http://127.0.0.1:2379,
    /// or https:// with --cert-file and --key-file).
    #[arg(long, default_value = "http://localhost:2379")]
    listen_client_urls: String,
    /// Client URLs to tell others; default: the bound listen addresses.
    #[arg(long, default_value = "")]
    advertise_client_urls: String,
    /// Where peers connect (one URL).
    #[arg(long, default_value = "http://localhost:2380")]
    listen_peer_urls: String,
    /// Peer URLs to tell others; they also determine this member's ID.
    #[arg(long, default_value = "")]
    initial_advertise_peer_urls: String,
    /// Every founding member as name=peer-url, comma separated.
    #[arg(long, default_value = "default=http://localhost:2380")]
    initial_cluster: String,
    /// `new` to bootstrap, `existing` to join a cluster that added this member.
    #[arg(long, default_value = "new")]
    initial_cluster_state: ClusterStateArg,
    /// Names the cluster; members of another cluster are refused.
    #[arg(long, default_value = "etcd-cluster")]
    initial_cluster_token: String,
    /// Restart as the only voter of the cluster, keeping this member's data
    /// (to recover a cluster that lost its quorum; unsafe).
    #[arg(long)]
    force_new_cluster: bool,
    /// Milliseconds between leader heartbeats [default: `MemberConfig`'s, 50].
    #[arg(long)]
    heartbeat_interval: Option<u64>,
    /// Milliseconds without a leader before an election [default:
    /// `MemberConfig`'s, 400].
    #[arg(long)]
    election_timeout: Option<u64>,
    /// Committed entries between Raft snapshots.
    #[arg(long, default_value_t = 100_000)]
    snapshot_count: u64,
    /// The largest request accepted, in bytes.
    #[arg(long, default_value_t = keel_kv::service::MAX_REQUEST_BYTES_DEFAULT)]
    max_request_bytes: usize,
    /// The period of watch progress notifications, as etcd writes durations
    /// (e.g. 10m, 500ms) [default: `MemberConfig`'s, 10m].
    #[arg(long, value_parser = parse_go_duration)]
    experimental_watch_progress_notify_interval: Option<Duration>,
    /// The store's size, in bytes, past which writes are refused and a
    /// NOSPACE alarm raised (0: etcd's default, 2 GiB; negative: no quota).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    quota_backend_bytes: i64,
    /// `periodic` (keep a period of history) or `revision` (keep a number
    /// of revisions).
    #[arg(long, default_value = "periodic")]
    auto_compaction_mode: String,
    /// How much history auto-compaction keeps: periodic mode, hours (`1`)
    /// or a duration (`30m`); revision mode, revisions (`1000`); 0: off.
    #[arg(long, default_value = "0")]
    auto_compaction_retention: String,
    /// How often revision-mode auto-compaction looks (Keel only; etcd
    /// always looks every 5m).
    #[arg(long, value_parser = parse_go_duration)]
    experimental_auto_compaction_revision_check_interval: Option<Duration>,
    /// The member's certificate for https client URLs (PEM).
    #[arg(long)]
    cert_file: Option<PathBuf>,
    /// The private key of --cert-file (PEM).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Require client certificates signed by --trusted-ca-file.
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    client_cert_auth: bool,
    /// CA certificates (PEM) that sign client certificates; as in etcd,
    /// giving it also requires client certificates.
    #[arg(long)]
    trusted_ca_file: Option<PathBuf>,
    /// The member's certificate for https peer URLs (PEM), presented to
    /// other members too.
    #[arg(long)]
    peer_cert_file: Option<PathBuf>,
    /// The private key of --peer-cert-file (PEM).
    #[arg(long)]
    peer_key_file: Option<PathBuf>,
    /// Require peer certificates signed by --peer-trusted-ca-file.
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    peer_client_cert_auth: bool,
    /// CA certificates (PEM) that sign the members' peer certificates.
    #[arg(long)]
    peer_trusted_ca_file: Option<PathBuf>,
    /// Admit only peer certificates with this subject common name.
    #[arg(long)]
    peer_cert_allowed_cn: Option<String>,
    /// The kind of auth token: `simple` (the only kind served).
    #[arg(long, default_value = "simple")]
    auth_token: String,
    /// Seconds an auth token lives unused.
    #[arg(long, default_value_t = 300)]
    auth_token_ttl: u64,
    /// The bcrypt cost of password hashes (4 to 31).
    #[arg(long, default_value_t = keel_kv::auth::BCRYPT_COST_DEFAULT)]
    bcrypt_cost: u32,
}

#[derive(Clone, Debug)]
struct ClusterStateArg(ClusterState);

impl std::str::FromStr for ClusterStateArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.parse().map(ClusterStateArg).map_err(|e| format!("{e}"))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let defaults = MemberConfig::new(args.name.clone(), args.data_dir.clone());
    let config = MemberConfig {
        listen_client_urls: MemberConfig::parse_urls(&args.listen_client_urls),
        advertise_client_urls: MemberConfig::parse_urls(&args.advertise_client_urls),
        listen_peer_urls: MemberConfig::parse_urls(&args.listen_peer_urls),
        initial_advertise_peer_urls: MemberConfig::parse_urls(&args.initial_advertise_peer_urls),
        initial_cluster: MemberConfig::parse_initial_cluster(&args.initial_cluster)?,
        initial_cluster_state: args.initial_cluster_state.0,
        initial_cluster_token: args.initial_cluster_token,
        force_new_cluster: args.force_new_cluster,
        heartbeat_interval: args
            .heartbeat_interval
            .map_or(defaults.heartbeat_interval, Duration::from_millis),
        election_timeout: args
            .election_timeout
            .map_or(defaults.election_timeout, Duration::from_millis),
        snapshot_count: args.snapshot_count,
        max_request_bytes: args.max_request_bytes,
        watch_progress_notify_interval: args
            .experimental_watch_progress_notify_interval
            .unwrap_or(defaults.watch_progress_notify_interval),
        client_tls: TlsConfig {
            cert_file: args.cert_file,
            key_file: args.key_file,
            trusted_ca_file: args.trusted_ca_file,
            client_cert_auth: args.client_cert_auth,
            allowed_cn: None,
        },
        peer_tls: TlsConfig {
            cert_file: args.peer_cert_file,
            key_file: args.peer_key_file,
            trusted_ca_file: args.peer_trusted_ca_file,
            client_cert_auth: args.peer_client_cert_auth,
            allowed_cn: args.peer_cert_allowed_cn,
        },
        quota_backend_bytes: args.quota_backend_bytes,
        auto_compaction: MemberConfig::parse_auto_compaction(
            &args.auto_compaction_mode,
            &args.auto_compaction_retention,
            args.experimental_auto_compaction_revision_check_interval,
        )?,
        auth_token: args.auth_token,
        auth_token_ttl: Duration::from_secs(args.auth_token_ttl),
        bcrypt_cost: args.bcrypt_cost,
        ..defaults
    };
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler at startup");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    run(config, shutdown).await?;
    Ok(())
}
