//! `keel serve`: one cluster member in the foreground.
//!
//! Settings come from flags, `KEEL_*` variables and an optional TOML file
//! (`settings.rs`: the member's flags are Keel KV's `MemberFlags`, the same
//! the `keel-kv` binary parses), are checked into a [`ServeConfig`]
//! (`config.rs`), and the member runs until SIGINT or SIGTERM
//! (`member.rs`).

mod config;
mod member;
mod probe;
mod settings;

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

pub use config::ServeConfig;
pub use settings::Settings;

use crate::logging;

/// `keel serve`'s command line.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// A TOML file with any of the settings below; its keys are the flag
    /// names without the leading dashes (e.g. `data-dir = "./m1.keel"`).
    /// Flags and KEEL_* variables override it.
    #[arg(long, env = "KEEL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub settings: Settings,
}

/// Resolves the configuration and runs the member until a signal stops it.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
    let config = ServeConfig::resolve(args.settings.or(file))?;
    logging::init_for_member(config.log_level, config.log_format);
    member::run(config, stop_signal()?)
        .await
        .context("the member stopped with an error")
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM (`keel cluster down`).
fn stop_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received, stopping"),
            _ = terminate.recv() => tracing::info!("SIGTERM received, stopping"),
        }
    })
}
