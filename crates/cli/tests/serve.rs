//! `keel serve` as a user runs it: configuration errors, the precedence of
//! flags, variables and the config file, the metrics side-car, and a clean
//! stop on SIGTERM.

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::*;

fn serve_error(command: std::process::Command) -> String {
    let output = run_bounded(command, Duration::from_secs(20));
    assert!(!output.status.success(), "keel serve should have refused");
    String::from_utf8_lossy(&output.stderr).to_string()
}

#[test]
fn member_missing_from_initial_cluster_is_refused_naming_the_flag() {
    let stderr = serve_error(keel(&[
        "serve",
        "--name",
        "b",
        "--initial-cluster",
        "a=http://127.0.0.1:1",
    ]));
    assert!(
        stderr.contains("--initial-cluster does not list this member `b`"),
        "{stderr}"
    );
    assert!(stderr.contains("add `b=<its peer URL>`"), "{stderr}");
}

#[test]
fn short_election_timeout_is_refused_with_the_minimum() {
    let stderr = serve_error(keel(&[
        "serve",
        "--heartbeat-interval",
        "50",
        "--election-timeout",
        "100",
    ]));
    assert!(
        stderr.contains("raise --election-timeout to 250"),
        "{stderr}"
    );
}

/// The name shows up in the refusal, so the refusal tells which source won.
#[test]
fn flag_beats_variable_beats_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keel.toml");
    std::fs::write(
        &file,
        "name = \"from-file\"\ninitial-cluster = \"other=http://127.0.0.1:1\"\n",
    )
    .unwrap();
    let config = file.to_str().unwrap();

    let stderr = serve_error(keel(&["serve", "--config", config]));
    assert!(stderr.contains("this member `from-file`"), "{stderr}");

    let mut with_env = keel(&["serve", "--config", config]);
    with_env.env("KEEL_NAME", "from-env");
    let stderr = serve_error(with_env);
    assert!(stderr.contains("this member `from-env`"), "{stderr}");

    let mut with_flag = keel(&["serve", "--config", config, "--name", "from-flag"]);
    with_flag.env("KEEL_NAME", "from-env");
    let stderr = serve_error(with_flag);
    assert!(stderr.contains("this member `from-flag`"), "{stderr}");
}

/// The auth flags reach the member, which refuses what it cannot serve
/// before it binds a port; the file takes them too.
#[test]
fn unusable_auth_settings_are_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("m1");
    let (client, peer) = (free_port(), free_port());
    let serve = |flags: &[&str]| {
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut args = vec![
            "serve",
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--listen-client-urls",
            &client_url,
            "--listen-peer-urls",
            &peer_url,
        ];
        args.extend(flags);
        serve_error(keel(&args))
    };
    for (flags, expected) in [
        (
            &[
                "--auth-token",
                "jwt,pub-key=a.pem,priv-key=a.key,sign-method=RS256",
            ][..],
            "--auth-token \"jwt\": unsupported token type (Keel serves `simple` tokens only)",
        ),
        (
            &["--auth-token-ttl", "0"],
            "--auth-token-ttl must be positive",
        ),
        (
            &["--bcrypt-cost", "3"],
            "--bcrypt-cost must be between 4 and 31",
        ),
    ] {
        let stderr = serve(flags);
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
    }
    let file = dir.path().join("keel.toml");
    std::fs::write(&file, "bcrypt-cost = 32\n").unwrap();
    let stderr = serve(&["--config", file.to_str().unwrap()]);
    assert!(
        stderr.contains("--bcrypt-cost must be between 4 and 31"),
        "{stderr}"
    );
}

#[test]
fn unknown_config_file_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keel.toml");
    std::fs::write(&file, "data_dir = \"x\"\n").unwrap();
    let stderr = serve_error(keel(&["serve", "--config", file.to_str().unwrap()]));
    assert!(stderr.contains("unknown field `data_dir`"), "{stderr}");
    assert!(stderr.contains("data-dir = "), "{stderr}");
}

