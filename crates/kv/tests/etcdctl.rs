//! Debian's `etcdctl` (v3.4) against a `keel-kv` server, and, when the
//! `etcd` binary is installed too, the same commands against real etcd with
//! the outputs compared line by line.
//!
//! Skips (passing, with a message) when `etcdctl` is not installed and
//! cannot be installed.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have(binary: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {binary}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs Debian's etcd client if it is missing and we can.
fn etcdctl_available() -> bool {
    if !have("etcdctl") {
        let _ = Command::new("timeout")
            .args(["300", "apt-get", "install", "-y", "-q", "etcd-client"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    have("etcdctl")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn etcdctl(endpoint: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--command-timeout=5s")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // etcdctl prints its error as the last stderr line; retries log JSON.
    let error = stderr
        .lines()
        .filter(|l| l.starts_with("Error:"))
        .collect::<Vec<_>>()
        .join("\n");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), error)
}

fn wait_healthy(endpoint: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        // `endpoint health` reports on stderr.
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args([&format!("--endpoints={endpoint}"), "endpoint", "health"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stderr).contains("is healthy") {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{endpoint} never became healthy");
}

fn start_keel(dir: &Path) -> (Killed, String) {
    let (port, peer_port) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let child = Command::new(env!("CARGO_BIN_EXE_keel-kv"))
        .args(["--name", "k1", "--data-dir"])
        .arg(dir)
        .args(["--listen-client-urls", &url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("k1={peer_url}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (Killed(child), format!("127.0.0.1:{port}"))
}

fn start_etcd(dir: &Path) -> (Killed, String) {
    let (client, peer) = (free_port(), free_port());
    let child = Command::new("etcd")
        .arg("--data-dir")
        .arg(dir)
        .args([
            "--listen-client-urls",
            &format!("http://127.0.0.1:{client}"),
        ])
        .args([
            "--advertise-client-urls",
            &format!("http://127.0.0.1:{client}"),
        ])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args([
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
        ])
        .args([
            "--initial-cluster",
            &format!("default=http://127.0.0.1:{peer}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (Killed(child), format!("127.0.0.1:{client}"))
}

const TXN: &str = "value(\"a\") = \"1\"\n\nput t1 yes\nget a\n\nput t1 no\n\n";

/// The scripted session; every output must be identical on etcd and Keel.
fn session(endpoint: &str) -> Vec<(String, String)> {
    let steps: Vec<(Vec<&str>, Option<&str>)> = vec![
        (vec!["put", "a", "1"], None),
        (vec!["put", "a", "2", "--prev-kv"], None),
        (vec!["put", "ab", "x"], None),
        (vec!["put", "b", "y"], None),
        (vec!["get", "a"], None),
        (vec!["get", "a", "--rev=1"], None),
        (vec!["get", "a", "--prefix"], None),
        (vec!["get", "a", "--prefix", "--keys-only"], None),
        (vec!["get", "a", "--from-key", "--limit=2"], None),
        (
            vec!["get", "a", "--prefix", "--sort-by=VALUE", "--order=DESCEND"],
            None,
        ),
        (
            vec!["txn"],
            Some("value(\"a\") = \"2\"\n\nput t1 yes\nget a\n\nput t1 no\n\n"),
        ),
        (vec!["txn"], Some(TXN)),
        (vec!["get", "t1"], None),
        (vec!["del", "a", "--prev-kv"], None),
        (vec!["del", "nothing"], None),
        (vec!["get", "", "--from-key", "--keys-only"], None),
        (vec!["get", "a", "--rev=99"], None),
        (vec!["compact", "3"], None),
        (vec!["get", "a", "--rev=2"], None),
        (vec!["watch", "a", "--rev=1"], None),
        (vec!["watch", "ab", "--rev=4"], None),
        (vec!["lease", "timetolive", "12345"], None),
        (vec!["lease", "revoke", "12345"], None),
    ];
    steps
        .into_iter()
        .map(|(args, stdin)| {
            let label = args.join(" ");
            let mut out = etcdctl(endpoint, &args, stdin);
            if args[0] == "watch" {
                // A watch that is not canceled runs forever: it was given
                // its events by now; what matters is what it printed.
                out = out.lines().take(3).collect::<Vec<_>>().join("\n");
            }
            (label, out)
        })
        .collect()
}

#[test]
fn etcdctl_session_matches_etcd() {
    if !etcdctl_available() {
        eprintln!("SKIPPED: etcdctl is not installed and `apt-get install etcd-client` failed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_keel, endpoint) = start_keel(&dir.path().join("keel"));
    wait_healthy(&endpoint);
    let keel = session_with_timeout(&endpoint);
    assert_eq!(keel[0].1.trim(), "OK");
    assert!(keel[1].1.contains("OK\na\n1"), "{:?}", keel[1]);

    if !have("etcd") {
        eprintln!("etcd is not installed: compared nothing, checked Keel alone");
        return;
    }
    let (_etcd, etcd_endpoint) = start_etcd(&dir.path().join("etcd"));
    wait_healthy(&etcd_endpoint);
    let etcd = session_with_timeout(&etcd_endpoint);
    for ((label, ours), (_, theirs)) in keel.iter().zip(&etcd) {
        assert_eq!(
            ours.trim(),
            theirs.trim(),
            "`etcdctl {label}` differs from etcd"
        );
    }
}

/// Runs the session, bounding watches (which never end by themselves).
fn session_with_timeout(endpoint: &str) -> Vec<(String, String)> {
    // `watch` blocks; wrap etcdctl in `timeout` by putting it on PATH.
    let shim = tempfile::tempdir().unwrap();
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v etcdctl"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let script = format!("#!/bin/sh\nexec timeout 3 {} \"$@\"\n", real.trim());
    let path = shim.path().join("etcdctl");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let old_path = std::env::var("PATH").unwrap_or_default();
    // SAFETY: this test binary runs this one test; nothing reads PATH concurrently.
    unsafe { std::env::set_var("PATH", format!("{}:{old_path}", shim.path().display())) };
    let result = session(endpoint);
    unsafe { std::env::set_var("PATH", old_path) };
    result
}
