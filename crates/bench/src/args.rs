//! Command-line arguments of `keel bench`, shared with the `keel` binary.

use std::path::PathBuf;
use std::time::Duration;

use crate::{ArgumentError, BenchError};

/// What each request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// `Put` of a value to a key.
    Put,
    /// `Range` of one key.
    Get,
    /// A `Txn` with no compares whose success branch puts one key.
    Txn,
    /// `--write-fraction` puts, the rest gets.
    Mixed,
}

/// The read consistency of gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Consistency {
    /// Linearizable (ReadIndex on the server).
    #[value(name = "l")]
    Linearizable,
    /// Serializable: served from the member's local state.
    #[value(name = "s")]
    Serializable,
}

/// Load-generator options.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    /// The operation to benchmark.
    #[arg(value_enum)]
    pub workload: Workload,
    /// Client URLs of the servers, comma-separated (`host:port` or `http://host:port`).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.0.0.1:2379",
        env = "KEEL_ENDPOINTS"
    )]
    pub endpoints: Vec<String>,
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// gRPC connections shared by the clients (round-robin).
    #[arg(long, default_value_t = 1)]
    pub conns: usize,
    /// Requests to send in total (ignored with --duration).
    #[arg(long, default_value_t = 10_000)]
    pub total: u64,
    /// Run for this long instead of a fixed total, e.g. `10s`, `500ms`, `2m`.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Key size in bytes.
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
    /// Number of distinct keys written or read.
    #[arg(long, default_value_t = 100_000)]
    pub key_space: u64,
    /// Use keys in order 0, 1, 2, … instead of at random.
    #[arg(long)]
    pub sequential_keys: bool,
    /// Consistency of gets: l (linearizable) or s (serializable).
    #[arg(long, value_enum, default_value = "l")]
    pub consistency: Consistency,
    /// Share of puts in the mixed workload.
    #[arg(long, default_value_t = 0.1)]
    pub write_fraction: f64,
    /// Before the timed phase, attach this many keys (outside the
    /// benchmark's own) to leases, 1,000 to a lease: a store whose leases
    /// hold many keys. The server must serve etcd's Lease API.
    #[arg(long, default_value_t = 0)]
    pub lease_keys: u64,
    /// Cap on requests per second across all clients.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Processes of the server under test (pids, comma-separated): the
    /// report gives their CPU time (user + system, from /proc) during the
    /// timed phase, per acknowledged request. This client's own is always given.
    #[arg(long, value_delimiter = ',')]
    pub server_pids: Vec<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Draw latency over time and the percentile curve to this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Do not show a progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

impl BenchArgs {
    pub(crate) fn validate(&self) -> Result<(), BenchError> {
        let refused = if self.clients == 0 || self.conns == 0 {
            Some(ArgumentError::NoClients)
        } else if self.endpoints.is_empty() {
            Some(ArgumentError::NoEndpoints)
        } else if self.key_size == 0 || self.key_space == 0 {
            Some(ArgumentError::NoKeys)
        } else if !(0.0..=1.0).contains(&self.write_fraction) {
            Some(ArgumentError::WriteFraction)
        } else if self.rate == Some(0) {
            Some(ArgumentError::ZeroRate)
        } else if self.duration.is_none() && self.total == 0 {
            Some(ArgumentError::ZeroTotal)
        } else {
            None
        };
        match refused {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

/// Parses `10s`, `250ms`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 10s, 500ms or 2m"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}; use ms, s or m"
            ));
        }
    };
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("fast").is_err());
    }
}
