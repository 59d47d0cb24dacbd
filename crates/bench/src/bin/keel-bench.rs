//! `keel-bench`: the load generator on its own (the `keel bench` subcommand
//! runs the same code).

use clap::Parser;
use keel_bench::BenchArgs;

/// Benchmark a server that speaks etcd's v3 KV API.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let report = keel_bench::run(&cli.args).await?;
    if cli.args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}
