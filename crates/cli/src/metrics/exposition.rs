//! Renders a [`Sample`] in Prometheus' text format. Keel's own series are
//! named `keel_*`, with units last (`_seconds`, `_bytes`) and `_total` on
//! counters, as Prometheus' naming guide asks. The series etcd also has
//! are exported a second time under etcd's names, types and labels
//! (`etcd_*`, `grpc_server_*`), so that etcd's dashboards and alerts work
//! unchanged; `docs/operations.md` lists them and how Keel fills each.
//! (The encoder adds `_total` to a counter's name itself.)

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::sample::{GrpcCalls, Histogram, Role, Sample};

/// Encodes one sample: the registry is built per scrape around it.
#[derive(Debug)]
struct SampleCollector(Arc<Sample>);

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let metric = ConstGauge::new(v);
    metric.encode(e.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let metric = ConstCounter::new(v);
    metric.encode(e.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn histogram(e: &mut DescriptorEncoder, name: &str, help: &str, h: &Histogram) -> std::fmt::Result {
    let metric = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
    encode_histogram(metric, h)
}

fn encode_histogram(
    mut metric: prometheus_client::encoding::MetricEncoder<'_>,
    h: &Histogram,
) -> std::fmt::Result {
    // The encoder wants per-bucket counts (it cumulates them itself) and
    // adds the `+Inf` bucket from `count`.
    let mut below = 0;
    let per_bucket: Vec<(f64, u64)> = h
        .buckets
        .iter()
        .map(|&(bound, cumulative)| {
            let n = cumulative.saturating_sub(below);
            below = cumulative;
            (bound, n)
        })
        .collect();
    metric.encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &per_bucket, None)
}

/// Converts an index or count to a gauge value; they never reach 2^63.
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn encode(s: &Sample, e: &mut DescriptorEncoder) -> std::fmt::Result {
    {
        // Ids are 64-bit: as values they would lose digits in a float, so
        // they travel as a label, like etcd's `etcd_server_id`.
        let mut family = e.encode_descriptor(
            "keel_member_id",
            "This member's id (hex), as a label; the value is always 1.",
            None,
            MetricType::Gauge,
        )?;
        let labels = [("member_id", format!("{:x}", s.member_id))];
        ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
    }
    gauge(e, "keel_raft_term", "The current Raft term.", int(s.term))?;
    {
        let mut family = e.encode_descriptor(
            "keel_raft_role",
            "1 for this member's current role, 0 for the others.",
            None,
            MetricType::Gauge,
        )?;
        for role in Role::ALL {
            let labels = [("role", role.name())];
            let value = ConstGauge::new(i64::from(role == s.role));
            value.encode(family.encode_family(&labels)?)?;
        }
    }
    gauge(
        e,
        "keel_raft_has_leader",
        "1 if this member knows a leader.",
        i64::from(s.leader_id.is_some()),
    )?;
    gauge(
        e,
        "keel_raft_commit_index",
        "The highest log index known to be committed.",
        int(s.commit_index),
    )?;
    gauge(
        e,
        "keel_raft_applied_index",
        "The highest log index applied to the key-value store.",
        int(s.applied_index),
    )?;
    gauge(
        e,
        "keel_db_size_bytes",
        "Size of the key-value database file.",
        s.db_size_bytes,
    )?;
    if let Some(free) = s.disk_free_bytes {
        gauge(
            e,
            "keel_disk_free_bytes",
            "Bytes free for the member on the filesystem holding its data directory.",
            int(free),
        )?;
    }
    gauge(
        e,
        "keel_disk_reserve_bytes",
        "Free bytes below which the member raises a NOSPACE alarm (--disk-reserve-bytes; 0: no watch).",
        int(s.disk_reserve_bytes),
    )?;
    let log = &s.log;
    gauge(
        e,
        "keel_raft_log_first_index",
        "The first index still in the log (earlier ones are in a snapshot).",
        int(log.first_index),
    )?;
    gauge(
        e,
        "keel_raft_log_last_index",
        "The last index in this member's log.",
        int(log.last_index),
    )?;
    gauge(
        e,
        "keel_raft_log_entries",
        "Entries in the log, not yet compacted into a snapshot.",
        int(log.entries()),
    )?;
    let r = &s.replication;
    counter(
        e,
        "keel_proposals_committed",
        "This member's proposals whose entry committed.",
        r.proposals_committed,
    )?;
    counter(
        e,
        "keel_proposals_failed",
        "This member's proposals appended to the log that failed (dropped, unknown outcome, stopped).",
        r.proposals_failed,
    )?;
    gauge(
        e,
        "keel_proposals_pending",
        "Proposals appended and not yet answered.",
        int(r.proposals_pending),
    )?;
    counter(
        e,
        "keel_peer_send_failures",
        "Messages to peers dropped unsent (peer unreachable, its queue full, or its address unknown).",
        r.peer_send_failures,
    )?;
    counter(
        e,
        "keel_snapshots_created",
        "Snapshots taken of this member's state machine.",
        r.snapshots_created,
    )?;
    counter(
        e,
        "keel_snapshots_installed",
        "Snapshots received from a leader and installed.",
        r.snapshots_installed,
    )?;
    counter(
        e,
        "keel_forwarded_commands",
        "Writes this member forwarded to the leader: its clients', and its own publishing of its name at start.",
        r.forwarded_commands,
    )?;
    counter(
        e,
        "keel_forwarded_batches",
        "Calls that carried this member's forwarded writes to the leader (commands ÷ batches: the mean batch).",
        r.forwarded_batches,
    )?;
    histogram(
        e,
        "keel_log_append_duration_seconds",
        "Per group commit: time to write the batches to the log and make them durable.",
        &r.log_append_seconds,
    )?;
    histogram(
        e,
        "keel_log_fsync_duration_seconds",
        "Per group commit: time in the log's sync (the write syscalls and fdatasync).",
        &r.log_fsync_seconds,
    )
}

/// etcd's series, from the same sample as Keel's. etcd's
/// `proposals_committed_total` and `proposals_applied_total` are gauges of
/// the commit and applied index, so Keel's indexes fill them; the WAL
/// histogram keeps Keel's finer buckets under etcd's name; the backend
/// commit and peer round trip histograms have etcd's buckets.
fn encode_etcd(s: &Sample, e: &mut DescriptorEncoder) -> std::fmt::Result {
    {
        let mut family = e.encode_descriptor(
            "etcd_server_id",
            "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
            None,
            MetricType::Gauge,
        )?;
        let labels = [("server_id", format!("{:x}", s.member_id))];
        ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
    }
    gauge(
        e,
        "etcd_server_has_leader",
        "Whether or not a leader exists. 1 is existence, 0 is not.",
        i64::from(s.leader_id.is_some()),
    )?;
    gauge(
        e,
        "etcd_server_is_leader",
        "Whether or not this member is a leader. 1 if is, 0 otherwise.",
        i64::from(s.role == Role::Leader),
    )?;
    gauge(
        e,
        "etcd_server_is_learner",
        "Whether or not this member is a learner. 1 if is, 0 otherwise.",
        i64::from(s.role == Role::Learner),
    )?;
    counter(
        e,
        "etcd_server_leader_changes_seen",
        "The number of leader changes seen.",
        s.leader_changes,
    )?;
    gauge(
        e,
        "etcd_server_proposals_committed_total",
        "The total number of consensus proposals committed.",
        int(s.commit_index),
    )?;
    gauge(
        e,
        "etcd_server_proposals_applied_total",
        "The total number of consensus proposals applied.",
        int(s.applied_index),
    )?;
    gauge(
        e,
        "etcd_server_proposals_pending",
        "The current number of pending proposals to commit.",
        int(s.replication.proposals_pending),
    )?;
    counter(
        e,
        "etcd_server_proposals_failed",
        "The total number of failed proposals seen.",
        s.replication.proposals_failed,
    )?;
    histogram(
        e,
        "etcd_disk_wal_fsync_duration_seconds",
        "The latency distributions of fsync called by WAL.",
        &s.replication.log_fsync_seconds,
    )?;
    histogram(
        e,
        "etcd_disk_backend_commit_duration_seconds",
        "The latency distributions of commit called by backend.",
        &s.backend_commit_seconds,
    )?;
    {
        let mut family = e.encode_descriptor(
            "etcd_network_peer_round_trip_time_seconds",
            "Round-Trip-Time histogram between peers",
            None,
            MetricType::Histogram,
        )?;
        // etcd's label, with a member ID as etcd writes one (hex).
        for (peer, trips) in &s.peer_round_trip_seconds {
            let labels = [("To", format!("{peer:x}"))];
            encode_histogram(family.encode_family(&labels)?, trips)?;
        }
    }
    gauge(
        e,
        "etcd_mvcc_db_total_size_in_bytes",
        "Total size of the underlying database physically allocated in bytes.",
        s.db_size_bytes,
    )?;
    gauge(
        e,
        "etcd_debugging_mvcc_keys_total",
        "Total number of keys.",
        int(s.keys),
    )?;
    encode_grpc(&s.grpc, e)
}

/// go-grpc-prometheus's series, as etcd exports them.
fn encode_grpc(calls: &[GrpcCalls], e: &mut DescriptorEncoder) -> std::fmt::Result {
    {
        let mut family = e.encode_descriptor(
            "grpc_server_started",
            "Total number of RPCs started on the server.",
            None,
            MetricType::Counter,
        )?;
        for call in calls {
            let labels = [
                ("grpc_method", call.method.as_str()),
                ("grpc_service", call.service.as_str()),
                ("grpc_type", call.kind),
            ];
            ConstCounter::new(call.started).encode(family.encode_family(&labels)?)?;
        }
    }
    let mut family = e.encode_descriptor(
        "grpc_server_handled",
        "Total number of RPCs completed on the server, regardless of success or failure.",
        None,
        MetricType::Counter,
    )?;
    for call in calls {
        for &(code, n) in &call.handled {
            let labels = [
                ("grpc_code", code),
                ("grpc_method", call.method.as_str()),
                ("grpc_service", call.service.as_str()),
                ("grpc_type", call.kind),
            ];
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

impl Collector for SampleCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        encode(&self.0, &mut encoder)?;
        encode_etcd(&self.0, &mut encoder)
    }
}

/// `sample` in Prometheus' text format (not OpenMetrics'), which every
/// scraper and `promtool` reads.
pub fn render(sample: Sample) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SampleCollector(Arc::new(sample))));
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)?;
    Ok(text)
}
