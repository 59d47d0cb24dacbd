//! TLS files changed on disk under running members. Peer certificates and
//! peer CA bundles rotated in place from an old CA to a new one: once
//! members reconnect (the others restarted one at a time), the member that
//! was never restarted still writes and reads through the cluster, so it
//! both presents its new certificate and trusts the others' (its files
//! were reloaded on both ends of its connections), and a certificate from
//! the old CA, dropped from its bundle, is refused at its peer port. And
//! `--client-crl-file`: a client certificate the revocation list names is
//! refused, side by side with etcd 3.4.
//!
//! Skips (passing, with a message) when `etcdctl` is not installed.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use keel_transport::pb::raft_client::RaftClient;
use keel_transport::pb::{Header, MessageBatch};
use keel_transport::tls::ClientTls;
use keel_transport::tls::test_certs::{TestCa, TestCert};
use support::Cluster;
use support::certs::Certs;
use support::etcd::Etcd;
use support::etcdctl::{Etcdctl, etcdctl_available, have};
use tonic::Code;

/// Long enough for a rewritten file to be looked at again (members check
/// at most once a second).
const RELOAD_WAIT: Duration = Duration::from_millis(1500);

/// One member's own peer files, rotated in place.
struct PeerFiles {
    cert: PathBuf,
    key: PathBuf,
    bundle: PathBuf,
}

impl PeerFiles {
    fn new(dir: &Path, i: usize, ca: &TestCa) -> PeerFiles {
        let (cert, key) = ca.issue_local("member").write(dir, &format!("m{i}-peer"));
        let bundle = ca.write(dir, &format!("m{i}-peer-ca"));
        PeerFiles { cert, key, bundle }
    }

    /// Writes `cert` over the member's certificate and key, key first.
    fn replace(&self, cert: &TestCert) {
        std::fs::write(&self.key, &cert.key_pem).unwrap();
        std::fs::write(&self.cert, &cert.cert_pem).unwrap();
    }

    fn flags(&self, certs: &Certs) -> Vec<String> {
        let mut flags = certs.member_flags(&(self.cert.clone(), self.key.clone()));
        let at = flags
            .iter()
            .position(|f| f == "--peer-trusted-ca-file")
            .unwrap();
        flags[at + 1] = self.bundle.display().to_string();
        flags
    }
}

/// Whether a gRPC call from a client holding `cert` (and trusting
/// `trusted`) reaches the Raft service on `peer_url`: it is then refused
/// by the cluster id check (this test does not know the id), not by TLS.
async fn peer_port_admits(peer_url: &str, trusted: &Path, cert: &(PathBuf, PathBuf)) -> bool {
    let tls = ClientTls::from_files(Some(trusted), Some((&cert.0, &cert.1))).unwrap();
    let endpoint = ClientTls::endpoint(peer_url)
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(3));
    let Ok(channel) = tls.connect(endpoint).await else {
        return false;
    };
    let batch = MessageBatch {
        header: Some(Header {
            cluster_id: 0,
            protocol_version: keel_transport::PROTOCOL_VERSION,
            from: 99,
            from_addr: String::new(),
        }),
        messages: Vec::new(),
    };
    match RaftClient::new(channel).vote(batch).await {
        Ok(_) => panic!("cluster 0 must be refused"),
        Err(status) => status.code() == Code::FailedPrecondition,
    }
}

