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

/// A failed start prints its message and each cause in words (anyhow's
/// report), not the error's `Debug`.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs go to stderr, as `keel serve`'s do: stdout stays free.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
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

#[cfg(test)]
mod tests {
    use clap::Parser;
    use keel_kv::server::{INITIAL_CLUSTER_TOKEN_DEFAULT, MemberConfig};

    use super::Args;

    /// `keel-kv` with no flags is the default member, with the runtime's
    /// timing and the one default token (so `keel serve`'s member id).
    #[test]
    fn no_flags_give_the_default_member_with_the_owning_constants() {
        let config = Args::try_parse_from(["keel-kv"])
            .unwrap()
            .member
            .resolve()
            .unwrap();
        assert_eq!(config, MemberConfig::new("default", "default.keel"));
        assert_eq!(config.heartbeat_interval, keel::HEARTBEAT_INTERVAL_DEFAULT);
        assert_eq!(config.election_timeout, keel::ELECTION_TIMEOUT_DEFAULT);
        assert_eq!(config.initial_cluster_token, INITIAL_CLUSTER_TOKEN_DEFAULT);
    }
}
