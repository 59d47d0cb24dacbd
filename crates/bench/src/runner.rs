//! Runs the clients, collects their measurements.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use keel_kv::proto::etcdserverpb::PutRequest;
use keel_kv::proto::etcdserverpb::kv_client::KvClient;
use tonic::transport::{Channel, Endpoint};

use crate::args::{BenchArgs, Workload};
use crate::cpu::CpuMeter;
use crate::keys::{KeyGen, key_bytes};
use crate::report::{Latency, Report, Second, percentile_curve};
use crate::workload::Requester;
use crate::{BenchError, leases, plot};

/// Keys written before a get or mixed run, so reads find values. Reads stay
/// within these keys.
const READ_KEYS_MAX: u64 = 1000;

/// Highest latency the histogram records: a minute, in microseconds.
const LATENCY_US_MAX: u64 = 60_000_000;

/// When the run stops, shared by every client.
struct Plan {
    next_seq: AtomicU64,
    done: AtomicU64,
    /// Microseconds since `started` of the latest successful response.
    last_ok_us: AtomicU64,
    /// The longest time without any successful response, in microseconds:
    /// during a failover, how long writes were unavailable.
    max_stall_us: AtomicU64,
    total: Option<u64>,
    deadline: Option<Instant>,
    started: Instant,
    /// Per-client gap between requests when `--rate` is set.
    gap: Option<Duration>,
}

impl Plan {
    /// Notes a successful response, measuring the stall it ends.
    fn acknowledged(&self) {
        self.stall_ends(self.started.elapsed());
    }

    /// Notes that a stall (if any) ended `at` after the start.
    fn stall_ends(&self, at: Duration) {
        let now = at.as_micros() as u64;
        let previous = self.last_ok_us.fetch_max(now, Ordering::Relaxed);
        self.max_stall_us
            .fetch_max(now.saturating_sub(previous), Ordering::Relaxed);
    }

    /// The longest stall, counting one still running when the run ended
    /// `elapsed` after the start: a run whose writes never resumed after a
    /// fault stalled until its end, not for no time at all.
    fn longest_stall(&self, elapsed: Duration) -> Duration {
        self.stall_ends(elapsed);
        Duration::from_micros(self.max_stall_us.load(Ordering::Relaxed))
    }

    /// The next request number, or `None` when the run is over.
    fn take(&self) -> Option<u64> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        match self.total {
            Some(total) if seq >= total => None,
            _ => Some(seq),
        }
    }
}

/// One client's measurements.
struct Tally {
    latency: Histogram<u64>,
    /// Per second of the run: (ok, latency sum µs, max µs).
    seconds: Vec<(u64, u64, u64)>,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latency: Histogram::new_with_bounds(1, LATENCY_US_MAX, 3)
                .expect("static histogram bounds are valid"),
            seconds: Vec::new(),
            errors: BTreeMap::new(),
        }
    }

    fn record(&mut self, at: Duration, latency: Duration) {
        let us = (latency.as_micros() as u64).clamp(1, LATENCY_US_MAX);
        self.latency.saturating_record(us);
        let second = at.as_secs() as usize;
        if self.seconds.len() <= second {
            self.seconds.resize(second + 1, (0, 0, 0));
        }
        let slot = &mut self.seconds[second];
        slot.0 += 1;
        slot.1 += us;
        slot.2 = slot.2.max(us);
    }

    fn merge(&mut self, other: Tally) {
        self.latency
            .add(&other.latency)
            .expect("histograms share their bounds");
        if self.seconds.len() < other.seconds.len() {
            self.seconds.resize(other.seconds.len(), (0, 0, 0));
        }
        for (mine, theirs) in self.seconds.iter_mut().zip(other.seconds) {
            mine.0 += theirs.0;
            mine.1 += theirs.1;
            mine.2 = mine.2.max(theirs.2);
        }
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
    }
}

async fn connect(args: &BenchArgs) -> Result<Vec<Channel>, BenchError> {
    let mut channels = Vec::with_capacity(args.conns);
    for i in 0..args.conns {
        let endpoint = &args.endpoints[i % args.endpoints.len()];
        let url = if endpoint.contains("://") {
            endpoint.clone()
        } else {
            format!("http://{endpoint}")
        };
        let channel = Endpoint::from_shared(url)
            .map_err(|source| BenchError::Endpoint {
                endpoint: endpoint.clone(),
                source,
            })?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|source| BenchError::Connect {
                endpoint: endpoint.clone(),
                source,
            })?;
        channels.push(channel);
    }
    Ok(channels)
}

/// Writes the keys that reads will ask for.
async fn prepare(channel: Channel, args: &BenchArgs, keys: u64) -> Result<(), BenchError> {
    let mut client = KvClient::new(channel);
    for n in 0..keys {
        let put = PutRequest {
            key: key_bytes(n, args.key_size).into(),
            value: vec![b'v'; args.val_size].into(),
            ..PutRequest::default()
        };
        client.put(put).await.map_err(BenchError::Prepare)?;
    }
    Ok(())
}