async fn put_get(endpoint: &str, tls: &[String], key: &str) -> Result<(), String> {
    let ctl = Etcdctl::new(endpoint).flags(tls).command_timeout_seconds(5);
    let put = ctl.run(&["put", key, "v"]).await;
    let get = ctl.run(&["get", key, "--print-value-only"]).await;
    if put.stdout.trim() == "OK" && get.stdout.trim() == "v" {
        Ok(())
    } else {
        Err(format!("{}{}", put.all(), get.all()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_certificates_and_ca_bundles_rotate_without_restarting_a_member() {
    if !etcdctl_available() {
        eprintln!("skipping: etcdctl is not installed");
        return;
    }
    let certs = Certs::new();
    let dir = certs.dir().to_owned();
    let old_ca = TestCa::new("old peer CA");
    let new_ca = TestCa::new("new peer CA");
    let files: Vec<PeerFiles> = (0..3).map(|i| PeerFiles::new(&dir, i, &old_ca)).collect();
    let mut cluster = Cluster::start_with_member_flags(
        files.iter().map(|f| f.flags(&certs)).collect(),
        certs.client_tls(&certs.client),
    )
    .await;
    let leader = cluster.wait_leader().await;
    let tls = certs.etcdctl_flags(&certs.client);
    let kept = (leader + 1) % 3;
    put_get(&cluster.members[kept].client_url(), &tls, "before")
        .await
        .unwrap();

    // Rotate: every bundle trusts both CAs; every member takes a new
    // certificate; every bundle drops the old CA.
    let both = format!("{}{}", old_ca.pem(), new_ca.pem());
    for f in &files {
        std::fs::write(&f.bundle, &both).unwrap();
    }
    tokio::time::sleep(RELOAD_WAIT).await;
    for f in &files {
        f.replace(&new_ca.issue_local("member"));
    }
    tokio::time::sleep(RELOAD_WAIT).await;
    for f in &files {
        std::fs::write(&f.bundle, new_ca.pem()).unwrap();
    }
    tokio::time::sleep(RELOAD_WAIT).await;

    // The others restart one at a time: every connection to and from the
    // member that keeps running is made anew, with its reloaded files.
    for i in (0..3).filter(|&i| i != kept) {
        cluster.stop(i).await;
        cluster.spawn(i, "new");
        cluster.wait_serving(i).await;
    }
    cluster.wait_leader().await;
    for (n, m) in [kept, (kept + 1) % 3, kept].into_iter().enumerate() {
        put_get(
            &cluster.members[m].client_url(),
            &tls,
            &format!("after-{n}"),
        )
        .await
        .unwrap_or_else(|out| panic!("through member {m} after the rotation: {out}"));
    }

    // The member that never restarted refuses the old CA now, and admits
    // the new one.
    let peer_url = cluster.members[kept].peer_url();
    let old_cert = old_ca.issue_local("member").write(&dir, "stale");
    let new_cert = new_ca.issue_local("member").write(&dir, "fresh");
    let new_ca_file = new_ca.write(&dir, "new-ca");
    assert!(
        peer_port_admits(&peer_url, &new_ca_file, &new_cert).await,
        "a new-CA certificate reaches the Raft service"
    );
    assert!(
        !peer_port_admits(&peer_url, &new_ca_file, &old_cert).await,
        "an old-CA certificate is refused after the rotation"
    );
}

/// The `--client-crl-file` session: a revoked client and a kept one, each
/// reading a key; their outputs.
async fn crl_session(
    endpoint: &str,
    certs: &Certs,
    revoked: &(PathBuf, PathBuf),
    kept: &(PathBuf, PathBuf),
) -> Vec<String> {
    let mut outputs = Vec::new();
    for cert in [kept, revoked, kept] {
        let out = Etcdctl::new(endpoint)
            .flags(&certs.etcdctl_flags(cert))
            .command_timeout_seconds(3)
            .run(&["put", "k", "v"])
            .await;
        outputs.push(out.text());
    }
    outputs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_named_in_the_crl_is_refused_as_by_etcd() {
    if !etcdctl_available() {
        eprintln!("skipping: etcdctl is not installed");
        return;
    }
    let certs = Certs::new();
    let dir = certs.dir().to_owned();
    let ca = TestCa::new("client CA");
    let ca_file = ca.write(&dir, "client-ca");
    let revoked_cert = ca.issue_local("revoked");
    let revoked = revoked_cert.write(&dir, "revoked");
    let kept = ca.issue_local("kept").write(&dir, "kept");
    let crl = dir.join("client.crl");
    std::fs::write(&crl, ca.crl(&[&revoked_cert])).unwrap();
    let server_flags = |cert: &Path, key: &Path| -> Vec<String> {
        let s = |p: &Path| p.display().to_string();
        vec![
            "--cert-file".into(),
            s(cert),
            "--key-file".into(),
            s(key),
            "--trusted-ca-file".into(),
            s(&ca_file),
            "--client-cert-auth".into(),
            "--client-crl-file".into(),
            s(&crl),
        ]
    };
    // The member's own certificate comes from the test's usual CA, which
    // etcdctl trusts (`--cacert`); clients' from `ca`. (A one-member
    // cluster's https peer port never sees a peer.)
    let mut flags = server_flags(&certs.member.0, &certs.member.1);
    let member = |p: &Path| p.display().to_string();
    flags.extend([
        "--peer-cert-file".into(),
        member(&certs.member.0),
        "--peer-key-file".into(),
        member(&certs.member.1),
    ]);
    let flags_str: Vec<&str> = flags.iter().map(String::as_str).collect();
    let test_tls = ClientTls::from_files(Some(&certs.ca), Some((&kept.0, &kept.1))).unwrap();
    let cluster = Cluster::start_with_tls(1, &flags_str, Some(test_tls)).await;
    let keel = crl_session(&cluster.members[0].client_url(), &certs, &revoked, &kept).await;
    assert!(keel[0].starts_with("OK"), "{keel:?}");
    assert!(!keel[1].starts_with("OK"), "revoked: {keel:?}");
    assert!(keel[2].starts_with("OK"), "{keel:?}");

    if !have("etcd") {
        eprintln!("etcd is not installed: compared with nothing");
        return;
    }
    let etcd = Etcd::start("https", &flags, &certs.etcdctl_flags(&kept)).await;
    let reference = crl_session(&etcd.endpoint, &certs, &revoked, &kept).await;
    assert_eq!(keel, reference, "Keel and etcd differ");
}