/// `keel serve` without a token derives the IDs the `keel-kv` binary
/// derives without one (`crates/kv/tests/default_flags.rs`): both default
/// to `INITIAL_CLUSTER_TOKEN_DEFAULT`.
#[test]
fn a_member_without_a_token_derives_its_ids_from_the_default_token() {
    use keel_kv::server::INITIAL_CLUSTER_TOKEN_DEFAULT;
    use keel_kv::server::ids::{cluster_id, member_id};

    let dir = tempfile::tempdir().unwrap();
    let peer_url = format!("http://127.0.0.1:{}", free_port());
    let data_dir = dir.path().join("m1");
    let mut command = keel(&[
        "serve",
        "--name",
        "m1",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--listen-client-urls",
        &format!("http://127.0.0.1:{}", free_port()),
        "--listen-peer-urls",
        &peer_url,
    ]);
    let mut member = Killed(
        command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let logs = lines_of(member.0.stderr.take().unwrap());
    let seen = wait_for_line(&logs, "serving etcd v3 API", Duration::from_secs(30));
    let serving = seen.last().unwrap();
    let member = member_id(INITIAL_CLUSTER_TOKEN_DEFAULT, &[peer_url]);
    let cluster = cluster_id(INITIAL_CLUSTER_TOKEN_DEFAULT);
    assert!(serving.contains(&format!("{member:x}")), "{serving}");
    assert!(serving.contains(&format!("{cluster:x}")), "{serving}");
}

/// The side-car's scrape, parsed; `None` while it does not answer 200.
fn scrape(side_car: &str) -> Option<Vec<prometheus_parse::Sample>> {
    let (status, text) = http_get(side_car, "/metrics")?;
    if status != 200 {
        return None;
    }
    let lines = text.lines().map(|l| Ok(l.to_string()));
    Some(prometheus_parse::Scrape::parse(lines).unwrap().samples)
}

fn series<'a>(
    samples: &'a [prometheus_parse::Sample],
    name: &str,
    role: Option<&str>,
) -> &'a prometheus_parse::Sample {
    samples
        .iter()
        .find(|s| s.metric == name && role.is_none_or(|r| s.labels.get("role") == Some(r)))
        .unwrap_or_else(|| panic!("no series {name}"))
}

fn value(samples: &[prometheus_parse::Sample], name: &str, role: Option<&str>) -> f64 {
    match series(samples, name, role).value {
        // A histogram's `_sum` and `_count` parse as untyped.
        prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("{name} is {other:?}"),
    }
}

/// A histogram's observation count, checking its shape on the way:
/// cumulative buckets ending in `+Inf` equal to the count.
fn histogram_count(samples: &[prometheus_parse::Sample], name: &str) -> f64 {
    let prometheus_parse::Value::Histogram(buckets) = &series(samples, name, None).value else {
        panic!("{name} is not a histogram");
    };
    assert!(buckets.len() > 2, "{name}: {buckets:?}");
    assert!(
        buckets.windows(2).all(|w| w[0].count <= w[1].count),
        "{name}: {buckets:?}"
    );
    let last = buckets.last().unwrap();
    assert!(last.less_than.is_infinite(), "{name}: {buckets:?}");
    assert_eq!(value(samples, &format!("{name}_count"), None), last.count);
    assert!(value(samples, &format!("{name}_sum"), None) >= 0.0);
    last.count
}

