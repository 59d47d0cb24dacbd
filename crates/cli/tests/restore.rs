//! Backup, restore and disaster recovery against real `keel serve`
//! processes, checked with stock `etcdctl`: a snapshot saved from one
//! cluster, checked, refused when damaged, restored into three fresh data
//! directories that start as a new cluster holding exactly its keys and
//! revision; that cluster's etcd metrics on the client port; then two of
//! its members lost for good, the survivor restarted with
//! `--force-new-cluster`, and a fresh member added that catches up.

mod support;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use support::{
    Killed, etcdctl, etcdctl_output, eventually, free_port, have, http_get, keel, keel_ok,
    run_bounded,
};

/// A `keel serve` process and the ports it was given.
struct Member {
    name: String,
    data_dir: PathBuf,
    client: u16,
    peer: u16,
    process: Option<Killed>,
}

impl Member {
    fn new(root: &Path, name: &str) -> Member {
        Member {
            name: name.to_owned(),
            data_dir: root.join(name),
            client: free_port(),
            peer: free_port(),
            process: None,
        }
    }

    fn client_addr(&self) -> String {
        format!("127.0.0.1:{}", self.client)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer)
    }

    /// Starts `keel serve` on this member's directory with `extra` flags;
    /// its log goes to `<data-dir>.log`.
    fn start(&mut self, token: &str, extra: &[&str]) {
        let log = File::create(self.data_dir.with_extension("log")).unwrap();
        let data_dir = self.data_dir.to_str().unwrap().to_owned();
        let client_url = format!("http://{}", self.client_addr());
        let peer_url = self.peer_url();
        let mut args = vec![
            "serve",
            "--name",
            &self.name,
            "--data-dir",
            &data_dir,
            "--listen-client-urls",
            &client_url,
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
            "--initial-cluster-token",
            token,
        ];
        args.extend_from_slice(extra);
        let child = keel(&args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.process = Some(Killed(child));
    }

    /// SIGKILL, as a machine that is lost for good.
    fn kill(&mut self) {
        self.process = None;
    }

    /// SIGTERM, and wait for the process to end.
    fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            support::terminate(process.0.id());
            eventually(Duration::from_secs(15), "the member to stop", || {
                process.0.try_wait().unwrap()
            });
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default()
    }
}

/// The revision in a `get -w json` reply's header.
fn revision(endpoints: &str) -> i64 {
    let json = etcdctl(endpoints, &["get", "nothing", "-w", "json"]);
    let reply: serde_json::Value = serde_json::from_str(&json).unwrap();
    reply["header"]["revision"].as_i64().unwrap()
}

/// `endpoint hashkv`'s hash for one endpoint.
fn hashkv(endpoint: &str) -> u32 {
    let line = etcdctl(endpoint, &["endpoint", "hashkv"]);
    line.trim().rsplit(", ").next().unwrap().parse().unwrap()
}

/// A series' value in a Prometheus text page (the first with `labels`).
fn metric(page: &str, name: &str, labels: &str) -> Option<f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let (series, _) = l.rsplit_once(' ').unwrap_or_default();
            series == name || (series.starts_with(&format!("{name}{{")) && l.contains(labels))
        })
        .and_then(|l| l.rsplit_once(' ')?.1.parse().ok())
}