fn progress_bar(args: &BenchArgs) -> ProgressBar {
    if args.no_progress || args.json {
        return ProgressBar::hidden();
    }
    let (length, template) = match args.duration {
        Some(d) => (
            d.as_secs().max(1),
            "{spinner} {elapsed_precise} [{bar:40}] {pos}/{len} s  {msg}",
        ),
        None => (
            args.total,
            "{spinner} {elapsed_precise} [{bar:40}] {pos}/{len}  {msg}",
        ),
    };
    let bar = ProgressBar::new(length);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

async fn client_loop(mut requester: Requester, plan: Arc<Plan>, client: usize) -> Tally {
    let mut tally = Tally::new();
    let mut next_send = plan.started + plan.gap.map_or(Duration::ZERO, |g| g * client as u32);
    while let Some(seq) = plan.take() {
        if let Some(gap) = plan.gap {
            tokio::time::sleep_until(next_send.into()).await;
            next_send += gap;
        }
        let sent = Instant::now();
        match requester.send(seq).await {
            Ok(()) => {
                tally.record(sent - plan.started, sent.elapsed());
                plan.acknowledged();
            }
            Err(status) => {
                *tally
                    .errors
                    .entry(format!("{:?}", status.code()))
                    .or_default() += 1;
            }
        }
        plan.done.fetch_add(1, Ordering::Relaxed);
    }
    tally
}

/// Runs the benchmark described by `args` and returns its report (also
/// drawing the plot if asked).
pub async fn run(args: &BenchArgs) -> Result<Report, BenchError> {
    args.validate()?;
    let channels = connect(args).await?;
    let reads = matches!(args.workload, Workload::Get | Workload::Mixed);
    let key_space = if reads {
        args.key_space.min(READ_KEYS_MAX)
    } else {
        args.key_space
    };
    if reads {
        prepare(channels[0].clone(), args, key_space).await?;
    }
    if args.lease_keys > 0 {
        leases::attach(channels[0].clone(), args.lease_keys).await?;
    }
    let cpu = CpuMeter::start(&args.server_pids)?;
    let started = Instant::now();
    let plan = Arc::new(Plan {
        next_seq: AtomicU64::new(0),
        done: AtomicU64::new(0),
        last_ok_us: AtomicU64::new(0),
        max_stall_us: AtomicU64::new(0),
        total: args.duration.is_none().then_some(args.total),
        deadline: args.duration.map(|d| started + d),
        started,
        gap: args
            .rate
            .map(|rate| Duration::from_secs_f64(args.clients as f64 / rate as f64)),
    });
    let bar = progress_bar(args);
    let mut tasks = Vec::with_capacity(args.clients);
    for client in 0..args.clients {
        let requester = Requester::new(
            KvClient::new(channels[client % channels.len()].clone()),
            KeyGen::new(args.key_size, key_space, args.sequential_keys, client),
            args.val_size,
            args.workload,
            args.consistency,
            args.write_fraction,
        );
        tasks.push(tokio::spawn(client_loop(requester, plan.clone(), client)));
    }
    let ticker = {
        let (plan, bar, timed) = (plan.clone(), bar.clone(), args.duration.is_some());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let done = plan.done.load(Ordering::Relaxed);
                if timed {
                    bar.set_position(plan.started.elapsed().as_secs());
                    bar.set_message(format!("{done} requests"));
                } else {
                    bar.set_position(done);
                }
            }
        })
    };
    let mut tally = Tally::new();
    for task in tasks {
        if let Ok(client_tally) = task.await {
            tally.merge(client_tally);
        }
    }
    let elapsed = started.elapsed();
    let cpu = cpu.stop(tally.latency.len());
    ticker.abort();
    bar.finish_and_clear();

    let ok = tally.latency.len();
    let timeline = tally
        .seconds
        .iter()
        .enumerate()
        .map(|(second, &(n, sum, max))| Second {
            second: second as u64,
            ok: n,
            mean_us: if n == 0 { 0.0 } else { sum as f64 / n as f64 },
            max_us: max,
        })
        .collect();
    let report = Report {
        workload: args.workload,
        endpoints: args.endpoints.clone(),
        clients: args.clients,
        conns: args.conns,
        ok,
        errors: tally.errors,
        elapsed_s: elapsed.as_secs_f64(),
        requests_per_s: ok as f64 / elapsed.as_secs_f64().max(1e-9),
        latency: Latency::from_histogram(&tally.latency),
        max_stall_ms: plan.longest_stall(elapsed).as_secs_f64() * 1000.0,
        timeline,
        percentiles: percentile_curve(&tally.latency),
        cpu,
    };
    if let Some(path) = &args.plot {
        plot::draw(&report, path)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            next_seq: AtomicU64::new(0),
            done: AtomicU64::new(0),
            last_ok_us: AtomicU64::new(0),
            max_stall_us: AtomicU64::new(0),
            total: None,
            deadline: None,
            started: Instant::now(),
            gap: None,
        }
    }

    #[test]
    fn the_longest_stall_is_between_acknowledgements() {
        let plan = plan();
        plan.stall_ends(Duration::from_millis(10));
        plan.stall_ends(Duration::from_millis(700));
        plan.stall_ends(Duration::from_millis(750));
        assert_eq!(
            plan.longest_stall(Duration::from_millis(800)),
            Duration::from_millis(690)
        );
    }

    #[test]
    fn a_stall_that_never_ended_lasts_until_the_end_of_the_run() {
        let broken = plan();
        broken.stall_ends(Duration::from_millis(100));
        assert_eq!(
            broken.longest_stall(Duration::from_secs(5)),
            Duration::from_millis(4_900)
        );
        let silent = plan();
        assert_eq!(
            silent.longest_stall(Duration::from_secs(5)),
            Duration::from_secs(5)
        );
    }
}