#[test]
fn single_member_serves_metrics_health_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer, metrics) = (free_port(), free_port(), free_port());
    let client_url = format!("http://127.0.0.1:{client}");
    let data_dir = dir.path().join("m1");
    let mut command = keel(&[
        "serve",
        "--name",
        "m1",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--listen-client-urls",
        &client_url,
        "--listen-peer-urls",
        &format!("http://127.0.0.1:{peer}"),
        "--listen-metrics-urls",
        &format!("http://127.0.0.1:{metrics}"),
        "--log-format",
        "json",
        // Small, so that the member snapshots during the test.
        "--snapshot-count",
        "3",
    ]);
    let mut member = Killed(
        command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let logs = lines_of(member.0.stderr.take().unwrap());
    let side_car = format!("127.0.0.1:{metrics}");
    eventually(Duration::from_secs(30), "a healthy member", || {
        let (status, _) = http_get(&side_car, "/health")?;
        (status == 200).then_some(())
    });
    for i in 0..4 {
        keel_ok(&["put", &format!("k{i}"), "v", "--endpoints", &client_url]);
    }
    // A smoke run of the load generator: every request answered, no errors.
    let bench = keel_ok(&[
        "bench",
        "put",
        "--endpoints",
        &client_url,
        "--total",
        "50",
        "--clients",
        "4",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&bench).unwrap();
    assert_eq!(report["ok"], 50, "{bench}");
    assert_eq!(report["errors"], serde_json::json!({}), "{bench}");
    assert_eq!(http_get(&side_car, "/readyz").unwrap().0, 200);

    // The member republishes its metrics every heartbeat: wait for the
    // puts and the snapshots they trigger to show (the second compacts the
    // log to the first).
    let s = eventually(Duration::from_secs(15), "the puts in /metrics", || {
        let s = scrape(&side_car)?;
        let done = value(&s, "keel_proposals_committed_total", None) >= 4.0
            && value(&s, "keel_snapshots_created_total", None) >= 2.0;
        done.then_some(s)
    });
    let s = &s;
    let id = series(s, "keel_member_id", None).labels.get("member_id");
    assert!(id.is_some_and(|id| !id.is_empty()), "{id:?}");
    assert!(value(s, "keel_raft_term", None) >= 1.0);
    assert_eq!(value(s, "keel_raft_role", Some("leader")), 1.0);
    for role in ["follower", "pre-candidate", "candidate", "learner"] {
        assert_eq!(value(s, "keel_raft_role", Some(role)), 0.0, "{role}");
    }
    assert_eq!(value(s, "keel_raft_has_leader", None), 1.0);
    let commit = value(s, "keel_raft_commit_index", None);
    assert!(commit >= 4.0);
    assert!(value(s, "keel_raft_applied_index", None) >= 1.0);
    assert!(value(s, "keel_db_size_bytes", None) > 0.0);
    assert!(value(s, "keel_disk_free_bytes", None) > 0.0);
    assert_eq!(
        value(s, "keel_disk_reserve_bytes", None),
        keel_kv::service::DISK_RESERVE_BYTES_DEFAULT as f64
    );
    let (first, last) = (
        value(s, "keel_raft_log_first_index", None),
        value(s, "keel_raft_log_last_index", None),
    );
    assert!(first > 1.0, "the snapshot compacted the log");
    assert!(last >= commit);
    assert_eq!(value(s, "keel_raft_log_entries", None), last + 1.0 - first);
    assert_eq!(value(s, "keel_proposals_failed_total", None), 0.0);
    assert_eq!(value(s, "keel_proposals_pending", None), 0.0);
    assert_eq!(value(s, "keel_peer_send_failures_total", None), 0.0);
    assert_eq!(value(s, "keel_snapshots_installed_total", None), 0.0);
    // The leader proposes its clients' writes itself.
    assert_eq!(value(s, "keel_forwarded_commands_total", None), 0.0);
    assert_eq!(value(s, "keel_forwarded_batches_total", None), 0.0);
    let appends = histogram_count(s, "keel_log_append_duration_seconds");
    assert!(appends >= 4.0, "one write per put at least: {appends}");
    assert_eq!(
        histogram_count(s, "keel_log_fsync_duration_seconds"),
        appends
    );
    let commits = histogram_count(s, "etcd_disk_backend_commit_duration_seconds");
    assert!(
        commits >= 4.0,
        "one store commit per put at least: {commits}"
    );

    // JSON logs: every line is one object.
    let first = logs.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(first.starts_with('{') && first.ends_with('}'), "{first}");

    terminate(member.0.id());
    let status = eventually(Duration::from_secs(15), "the member to stop", || {
        member.0.try_wait().unwrap()
    });
    assert!(status.success(), "keel serve exited with {status}");
}
