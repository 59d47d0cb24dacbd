//! `keel-kv`: starts one member of a Keel KV store that speaks etcd's v3
//! API. Until the Raft runtime adapter lands, it runs a single-member
//! cluster (`--initial-cluster` with one entry).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use keel_kv::proto::etcdserverpb::Member;
use keel_kv::service::{ServiceConfig, Shared};
use keel_kv::{KvStateMachine, LocalConsensus};
use tokio::net::TcpListener;

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
    /// Where clients connect, e.g. http://127.0.0.1:2379.
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    listen_client_urls: String,
    /// Where peers connect.
    #[arg(long, default_value = "http://127.0.0.1:2380")]
    listen_peer_urls: String,
    /// Every initial member as name=peer-url, comma separated.
    #[arg(long, default_value = "default=http://127.0.0.1:2380")]
    initial_cluster: String,
    /// `new` to bootstrap, `existing` to join.
    #[arg(long, default_value = "new")]
    initial_cluster_state: String,
}

/// A stable member ID from the member's name and peer URL, so that every
/// member derives the same IDs from the same `--initial-cluster`.
fn member_id(name: &str, peer_url: &str) -> u64 {
    let id = crc32c::crc32c(format!("{name}|{peer_url}").as_bytes()) as u64
        | (crc32c::crc32c(format!("{peer_url}|{name}").as_bytes()) as u64) << 32;
    id.max(1)
}

fn host_port(url: &str) -> &str {
    url.trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let peers: Vec<(&str, &str)> = args
        .initial_cluster
        .split(',')
        .filter_map(|p| p.split_once('='))
        .collect();
    if peers.len() != 1 || peers[0].0 != args.name {
        return Err(format!(
            "--initial-cluster must name exactly this member ({}) until the Raft runtime is wired in",
            args.name
        )
        .into());
    }
    if args.initial_cluster_state != "new" {
        return Err("--initial-cluster-state existing needs the Raft runtime".into());
    }
    let id = member_id(&args.name, peers[0].1);
    let cluster_id = crc32c::crc32c(args.initial_cluster.as_bytes()) as u64;
    let sm = KvStateMachine::open(&args.data_dir, true)?;
    let consensus = std::sync::Arc::new(LocalConsensus::new(sm.clone(), cluster_id, id));
    let config = ServiceConfig {
        lease_ttl_min_seconds: 2,
        watch_progress_every: Duration::from_secs(600),
        lease_check_every: Duration::from_millis(500),
        scratch_dir: args.data_dir.clone(),
    };
    let shared = Shared::new(sm, consensus, config);
    let listener = TcpListener::bind(host_port(&args.listen_client_urls)).await?;
    tracing::info!(name = %args.name, id = format!("{id:x}"), url = %args.listen_client_urls, "serving etcd v3 API");
    let me = Member {
        id,
        name: args.name.clone(),
        peer_ur_ls: vec![args.listen_peer_urls.clone()],
        client_ur_ls: vec![args.listen_client_urls.clone()],
        is_learner: false,
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    keel_kv::server::serve(shared, listener, me, shutdown).await?;
    Ok(())
}