/// Runs `keel args…` expecting it to fail; its stderr.
fn keel_fails(args: &[&str]) -> String {
    let output = run_bounded(keel(args), Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(!output.status.success(), "keel {args:?} succeeded");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn restored_cluster_holds_the_snapshot_serves_metrics_and_recovers_from_losing_its_quorum() {
    if !have("etcdctl") {
        eprintln!("etcdctl is not installed: skipping (scripts/test installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();

    // A source cluster of one member, with history: overwrites and a
    // deletion, so that the revision is not the key count.
    let mut source = Member::new(root, "source");
    source.start("source-token", &[]);
    let src = source.client_addr();
    eventually(Duration::from_secs(30), "the source to serve", || {
        etcdctl_output(&src, &["put", "k00", "first"])
            .status
            .success()
            .then_some(())
    });
    for i in 0..20 {
        etcdctl(&src, &["put", &format!("k{i:02}"), &format!("v{i}")]);
    }
    etcdctl(&src, &["del", "k07"]);
    let keys = etcdctl(&src, &["get", "--prefix", "k"]);
    let source_revision = revision(&src);
    let source_hash = hashkv(&src);

    // Save with keel and with etcdctl: the same state either way.
    let snapshot = root.join("backup.db");
    keel_ok(&[
        "snapshot",
        "save",
        snapshot.to_str().unwrap(),
        "--endpoints",
        &src,
    ]);
    let by_etcdctl = root.join("by-etcdctl.db");
    etcdctl(&src, &["snapshot", "save", by_etcdctl.to_str().unwrap()]);
    let status = keel_ok(&["snapshot", "status", snapshot.to_str().unwrap()]);
    let columns: Vec<&str> = status.trim().split(", ").collect();
    assert_eq!(columns.len(), 4, "{status}");
    assert_eq!(columns[0], format!("{source_hash:x}"), "{status}");
    assert_eq!(columns[1], source_revision.to_string(), "{status}");
    // 21 puts and one deletion: every stored revision counts.
    assert_eq!(columns[2], "22", "{status}");
    assert_eq!(
        keel_ok(&["snapshot", "status", by_etcdctl.to_str().unwrap()]),
        status
    );
    source.stop();

    // Damaged files are refused with a reason, and restore nothing.
    let bytes = std::fs::read(&snapshot).unwrap();
    let truncated = root.join("truncated.db");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    let error = keel_fails(&["snapshot", "status", truncated.to_str().unwrap()]);
    assert!(error.contains("truncated"), "{error}");
    let flipped = root.join("flipped.db");
    let mut damaged = bytes.clone();
    damaged[40] ^= 0x01;
    std::fs::write(&flipped, &damaged).unwrap();
    let error = keel_fails(&["snapshot", "status", flipped.to_str().unwrap()]);
    assert!(error.contains("SHA-256 does not match"), "{error}");
    let nowhere = root.join("nowhere");
    let error = keel_fails(&[
        "snapshot",
        "restore",
        flipped.to_str().unwrap(),
        "--data-dir",
        nowhere.to_str().unwrap(),
    ]);
    assert!(error.contains("damaged"), "{error}");
    assert!(!nowhere.exists());

    // Restore into three fresh directories, one per member of a new
    // cluster, and start them with nothing but their directories, URLs
    // and the new token.
    let token = "restored-token";
    let mut members: Vec<Member> = ["r1", "r2", "r3"]
        .iter()
        .map(|name| Member::new(root, name))
        .collect();
    let initial_cluster = members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url()))
        .collect::<Vec<_>>()
        .join(",");
    for m in &members {
        keel_ok(&[
            "snapshot",
            "restore",
            snapshot.to_str().unwrap(),
            "--name",
            &m.name,
            "--data-dir",
            m.data_dir.to_str().unwrap(),
            "--initial-cluster",
            &initial_cluster,
            "--initial-cluster-token",
            token,
            "--initial-advertise-peer-urls",
            &m.peer_url(),
        ]);
    }
    let error = keel_fails(&[
        "snapshot",
        "restore",
        snapshot.to_str().unwrap(),
        "--name",
        "r1",
        "--data-dir",
        members[0].data_dir.to_str().unwrap(),
        "--initial-cluster",
        &initial_cluster,
        "--initial-advertise-peer-urls",
        &members[0].peer_url(),
    ]);
    assert!(error.contains("exists"), "{error}");
    for m in &mut members {
        m.start(token, &[]);
    }
    let all = members
        .iter()
        .map(Member::client_addr)
        .collect::<Vec<_>>()
        .join(",");
    eventually(
        Duration::from_secs(30),
        "the restored cluster's leader",
        || {
            etcdctl_output(&all, &["endpoint", "health"])
                .status
                .success()
                .then_some(())
        },
    );
    assert_eq!(etcdctl(&all, &["get", "--prefix", "k"]), keys);
    for m in &members {
        let one = m.client_addr();
        assert_eq!(revision(&one), source_revision, "{}", m.name);
        assert_eq!(hashkv(&one), source_hash, "{}", m.name);
        let status = etcdctl(&one, &["endpoint", "status"]);
        assert!(status.contains(&format!("{one}, ")), "{status}");
        assert!(status.contains(", 3.4.23, "), "{status}");
    }
    let member_list = etcdctl(&all, &["member", "list"]);
    assert_eq!(member_list.lines().count(), 3, "{member_list}");
    assert!(!member_list.contains("source"), "{member_list}");

    // etcd's metrics on the client port, moving with writes.
    let first = members[0].client_addr();
    let page = || http_get(&first, "/metrics").filter(|(s, _)| *s == 200);
    let before = eventually(Duration::from_secs(15), "a leader in /metrics", || {
        let (_, page) = page()?;
        (metric(&page, "etcd_server_has_leader", "")? == 1.0).then_some(page)
    });
    let put_ok = r#"grpc_code="OK",grpc_method="Put""#;
    let committed = metric(&before, "etcd_server_proposals_committed_total", "").unwrap();
    let commits_count = "etcd_disk_backend_commit_duration_seconds_count";
    let store_commits = metric(&before, commits_count, "").unwrap();
    let puts = metric(&before, "grpc_server_handled_total", put_ok).unwrap_or(0.0);
    for i in 0..3 {
        etcdctl(&first, &["put", &format!("after{i}"), "x"]);
    }
    eventually(Duration::from_secs(15), "the puts in /metrics", || {
        let (_, page) = page()?;
        let moved = metric(&page, "etcd_server_proposals_committed_total", "")? >= committed + 3.0
            && metric(&page, "grpc_server_handled_total", put_ok)? == puts + 3.0
            && metric(&page, "etcd_debugging_mvcc_keys_total", "")? >= 23.0
            && metric(&page, commits_count, "")? >= store_commits + 3.0;
        moved.then_some(())
    });
    // Each of the two peers probed (every 4 s, as etcd's prober), its
    // round trips under etcd's name and `To` label.
    eventually(
        Duration::from_secs(15),
        "peer round trips in /metrics",
        || {
            let (_, page) = page()?;
            let probed = page
                .lines()
                .filter(|l| l.starts_with("etcd_network_peer_round_trip_time_seconds_count{To=\""))
                .filter(|l| {
                    l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()) >= Some(1.0)
                })
                .count();
            (probed == 2).then_some(())
        },
    );
    assert_eq!(http_get(&first, "/livez"), Some((200, "ok".into())));
    assert_eq!(
        http_get(&first, "/version"),
        Some((
            200,
            r#"{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}"#.into()
        ))
    );
    let (health, body) = http_get(&first, "/health").unwrap();
    assert_eq!(health, 200, "{body}");

    // Two members lost for good: no quorum, so no writes.
    members[1].kill();
    members[2].kill();
    let refused = etcdctl_output(&first, &["put", "lost", "x", "--command-timeout", "2s"]);
    assert!(!refused.status.success());

    // The survivor restarts as a one-member cluster with its data.
    members[0].stop();
    members[0].start(token, &["--force-new-cluster"]);
    eventually(
        Duration::from_secs(30),
        "writes after --force-new-cluster",
        || {
            etcdctl_output(&first, &["put", "recovered", "yes"])
                .status
                .success()
                .then_some(())
        },
    );
    assert!(members[0].log().contains("--force-new-cluster"));
    let member_list = etcdctl(&first, &["member", "list"]);
    assert_eq!(member_list.lines().count(), 1, "{member_list}");

    // A fresh member added back catches up with everything, the restored
    // keys included (they reach it as the new log's first snapshot).
    let mut fresh = Member::new(root, "r4");
    let added = etcdctl(
        &first,
        &[
            "member",
            "add",
            "r4",
            "--learner",
            "--peer-urls",
            &fresh.peer_url(),
        ],
    );
    let id = added.split_whitespace().nth(1).unwrap().to_owned();
    let joined = format!("r1={},r4={}", members[0].peer_url(), fresh.peer_url());
    fresh.start(
        token,
        &[
            "--initial-cluster",
            &joined,
            "--initial-cluster-state",
            "existing",
        ],
    );
    let fresh_addr = fresh.client_addr();
    let expected = etcdctl(&first, &["get", "--prefix", ""]);
    eventually(
        Duration::from_secs(30),
        "the new member to catch up",
        || {
            let local = etcdctl_output(&fresh_addr, &["get", "--prefix", "", "--consistency=s"]);
            (local.status.success() && local.stdout == expected.as_bytes()).then_some(())
        },
    );
    assert_eq!(hashkv(&fresh_addr), hashkv(&first));
    etcdctl(&first, &["member", "promote", &id]);
    let both = format!("{first},{fresh_addr}");
    etcdctl(&both, &["put", "two-voters", "yes"]);
    assert_eq!(
        etcdctl(&fresh_addr, &["get", "two-voters", "--print-value-only"]),
        "yes\n"
    );
    drop(fresh);
    drop(members);
}
