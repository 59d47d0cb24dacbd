//! `keel` client commands with `--user`, against a member with auth on:
//! the token serves the user's permitted keys, other keys and a wrong
//! password are refused with etcd's errors. Auth is set up with stock
//! etcdctl; skips (passing, with a message) when it is not installed.

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::*;

#[test]
fn keel_with_user_sends_a_token_and_is_refused_outside_its_permissions() {
    if !have("etcdctl") {
        eprintln!("SKIPPED: etcdctl is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
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
        &peer_url,
        "--initial-cluster",
        &format!("m1={peer_url}"),
        "--bcrypt-cost",
        "4",
    ]);
    let _member = Killed(
        command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let endpoint = format!("127.0.0.1:{client}");
    eventually(Duration::from_secs(20), "the member serves", || {
        keel_run(&["put", "k", "v", "--endpoints", &endpoint])
            .0
            .then_some(())
    });

    for args in [
        &["user", "add", "root:rootpw"][..],
        &["user", "grant-role", "root", "root"],
        &["user", "add", "alice:alicepw"],
        &["role", "add", "app"],
        &[
            "role",
            "grant-permission",
            "app",
            "--prefix=true",
            "readwrite",
            "app/",
        ],
        &["user", "grant-role", "alice", "app"],
        &["auth", "enable"],
    ] {
        etcdctl(&endpoint, args);
    }

    let as_alice = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--endpoints", &endpoint, "--user", "alice:alicepw"]);
        keel_run(&all)
    };
    assert_eq!(as_alice(&["put", "app/1", "one"]), (true, "OK\n".into()));
    assert_eq!(as_alice(&["get", "app/1"]), (true, "app/1\none\n".into()));
    let (ok, err) = as_alice(&["put", "other", "x"]);
    assert!(
        !ok && err.contains("etcdserver: permission denied"),
        "{err}"
    );
    let (ok, err) = keel_run(&["get", "app/1", "--endpoints", &endpoint]);
    assert!(
        !ok && err.contains("etcdserver: user name is empty"),
        "{err}"
    );
    let (ok, err) = keel_run(&[
        "get",
        "app/1",
        "--endpoints",
        &endpoint,
        "--user",
        "alice",
        "--password",
        "wrong",
    ]);
    assert!(
        !ok && err.contains("authentication failed, invalid user ID or password"),
        "{err}"
    );
    let (ok, err) = keel_run(&["get", "app/1", "--endpoints", &endpoint, "--user", "alice"]);
    assert!(!ok && err.contains("--password"), "{err}");
}
