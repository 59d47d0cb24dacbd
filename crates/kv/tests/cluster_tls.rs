//! Three `keel-kv` processes with TLS everywhere (client and peer URLs
//! `https://`, client and peer certificates required, all from a CA the
//! test makes with rcgen), driven by the stock `etcdctl` 3.4 with
//! `--cacert/--cert/--key`: put and get across members (writes forwarded
//! over the TLS peer port), a lease looked up through a follower (relayed
//! to the leader's https client URL), a member added; a plain-text client,
//! a client without a certificate and one whose certificate another CA
//! signed are refused; a member whose peer certificate another CA signed
//! never receives a Raft message.
//!
//! Skips (passing, with a message) when `etcdctl` is not installed and
//! cannot be installed.

mod support;

use std::time::Duration;

use keel_kv::proto::etcdserverpb::RangeRequest;
use keel_kv::proto::etcdserverpb::kv_client::KvClient;
use support::certs::Certs;
use support::etcdctl::{Etcdctl, etcdctl_available};
use support::{Cluster, range};
use tokio::time::Instant;
use tonic::transport::Endpoint;

/// etcdctl with `tls` flags against `endpoints`: whether it succeeded,
/// and everything it printed.
async fn etcdctl(endpoints: &str, tls: &[String], args: &[&str]) -> (bool, String) {
    let out = Etcdctl::new(endpoints)
        .flags(tls)
        .command_timeout_seconds(5)
        .run(args)
        .await;
    (out.success, out.all())
}

