//! `keel cluster up|status|down` and the client commands, driven as a user
//! would: the cluster runs in the background, writes and reads go through
//! `keel` and `etcdctl`, a member is killed and brought back, and `down`
//! must leave no process behind.

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use support::*;

fn status_of(cluster: &LocalCluster) -> Status {
    Status::parse(&cluster.status_text())
}

/// `keel cluster status`, row by row: name → (role, warning), and the
/// RAFT LOG column.
struct Status {
    rows: Vec<(String, String, String)>,
    raft_logs: Vec<String>,
    summary: String,
}

impl Status {
    fn parse(text: &str) -> Status {
        let cells: Vec<Vec<String>> = text
            .lines()
            .filter(|l| l.starts_with("| m"))
            .map(|l| l.split('|').map(|c| c.trim().to_string()).collect())
            .collect();
        let rows = cells
            .iter()
            .map(|c| (c[1].clone(), c[4].clone(), c[11].clone()))
            .collect();
        let raft_logs = cells.iter().map(|c| c[9].clone()).collect();
        let summary = text.lines().last().unwrap_or_default().to_string();
        Status {
            rows,
            raft_logs,
            summary,
        }
    }

    fn leaders(&self) -> Vec<String> {
        self.rows
            .iter()
            .filter(|(_, role, _)| role == "leader")
            .map(|(name, _, _)| name.clone())
            .collect()
    }

    fn warning(&self, name: &str) -> &str {
        &self.rows.iter().find(|(n, _, _)| n == name).unwrap().2
    }
}

#[test]
fn cluster_survives_a_killed_leader_and_down_leaves_no_process() {
    let cluster = LocalCluster::start(3);
    let endpoints = cluster.endpoints();
    let ep = ["--endpoints", endpoints.as_str()];

    // Writes and reads through keel, and through etcdctl when installed.
    assert_eq!(
        keel_ok(&[&["put", "greeting", "hello"][..], &ep].concat()),
        "OK\n"
    );
    assert_eq!(
        keel_ok(&[&["get", "greeting"][..], &ep].concat()),
        "greeting\nhello\n"
    );
    if have("etcdctl") {
        assert_eq!(etcdctl(&endpoints, &["put", "tool", "etcdctl"]), "OK\n");
        assert_eq!(
            keel_ok(&[&["get", "tool", "--print-value-only"][..], &ep].concat()),
            "etcdctl\n"
        );
        assert_eq!(
            etcdctl(&endpoints, &["get", "greeting"]),
            "greeting\nhello\n"
        );
    } else {
        eprintln!("etcdctl is not installed: skipping its part (scripts/test installs it)");
    }

    // One leader, no warnings.
    let status = status_of(&cluster);
    assert_eq!(status.rows.len(), 3);
    let leaders = status.leaders();
    assert_eq!(leaders.len(), 1, "{}", status.summary);
    assert!(status.rows.iter().all(|(_, _, w)| w.is_empty()));
    assert!(
        status.raft_logs.iter().all(|l| l.ends_with(" entries")),
        "{:?}",
        status.raft_logs
    );

    // The members share this machine's cores: each gets its share of async
    // worker threads, at least one.
    let cores = std::thread::available_parallelism().unwrap().get();
    let expected = format!("TOKIO_WORKER_THREADS={}", (cores / 3).max(1));
    for name in ["m1", "m2", "m3"] {
        let pid = cluster.member(name)["pid"].as_integer().unwrap();
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        assert!(
            environ.split(|&b| b == 0).any(|v| v == expected.as_bytes()),
            "{name} was not started with {expected}"
        );
    }

    // Hand leadership to a chosen member, then kill it: status reports it
    // down, another member takes over, and writes go on.
    let chosen = ["m1", "m2", "m3"]
        .into_iter()
        .find(|m| *m != leaders[0])
        .unwrap();
    let moved = keel_ok(&[&["transfer-leader", chosen][..], &ep].concat());
    assert!(moved.contains(&format!("to {chosen}")), "{moved}");
    assert_eq!(status_of(&cluster).leaders(), [chosen]);
    let old_leader = chosen.to_string();
    let pid = cluster.member(&old_leader)["pid"].as_integer().unwrap() as u32;
    kill_hard(pid);
    let status = eventually(Duration::from_secs(30), "a new leader", || {
        let status = status_of(&cluster);
        let leaders = status.leaders();
        (leaders.len() == 1 && leaders[0] != old_leader).then_some(status)
    });
    assert!(
        status.warning(&old_leader).starts_with("DOWN"),
        "{}",
        status.warning(&old_leader)
    );
    assert_eq!(
        keel_ok(&[&["put", "after", "failover"][..], &ep].concat()),
        "OK\n"
    );

    // Bring it back: a second `cluster up` restarts only the missing
    // member, from its data, and returns once there is a leader.
    let again = keel_ok(&["cluster", "up", "--data-dir", &cluster.dir_arg()]);
    assert!(again.contains(&format!("Starting {old_leader}")), "{again}");
    let revived = cluster.member(&old_leader)["client-url"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .to_string();
    eventually(
        Duration::from_secs(30),
        "the revived member to catch up",
        || {
            let out = keel_ok(&["get", "after", "--serializable", "--endpoints", &revived]);
            (out == "after\nfailover\n").then_some(())
        },
    );
    let status = status_of(&cluster);
    assert_eq!(status.leaders().len(), 1);
    assert!(
        status.rows.iter().all(|(_, _, w)| w.is_empty()),
        "{:?}",
        status.rows
    );

    // `cluster down` stops the supervisor and every member.
    let down = keel_ok(&["cluster", "down", "--data-dir", &cluster.dir_arg()]);
    assert!(down.contains("stopped"), "{down}");
    let leftovers = processes_using(cluster.path());
    assert!(leftovers.is_empty(), "processes left behind: {leftovers:?}");
}

#[test]
fn snapshot_save_writes_the_whole_file() {
    let cluster = LocalCluster::start(1);
    let endpoints = cluster.endpoints();
    keel_ok(&["put", "k", "v", "--endpoints", &endpoints]);
    let file = cluster.path().join("backup.db");
    let saved = keel_ok(&[
        "snapshot",
        "save",
        file.to_str().unwrap(),
        "--endpoints",
        &endpoints,
    ]);
    assert!(saved.starts_with("Snapshot saved at"), "{saved}");
    assert!(std::fs::metadata(&file).unwrap().len() > 0);
    assert!(!cluster.path().join("backup.db.part").exists());
}

#[test]
fn watch_sees_puts_and_deletes_in_order() {
    let cluster = LocalCluster::start(1);
    let endpoints = cluster.endpoints();
    let mut watch = Killed(
        keel(&["watch", "color", "--prefix", "--endpoints", &endpoints])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let lines = lines_of(watch.0.stdout.take().unwrap());
    // The watch is created asynchronously; write until the first event shows.
    let first = eventually(Duration::from_secs(20), "the watch to start", || {
        keel_ok(&["put", "color/sky", "blue", "--endpoints", &endpoints]);
        lines.recv_timeout(Duration::from_millis(500)).ok()
    });
    assert_eq!(first, "PUT");
    keel_ok(&["del", "color/sky", "--endpoints", &endpoints]);
    let seen = wait_for_line(&lines, "DELETE", Duration::from_secs(10));
    assert_eq!(seen.last().unwrap(), "DELETE");
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(5)).unwrap(),
        "color/sky"
    );
}

