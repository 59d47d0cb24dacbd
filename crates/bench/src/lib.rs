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
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("invalid arguments: {0}")]
    Arguments(String),
    #[error("preparing the key space failed: {0}")]
    Prepare(tonic::Status),
    #[error("writing the plot to {path}: {reason}")]
    Plot { path: String, reason: String },
}
