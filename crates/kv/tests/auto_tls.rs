//! etcd's auto TLS: three `keel-kv` members started with `--auto-tls
//! --peer-auto-tls`, https client and peer URLs and no certificate
//! files generate self-signed certificates in their data directories,
//! elect a leader over TLS between peers (which, as etcd's, do not verify
//! each other's certificates) and serve the stock `etcdctl` with
//! `--insecure-transport=false --insecure-skip-tls-verify` through every
//! member. The same etcdctl session against a three-member etcd 3.4 with
//! the same flags, when installed, prints the same, refusals included:
//! a plain-text client and a client that verifies the certificate fail.
//! A restarted member keeps its certificate.
//!
//! Skips (passing, with a message) when `etcdctl` is not installed.

mod support;

use keel_transport::tls::ClientTls;
use support::Cluster;
use support::etcd::EtcdCluster;
use support::etcdctl::{Etcdctl, etcdctl_available, have};

/// etcdctl's flags for a server whose certificate nobody signed.
fn skip_verify() -> Vec<String> {
    vec![
        "--insecure-transport=false".into(),
        "--insecure-skip-tls-verify".into(),
    ]
}

/// The scripted session: `(member, flags, args)`; each step's output.
async fn session(endpoints: &[String]) -> Vec<String> {
    let none: Vec<String> = Vec::new();
    let verify = vec!["--insecure-transport=false".to_owned()];
    let only_skip = vec!["--insecure-skip-tls-verify".to_owned()];
    let mut steps: Vec<(usize, &Vec<String>, Vec<String>)> = Vec::new();
    let skip = skip_verify();
    for i in 0..3 {
        steps.push((
            i,
            &skip,
            vec!["put".into(), format!("k{i}"), format!("v{i}")],
        ));
        steps.push(((i + 1) % 3, &skip, vec!["get".into(), format!("k{i}")]));
    }
    // Refused: plain text, TLS that verifies the server, and
    // `--insecure-skip-tls-verify` alone (etcdctl still dials plain text).
    steps.push((0, &none, vec!["get".into(), "k0".into()]));
    steps.push((1, &verify, vec!["get".into(), "k0".into()]));
    steps.push((2, &only_skip, vec!["get".into(), "k0".into()]));
    let mut outputs = Vec::new();
    for (member, flags, args) in steps {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = Etcdctl::new(&endpoints[member])
            .flags(flags)
            .command_timeout_seconds(3)
            .run(&args)
            .await;
        outputs.push(format!(
            "{args:?} on {member} with {flags:?}: {}",
            out.text()
        ));
    }
    outputs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_tls_cluster_serves_etcdctl_as_etcd_does() {
    if !etcdctl_available() {
        eprintln!("skipping: etcdctl is not installed");
        return;
    }
    let flags = ["--auto-tls", "--peer-auto-tls"];
    let test_tls = ClientTls::insecure_skip_verify(None).unwrap();
    let mut cluster = Cluster::start_with_tls(3, &flags, Some(test_tls)).await;
    cluster.wait_leader().await;
    for m in &cluster.members {
        for side in ["client", "peer"] {
            let dir = m.dir.join("fixtures").join(side);
            assert!(dir.join("cert.pem").is_file(), "{}", dir.display());
            assert!(dir.join("key.pem").is_file(), "{}", dir.display());
        }
        // The generated certificate is the only one on the peer port.
        assert!(m.peer_url().starts_with("https://"));
    }
    let endpoints: Vec<String> = cluster.members.iter().map(|m| m.client_url()).collect();
    let keel = session(&endpoints).await;
    for (i, out) in keel.iter().take(6).enumerate() {
        let expected = if i % 2 == 0 { "OK" } else { "\nv" };
        assert!(out.contains(expected), "step {i}: {out}");
    }
    for out in &keel[6..] {
        assert!(out.contains("Error"), "refused: {out}");
    }

    // A restarted member keeps its certificate and rejoins over TLS.
    let cert = cluster.members[1].dir.join("fixtures/peer/cert.pem");
    let before = std::fs::read(&cert).unwrap();
    cluster.stop(1).await;
    cluster.spawn(1, "new");
    cluster.wait_serving(1).await;
    assert_eq!(std::fs::read(&cert).unwrap(), before);
    let out = Etcdctl::new(&endpoints[1])
        .flags(&skip_verify())
        .run(&["put", "after-restart", "x"])
        .await;
    assert!(out.success && out.stdout.trim() == "OK", "{}", out.all());

    if !have("etcd") {
        eprintln!("etcd is not installed: compared with nothing");
        return;
    }
    let etcd = EtcdCluster::start(
        3,
        "https",
        "https",
        &flags.map(String::from),
        &skip_verify(),
    )
    .await;
    let reference = session(&etcd.endpoints).await;
    assert_eq!(keel, reference, "Keel and etcd differ");
}
