//! What a run measured, as text or JSON.

use std::collections::BTreeMap;
use std::fmt;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::args::Workload;
use crate::cpu::Cpu;

/// Latency figures in microseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub min_us: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

/// Requests completed in one second of the run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Second {
    pub second: u64,
    pub ok: u64,
    pub mean_us: f64,
    pub max_us: u64,
}

/// The outcome of one benchmark run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub workload: Workload,
    pub endpoints: Vec<String>,
    pub clients: usize,
    pub conns: usize,
    pub ok: u64,
    /// Failed requests by gRPC status code.
    pub errors: BTreeMap<String, u64>,
    pub elapsed_s: f64,
    pub requests_per_s: f64,
    pub latency: Latency,
    /// The longest time in which no request succeeded (including the wait
    /// for the first answer): the unavailability a failover caused.
    pub max_stall_ms: f64,
    pub timeline: Vec<Second>,
    /// `(percentile, latency_us)` points of the latency distribution.
    pub percentiles: Vec<(f64, u64)>,
    /// CPU of this client and of the server during the timed phase.
    pub cpu: Cpu,
}

impl Latency {
    pub(crate) fn from_histogram(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            min_us: h.min(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// The latency at a ladder of percentiles, for the percentile curve.
pub(crate) fn percentile_curve(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let ladder = [
        0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0,
    ];
    ladder
        .iter()
        .map(|&p| (p, h.value_at_quantile(p / 100.0)))
        .collect()
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.latency;
        writeln!(
            f,
            "{:?} against {} with {} clients on {} connections",
            self.workload,
            self.endpoints.join(","),
            self.clients,
            self.conns
        )?;
        writeln!(
            f,
            "  requests: {} ok in {:.2} s = {:.0} req/s",
            self.ok, self.elapsed_s, self.requests_per_s
        )?;
        writeln!(
            f,
            "  latency (ms): min {:.3}  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}",
            ms(l.min_us),
            ms(l.p50_us),
            ms(l.p90_us),
            ms(l.p99_us),
            ms(l.p999_us),
            ms(l.max_us),
            l.mean_us / 1000.0
        )?;
        writeln!(
            f,
            "  longest stall without an answer: {:.1} ms",
            self.max_stall_ms
        )?;
        let c = &self.cpu;
        write!(
            f,
            "  cpu per request: client {:.0} µs ({:.2} s)",
            c.client_us_per_ok, c.client_s
        )?;
        match (c.server_s, c.server_us_per_ok) {
            (Some(s), Some(per_ok)) => writeln!(f, ", server {per_ok:.0} µs ({s:.2} s)")?,
            _ => writeln!(f)?,
        }
        if self.errors.is_empty() {
            write!(f, "  errors: none")
        } else {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            write!(f, "  errors: {}", list.join(", "))
        }
    }
}
