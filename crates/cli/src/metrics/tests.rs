use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

struct Fixed(Mutex<Sample>);

impl Probe for Fixed {
    fn sample(&self) -> Sampling<'_> {
        let sample = self.0.lock().unwrap().clone();
        Box::pin(async move { Some(sample) })
    }
}

fn leader_sample() -> Sample {
    Sample {
        member_id: 7,
        role: Role::Leader,
        term: 3,
        leader_id: Some(7),
        leader_changes: 2,
        commit_index: 42,
        applied_index: 41,
        log: LogSpan {
            first_index: 10,
            last_index: 42,
        },
        db_size_bytes: 4096,
        disk_free_bytes: Some(1 << 30),
        disk_reserve_bytes: 256 << 20,
        keys: 12,
        replication: ReplicationCounters {
            proposals_committed: 30,
            proposals_failed: 2,
            proposals_pending: 1,
            peer_send_failures: 5,
            snapshots_created: 1,
            snapshots_installed: 0,
            forwarded_commands: 90,
            forwarded_batches: 4,
            log_append_seconds: Histogram {
                buckets: vec![(0.001, 20), (0.01, 29)],
                sum_seconds: 0.05,
                count: 30,
            },
            log_fsync_seconds: Histogram::default(),
        },
        backend_commit_seconds: Histogram {
            buckets: vec![(0.001, 5), (0.002, 7)],
            sum_seconds: 0.02,
            count: 8,
        },
        peer_round_trip_seconds: vec![
            (
                0xa1,
                Histogram {
                    buckets: vec![(0.0001, 1), (0.0002, 3)],
                    sum_seconds: 0.0006,
                    count: 3,
                },
            ),
            (0xb2, Histogram::default()),
        ],
        grpc: vec![GrpcCalls {
            service: "etcdserverpb.KV".into(),
            method: "Range".into(),
            kind: "unary",
            started: 5,
            handled: vec![("NotFound", 1), ("OK", 3)],
        }],
    }
}

fn value(samples: &[prometheus_parse::Sample], name: &str) -> f64 {
    let sample = samples
        .iter()
        .find(|s| s.metric == name)
        .unwrap_or_else(|| panic!("no series {name}"));
    match sample.value {
        prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("{name} is {other:?}"),
    }
}

#[test]
fn exposition_parses_and_has_every_series() {
    let text = exposition::render(leader_sample()).unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    let s = &scrape.samples;
    assert_eq!(value(s, "keel_raft_term"), 3.0);
    assert_eq!(value(s, "keel_raft_commit_index"), 42.0);
    assert_eq!(value(s, "keel_raft_applied_index"), 41.0);
    assert_eq!(value(s, "keel_disk_free_bytes"), (1u64 << 30) as f64);
    assert_eq!(value(s, "keel_disk_reserve_bytes"), (256u64 << 20) as f64);
    assert_eq!(value(s, "keel_raft_log_entries"), 33.0);
    assert_eq!(value(s, "keel_proposals_committed_total"), 30.0);
    assert_eq!(value(s, "keel_forwarded_commands_total"), 90.0);
    assert_eq!(value(s, "keel_forwarded_batches_total"), 4.0);
    assert_eq!(value(s, "keel_proposals_failed_total"), 2.0);
    assert_eq!(value(s, "keel_peer_send_failures_total"), 5.0);
    assert_eq!(value(s, "keel_snapshots_created_total"), 1.0);
    assert_eq!(value(s, "keel_snapshots_installed_total"), 0.0);
    let leader = s
        .iter()
        .find(|x| x.metric == "keel_raft_role" && x.labels.get("role") == Some("leader"))
        .unwrap();
    assert_eq!(leader.value, prometheus_parse::Value::Gauge(1.0));
    for name in [
        "keel_log_append_duration_seconds",
        "keel_log_fsync_duration_seconds",
    ] {
        let histogram = s.iter().find(|x| x.metric == name).unwrap();
        assert!(
            matches!(histogram.value, prometheus_parse::Value::Histogram(_)),
            "{name}: {:?}",
            histogram.value
        );
    }
    // Cumulative counts go out as they came in, not cumulated twice.
    let append = s
        .iter()
        .find(|x| x.metric == "keel_log_append_duration_seconds")
        .unwrap();
    let prometheus_parse::Value::Histogram(buckets) = &append.value else {
        unreachable!("checked above");
    };
    let counts: Vec<f64> = buckets.iter().map(|b| b.count).collect();
    assert_eq!(counts, [20.0, 29.0, 30.0]);
}

