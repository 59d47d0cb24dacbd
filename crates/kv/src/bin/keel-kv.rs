//! `keel-kv`: one member of a Keel KV cluster, speaking etcd's v3 API.
//!
//! A thin alias of `keel serve`: the same [`MemberFlags`] (etcd's flag
//! names, `KEEL_*` variables), resolved into the same [`MemberConfig`]
//! with the same defaults, run by the same [`keel_kv::server::run`].
//! `keel serve` adds what belongs to the process around the member: a
//! config file, the metrics side-car and the log format.
//!
//! [`MemberConfig`]: keel_kv::server::MemberConfig

use std::process::ExitCode;

use clap::Parser;
use keel_kv::server::{MemberFlags, member_runtime, run};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "A Keel KV member: an etcd-compatible replicated key-value store (the same member as `keel serve`)"
)]
struct Args {
    #[command(flatten)]
    member: MemberFlags,
}

/// A failed start, or a member that stops by itself, prints its message
/// and each cause in words on one line (`Error: …`, as `keel serve`
/// does) and exits with status 1: never the error's `Debug`, and never a
/// backtrace, whatever `RUST_BACKTRACE` says.
fn main() -> ExitCode {
    // Logs go to stderr, as `keel serve`'s do: stdout stays free.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let result = member_runtime()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(serve(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the member the flags describe until SIGTERM or Ctrl-C, or until
/// it stops by itself.
async fn serve(args: Args) -> anyhow::Result<()> {
    let config = args.member.resolve()?;
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
