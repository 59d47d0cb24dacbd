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
    let stderr = serve_error(keel(&["serve", "--election-timeout", "200"]));
    assert!(
        stderr.contains("raise --election-timeout to 500"),
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

#[test]
fn unknown_config_file_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keel.toml");
    std::fs::write(&file, "data_dir = \"x\"\n").unwrap();
    let stderr = serve_error(keel(&["serve", "--config", file.to_str().unwrap()]));
    assert!(stderr.contains("unknown field `data_dir`"), "{stderr}");
    assert!(stderr.contains("data-dir = "), "{stderr}");
}

fn value(samples: &[prometheus_parse::Sample], name: &str, role: Option<&str>) -> f64 {
    let sample = samples
        .iter()
        .find(|s| s.metric == name && role.is_none_or(|r| s.labels.get("role") == Some(r)))
        .unwrap_or_else(|| panic!("no series {name}"));
    match sample.value {
        prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Counter(v) => v,
        ref other => panic!("{name} is {other:?}"),
    }
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
    keel_ok(&["put", "k", "v", "--endpoints", &client_url]);
    assert_eq!(http_get(&side_car, "/readyz").unwrap().0, 200);

    let (status, text) = http_get(&side_car, "/metrics").unwrap();
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let s = &scrape.samples;
    assert!(value(s, "keel_raft_term", None) >= 1.0);
    assert_eq!(value(s, "keel_raft_role", Some("leader")), 1.0);
    assert_eq!(value(s, "keel_raft_role", Some("follower")), 0.0);
    assert_eq!(value(s, "keel_raft_has_leader", None), 1.0);
    assert!(value(s, "keel_raft_commit_index", None) >= 1.0);
    assert!(value(s, "keel_raft_applied_index", None) >= 1.0);
    assert!(value(s, "keel_db_size_bytes", None) > 0.0);

    // JSON logs: every line is one object.
    let first = logs.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(first.starts_with('{') && first.ends_with('}'), "{first}");

    terminate(member.0.id());
    let status = eventually(Duration::from_secs(15), "the member to stop", || {
        member.0.try_wait().unwrap()
    });
    assert!(status.success(), "keel serve exited with {status}");
}