#[test]
fn rerun_after_down_restarts_the_same_cluster_from_its_data() {
    let cluster = LocalCluster::start(1);
    let endpoints = cluster.endpoints();
    keel_ok(&["put", "kept", "yes", "--endpoints", &endpoints]);
    let member_id = keel_ok(&["member", "list", "--endpoints", &endpoints]);
    keel_ok(&["cluster", "down", "--data-dir", &cluster.dir_arg()]);

    let again = keel_ok(&[
        "cluster",
        "up",
        "--detach",
        "--data-dir",
        &cluster.dir_arg(),
    ]);
    assert!(again.contains("is up"), "{again}");
    assert_eq!(
        keel_ok(&["get", "kept", "--endpoints", &endpoints]),
        "kept\nyes\n"
    );
    assert_eq!(
        keel_ok(&["member", "list", "--endpoints", &endpoints]),
        member_id
    );

    let error = run_bounded(
        keel(&[
            "cluster",
            "up",
            "--members",
            "3",
            "--data-dir",
            &cluster.dir_arg(),
        ]),
        Duration::from_secs(30),
    );
    assert!(!error.status.success());
    let stderr = String::from_utf8_lossy(&error.stderr);
    assert!(stderr.contains("holds a 1-member cluster"), "{stderr}");
}

#[test]
fn down_without_a_cluster_says_how_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    let missing: PathBuf = dir.path().join("none");
    let output = run_bounded(
        keel(&["cluster", "down", "--data-dir", missing.to_str().unwrap()]),
        Duration::from_secs(10),
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("keel cluster up --data-dir"), "{stderr}");
}

/// tonic reads at most 4 MiB per reply by default; etcdctl reads up to
/// 2 GiB, and so must `keel get`.
#[test]
fn a_get_whose_reply_passes_four_mebibytes_succeeds() {
    let cluster = LocalCluster::start(1);
    let endpoints = cluster.endpoints();
    let value = "v".repeat(100 * 1024);
    for i in 0..50 {
        keel_ok(&[
            "put",
            &format!("big/{i:02}"),
            &value,
            "--endpoints",
            &endpoints,
        ]);
    }
    let got = keel_ok(&["get", "big/", "--prefix", "--endpoints", &endpoints]);
    assert_eq!(got.matches(&value).count(), 50);
}
