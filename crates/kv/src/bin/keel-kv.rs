//! `keel-kv`: one member of a Keel KV cluster, speaking etcd's v3 API.
//!
//! A thin alias of `keel serve`: the same [`MemberFlags`] (etcd's flag
//! names, `KEEL_*` variables), resolved into the same [`MemberConfig`]
//! with the same defaults, run by the same [`keel_kv::server::run`].
//! `keel serve` adds what belongs to the process around the member: a
//! config file, the metrics side-car and the log format.
//!
//! [`MemberConfig`]: keel_kv::server::MemberConfig

use clap::Parser;
use keel_kv::server::{MemberFlags, run};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "A Keel KV member: an etcd-compatible replicated key-value store (the same member as `keel serve`)"
)]
struct Args {
    #[command(flatten)]
    member: MemberFlags,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = Args::parse().member.resolve()?;
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
