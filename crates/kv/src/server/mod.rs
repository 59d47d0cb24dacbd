//! Running a Keel KV member: the library behind `keel-kv` and `keel serve`.
//!
//! ```no_run
//! # async fn example() -> Result<(), keel_kv::server::ServerError> {
//! use keel_kv::server::{HttpUrl, MemberConfig, run};
//!
//! let mut config = MemberConfig::new("n1", "/var/lib/keel/n1");
//! config.initial_cluster = MemberConfig::parse_initial_cluster(
//!     "n1=http://10.0.0.1:2380,n2=http://10.0.0.2:2380,n3=http://10.0.0.3:2380",
//! )?;
//! let peer = HttpUrl::parse("http://10.0.0.1:2380").expect("a valid URL");
//! config.listen_peer_urls = vec![peer.clone()];
//! config.initial_advertise_peer_urls = vec![peer];
//! config.listen_client_urls = vec![HttpUrl::parse("http://10.0.0.1:2379").expect("a valid URL")];
//! run(config, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```
//!
//! [`start`] does the same but returns a [`RunningMember`] at once, which
//! knows its bound addresses (useful with port 0) and IDs, and hands out
//! [`MemberMetrics`] for an exporter in the same process.
//!
//! - `config/`: [`MemberConfig`] and [`MemberFlags`], the flags both
//!   binaries parse (etcd's names), their defaults and the one validator.
//! - `ids.rs`: member and cluster IDs derived from URLs and the token.
//! - `identity.rs`: the IDs stored in the data directory.
//! - `restore.rs`: a new member's data directory from a snapshot file.
//! - `run.rs`: start, supervise, stop.
//! - `disk_failure.rs`: [`DiskFailure`], the operator's sentence for a
//!   member its own disk stopped.
//! - `serve.rs`: the client port (the etcd API, plus HTTP routes given
//!   by the caller) and the member's background tasks.
//! - `gateway.rs`: etcd's JSON gateway (`POST /v3/kv/range`, …) on the
//!   client port, over the same services.
//! - `authority/`: the client port's connections, with a URL-shaped
//!   HTTP/2 `:authority` (etcdctl's per-endpoint calls) repaired before
//!   the HTTP/2 server refuses it.
//! - `grpc_metrics.rs`: the client port's calls counted per method and code.
//! - `urls.rs`: [`HttpUrl`], the one URL type.
//! - `tls.rs`: [`TlsConfig`] (in `config.rs`) into rustls settings.

mod authority;
mod config;
mod disk_failure;
mod duration;
mod gateway;
mod grpc_metrics;
mod identity;
pub mod ids;
mod restore;
mod run;
mod runtime;
mod serve;
mod tls;
pub mod urls;

pub use config::{
    ClusterState, ConfigError, ELECTION_HEARTBEATS_MIN, INITIAL_CLUSTER_TOKEN_DEFAULT,
    LEASE_TTL_MIN_SECONDS_DEFAULT, LISTEN_CLIENT_URL_DEFAULT, LISTEN_PEER_URL_DEFAULT,
    MemberConfig, MemberFlags, Side, TlsConfig, WATCH_PROGRESS_NOTIFY_INTERVAL_DEFAULT,
    WATCH_PROGRESS_NOTIFY_INTERVAL_MIN,
};
pub use disk_failure::{DiskFailure, FailedStore};
pub use duration::{DurationError, parse_go_duration};
pub use grpc_metrics::{GrpcMethod, MethodCalls};
pub use identity::Identity;
pub use restore::{RestoreError, Restored, restore};
pub use run::{MemberMetrics, RunningMember, run, start, start_with_http};
pub use runtime::member_runtime;
pub use serve::serve;
pub use urls::{HttpUrl, UrlError, port_clash};

/// Why a member could not start, or how it stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("{} is damaged; expected \"<member id> <cluster id>\" in hex", path.display())]
    DamagedIdentity { path: std::path::PathBuf },
    #[error("{side} TLS: {source}")]
    Tls {
        side: &'static str,
        #[source]
        source: keel::tls::TlsError,
    },
    #[error("could not listen on {url}: {source}")]
    Listen {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("data directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("the key-value store failed: {0}")]
    Kv(#[from] crate::error::KvError),
    #[error("the Raft node could not start: {0}")]
    Start(#[from] keel::StartError),
    #[error("the Raft node stopped: {0}")]
    Stopped(keel::StopReason),
    /// A write to this member's own disk failed: fail-stop.
    #[error("this member stopped: {0}")]
    DiskFailed(DiskFailure),
    #[error("the Raft node's task ended without saying why")]
    NodeVanished,
    #[error("the Raft node failed while stopping: {0}")]
    Node(keel::Error),
    #[error("the client server failed: {0}")]
    Serve(tonic::transport::Error),
    #[error("this member was removed from the cluster")]
    Removed,
    #[error("a member task panicked")]
    Panicked,
}
