//! The `keel-kv` binary's defaults are the member's defaults, read from
//! their owners: a member started with no token derives its IDs from
//! `INITIAL_CLUSTER_TOKEN_DEFAULT`, the token `keel serve` defaults to
//! too (`crates/cli/tests/serve.rs` checks the same IDs from `keel serve`),
//! so members started with either binary's defaults agree on IDs.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use keel_kv::server::INITIAL_CLUSTER_TOKEN_DEFAULT;
use keel_kv::server::ids::{cluster_id, member_id};

/// Kills the member when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_member_without_a_token_derives_its_ids_from_the_default_token() {
    let dir = tempfile::tempdir().unwrap();
    let peer_url = format!("http://127.0.0.1:{}", free_port());
    let mut member = Killed(
        Command::new(env!("CARGO_BIN_EXE_keel-kv"))
            .args(["--name", "m1", "--data-dir"])
            .arg(dir.path().join("m1"))
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:{}", free_port()),
            ])
            .args(["--listen-peer-urls", &peer_url])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, lines) = mpsc::channel();
    let stderr = member.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let serving = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("keel-kv logged `serving etcd v3 API` within 30 s");
        if line.contains("serving etcd v3 API") {
            break line;
        }
    };
    let member = member_id(INITIAL_CLUSTER_TOKEN_DEFAULT, &[peer_url]);
    let cluster = cluster_id(INITIAL_CLUSTER_TOKEN_DEFAULT);
    assert!(serving.contains(&format!("{member:x}")), "{serving}");
    assert!(serving.contains(&format!("{cluster:x}")), "{serving}");
}
