//! A load generator for the etcd v3 API.
//!
//! `keel bench` drives any server that speaks etcd's KV API — Keel, etcd
//! itself, or the in-memory `keel-ceiling` server in this crate — with the
//! same client, so that their numbers can be compared in one run on one
//! machine. It reports throughput, a latency histogram (HDR), errors by
//! kind, its own CPU per request and, given the server's pids, the
//! server's, and can draw latency over time and the percentile curve to SVG.

mod args;
mod cpu;
mod keys;
mod leases;
mod plot;
mod report;
mod runner;
mod workload;

pub use args::{BenchArgs, Consistency, Workload};
pub use cpu::Cpu;
pub use report::Report;
pub use runner::run;

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot connect to {endpoint}: {source}; is a server listening there?")]
    Connect {
        endpoint: String,
        source: tonic::transport::Error,
    },
    #[error("invalid endpoint {endpoint:?}: {source}")]
    Endpoint {
        endpoint: String,
        source: tonic::transport::Error,
    },
    #[error("invalid arguments: {0}")]
    Arguments(#[from] ArgumentError),
    #[error("--server-pids: cannot read process {pid}: {source}")]
    ServerPid { pid: u32, source: std::io::Error },
    #[error("preparing the key space failed: {0}")]
    Prepare(tonic::Status),
    #[error("writing the plot to {path}: {source}")]
    Plot {
        path: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Arguments that cannot make a run.
#[derive(Debug, thiserror::Error)]
pub enum ArgumentError {
    #[error("--clients and --conns must be at least 1")]
    NoClients,
    #[error("--endpoints needs at least one server")]
    NoEndpoints,
    #[error("--key-size and --key-space must be at least 1")]
    NoKeys,
    #[error("--write-fraction must be between 0 and 1")]
    WriteFraction,
    #[error("--rate must be at least 1 request per second")]
    ZeroRate,
    #[error("--total must be at least 1 (or give --duration)")]
    ZeroTotal,
}