fn member_urls(cluster: &Cluster, members: &[usize]) -> String {
    members
        .iter()
        .map(|&i| cluster.members[i].client_url())
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_with_client_certificates_works_and_strangers_are_refused() {
    if !etcdctl_available() {
        eprintln!("skipping: etcdctl is not installed");
        return;
    }
    let certs = Certs::new();
    let flags = certs.member_flags(&certs.member);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut cluster =
        Cluster::start_with_tls(3, &flags, Some(certs.client_tls(&certs.client))).await;
    let tls = certs.etcdctl_flags(&certs.client);
    let leader = cluster.wait_leader().await;
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;

    // A write on a follower (forwarded to the leader over the TLS peer
    // port), read back on another member.
    let (ok, out) = etcdctl(
        &member_urls(&cluster, &[follower]),
        &tls,
        &["put", "k", "v"],
    )
    .await;
    assert!(ok && out.trim() == "OK", "{out}");
    let (ok, out) = etcdctl(&member_urls(&cluster, &[other]), &tls, &["get", "k"]).await;
    assert!(ok && out == "k\nv\n", "{out}");
    let (ok, out) = etcdctl(
        &member_urls(&cluster, &[0, 1, 2]),
        &tls,
        &["endpoint", "health"],
    )
    .await;
    assert!(ok && out.matches("is healthy").count() == 3, "{out}");
    // Per-endpoint calls on https URLs: the URL arrives as HTTP/2's
    // `:authority`, inside TLS, and is still answered.
    let (ok, out) = etcdctl(
        &member_urls(&cluster, &[0, 1, 2]),
        &tls,
        &["endpoint", "status"],
    )
    .await;
    assert!(
        ok && out.matches("https://127.0.0.1:").count() == 3,
        "{out}"
    );

    // TimeToLive on a follower is relayed to the leader's https client URL.
    let (ok, out) = etcdctl(
        &member_urls(&cluster, &[follower]),
        &tls,
        &["lease", "grant", "60"],
    )
    .await;
    assert!(ok, "{out}");
    let id = out.split_whitespace().nth(1).unwrap().to_owned();
    let (ok, out) = etcdctl(
        &member_urls(&cluster, &[follower]),
        &tls,
        &["lease", "timetolive", &id],
    )
    .await;
    assert!(ok && out.contains("granted with TTL(60s)"), "{out}");

    // Strangers: plain text, no client certificate, another CA's
    // certificate, and a client that does not trust the member's CA.
    let https = member_urls(&cluster, &[follower]);
    let plain = https.replace("https://", "http://");
    let (ok, out) = etcdctl(&plain, &[], &["get", "k"]).await;
    assert!(!ok, "plain text must be refused: {out}");
    let no_cert = vec![format!("--cacert={}", certs.ca.display())];
    let (ok, out) = etcdctl(&https, &no_cert, &["get", "k"]).await;
    assert!(!ok, "a client without a certificate must be refused: {out}");
    let (ok, out) = etcdctl(&https, &certs.etcdctl_flags(&certs.rogue), &["get", "k"]).await;
    assert!(
        !ok,
        "another CA's client certificate must be refused: {out}"
    );
    let distrustful = vec![
        format!("--cacert={}", certs.rogue_ca.display()),
        format!("--cert={}", certs.client.0.display()),
        format!("--key={}", certs.client.1.display()),
    ];
    let (ok, out) = etcdctl(&https, &distrustful, &["get", "k"]).await;
    assert!(
        !ok,
        "a client must not accept a server its CA did not sign: {out}"
    );
    let address = https.trim_start_matches("https://").to_owned();
    let plain_grpc = Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(2))
        .connect_lazy();
    assert!(
        KvClient::new(plain_grpc).range(range("k")).await.is_err(),
        "a plain gRPC client must be refused"
    );

    // A member whose peer certificate another CA signed: added as a
    // learner and started, it never receives a Raft message, so it holds
    // none of the data, while the cluster goes on.
    let new = cluster.reserve_member();
    {
        let m = &mut cluster.members[new];
        // Its clients speak plain text, so the test can look inside it.
        m.client_https = false;
        let mut flags = certs.member_flags(&certs.rogue);
        flags.drain(..7);
        m.flags = Some(flags);
    }
    let peer_url = cluster.members[new].peer_url();
    let (ok, out) = etcdctl(
        &member_urls(&cluster, &[leader]),
        &tls,
        &[
            "member",
            "add",
            "m3",
            &format!("--peer-urls={peer_url}"),
            "--learner",
        ],
    )
    .await;
    assert!(ok && out.contains("ETCD_INITIAL_CLUSTER_STATE"), "{out}");
    cluster.spawn(new, "existing");
    let rogue = KvClient::new(cluster.channel(new).await);
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut answered = false;
    while Instant::now() < deadline {
        let serializable = RangeRequest {
            serializable: true,
            ..range("k")
        };
        if let Ok(reply) = rogue.clone().range(serializable).await {
            answered = true;
            assert!(
                reply.into_inner().kvs.is_empty(),
                "the rogue member got data"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(answered, "the rogue member's plain client port answered");
    assert!(cluster.members[new].is_running());
    let (ok, out) = etcdctl(&member_urls(&cluster, &[other]), &tls, &["put", "k2", "v2"]).await;
    assert!(ok && out.trim() == "OK", "the cluster goes on: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_tls_flags_stop_the_member_with_a_clear_error() {
    let certs = Certs::new();
    let garbage = certs.dir().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let g = garbage.display().to_string();
    let key = certs.member.1.display().to_string();
    let cert = certs.member.0.display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![], "give --cert-file and --key-file"),
        (vec!["--cert-file", &cert], "without --key-file"),
        (
            vec![
                "--cert-file",
                &cert,
                "--key-file",
                &key,
                "--client-cert-auth",
            ],
            "--client-cert-auth needs --trusted-ca-file",
        ),
        (vec!["--cert-file", &g, "--key-file", &key], "garbage.pem"),
        (
            vec![
                "--cert-file",
                &cert,
                "--key-file",
                &key,
                "--trusted-ca-file",
                &g,
            ],
            "garbage.pem",
        ),
    ];
    for (flags, expected) in cases {
        let dir = certs.dir().join("data");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel-kv"))
            .args(["--name", "m0", "--data-dir"])
            .arg(&dir)
            .args(["--listen-client-urls", "https://127.0.0.1:0"])
            .args(["--listen-peer-urls", "http://127.0.0.1:0"])
            .args(["--initial-cluster", "m0=http://127.0.0.1:1"])
            .args(["--initial-advertise-peer-urls", "http://127.0.0.1:1"])
            .args(&flags)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} must fail");
        assert!(
            stderr.contains(expected),
            "{flags:?}: expected {expected:?} in {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