#[test]
fn etcd_series_have_etcds_names_types_and_labels() {
    let text = exposition::render(leader_sample()).unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let s = &prometheus_parse::Scrape::parse(lines).unwrap().samples;
    assert_eq!(value(s, "etcd_server_has_leader"), 1.0);
    assert_eq!(value(s, "etcd_server_is_leader"), 1.0);
    assert_eq!(value(s, "etcd_server_is_learner"), 0.0);
    assert_eq!(value(s, "etcd_server_leader_changes_seen_total"), 2.0);
    assert_eq!(value(s, "etcd_server_proposals_committed_total"), 42.0);
    assert_eq!(value(s, "etcd_server_proposals_applied_total"), 41.0);
    assert_eq!(value(s, "etcd_server_proposals_pending"), 1.0);
    assert_eq!(value(s, "etcd_server_proposals_failed_total"), 2.0);
    assert_eq!(value(s, "etcd_mvcc_db_total_size_in_bytes"), 4096.0);
    assert_eq!(value(s, "etcd_debugging_mvcc_keys_total"), 12.0);
    for (name, kind) in [
        ("etcd_server_has_leader", "gauge"),
        ("etcd_server_leader_changes_seen_total", "counter"),
        ("etcd_server_proposals_committed_total", "gauge"),
        ("etcd_server_proposals_failed_total", "counter"),
        ("etcd_disk_wal_fsync_duration_seconds", "histogram"),
        ("grpc_server_handled_total", "counter"),
    ] {
        let family = name.trim_end_matches("_total");
        assert!(
            text.contains(&format!("# TYPE {family} {kind}"))
                || text.contains(&format!("# TYPE {name} {kind}")),
            "{name} is not a {kind}:\n{text}"
        );
    }
    let handled = |code: &str| {
        s.iter()
            .find(|x| {
                x.metric == "grpc_server_handled_total"
                    && x.labels.get("grpc_code") == Some(code)
                    && x.labels.get("grpc_method") == Some("Range")
                    && x.labels.get("grpc_service") == Some("etcdserverpb.KV")
                    && x.labels.get("grpc_type") == Some("unary")
            })
            .map(|x| x.value.clone())
    };
    assert_eq!(handled("OK"), Some(prometheus_parse::Value::Counter(3.0)));
    assert_eq!(
        handled("NotFound"),
        Some(prometheus_parse::Value::Counter(1.0))
    );
    let histogram = |name: &str, to: Option<&str>| {
        s.iter()
            .find(|x| x.metric == name && x.labels.get("To") == to)
            .map(|x| x.value.clone())
            .unwrap_or_else(|| panic!("no {name} for {to:?}:\n{text}"))
    };
    let prometheus_parse::Value::Histogram(commits) =
        histogram("etcd_disk_backend_commit_duration_seconds", None)
    else {
        panic!("the backend commits are not a histogram:\n{text}");
    };
    let counts: Vec<(f64, f64)> = commits.iter().map(|b| (b.less_than, b.count)).collect();
    assert_eq!(counts, [(0.001, 5.0), (0.002, 7.0), (f64::INFINITY, 8.0)]);
    let prometheus_parse::Value::Histogram(trips) =
        histogram("etcd_network_peer_round_trip_time_seconds", Some("a1"))
    else {
        panic!("the round trips are not a histogram:\n{text}");
    };
    assert_eq!(trips.last().unwrap().count, 3.0);
    histogram("etcd_network_peer_round_trip_time_seconds", Some("b2"));
    assert!(
        text.contains("# TYPE etcd_network_peer_round_trip_time_seconds histogram"),
        "{text}"
    );
    let server_id = s.iter().find(|x| x.metric == "etcd_server_id").unwrap();
    assert_eq!(server_id.labels.get("server_id"), Some("7"));
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[tokio::test]
async fn health_follows_the_leader_and_readyz_the_apply_lag() {
    let fixed = Arc::new(Fixed(Mutex::new(leader_sample())));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (_views, feed) = tokio::sync::watch::channel(Arc::from("{}"));
    let server = tokio::spawn(serve(listener, fixed.clone(), feed, async {
        let _ = stopped.await;
    }));

    assert_eq!(http_get(addr, "/health").await.0, 200);
    assert_eq!(http_get(addr, "/livez").await, (200, "ok".to_string()));
    assert_eq!(http_get(addr, "/readyz").await.0, 200);
    let (status, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("keel_raft_term 3"), "{body}");

    fixed.0.lock().unwrap().applied_index = 0;
    fixed.0.lock().unwrap().commit_index = READY_APPLY_LAG_MAX + 1;
    assert_eq!(http_get(addr, "/health").await.0, 200);
    assert_eq!(http_get(addr, "/readyz").await.0, 503);

    fixed.0.lock().unwrap().leader_id = None;
    let (status, body) = http_get(addr, "/health").await;
    assert_eq!(status, 503);
    assert_eq!(body, r#"{"health":"false","reason":"no leader"}"#);

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
