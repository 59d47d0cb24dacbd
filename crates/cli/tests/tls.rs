//! `keel serve` with TLS on its client and peer URLs, and the client
//! commands' `--cacert/--cert/--key`, with certificates made by the test.

mod support;

use std::process::Stdio;
use std::time::Duration;

use keel_transport::tls::test_certs::TestCa;
use support::*;

fn serve_error(command: std::process::Command) -> String {
    let output = run_bounded(command, Duration::from_secs(20));
    assert!(!output.status.success(), "keel serve should have refused");
    String::from_utf8_lossy(&output.stderr).to_string()
}

#[test]
fn tls_member_serves_clients_with_certificates_and_refuses_others() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("keel test CA");
    let ca_file = ca.write(dir.path(), "ca");
    let (cert, key) = ca.issue_local("member").write(dir.path(), "member");
    let (client_cert, client_key) = ca.issue_local("client").write(dir.path(), "client");
    let other = TestCa::new("other CA");
    let (other_cert, other_key) = other.issue_local("client").write(dir.path(), "other");
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let (client, peer) = (free_port(), free_port());
    let client_url = format!("https://127.0.0.1:{client}");
    let peer_url = format!("https://127.0.0.1:{peer}");
    let data_dir = dir.path().join("m1");
    let mut command = keel(&[
        "serve",
        "--name",
        "m1",
        "--data-dir",
        &path(&data_dir),
        "--listen-client-urls",
        &client_url,
        "--listen-peer-urls",
        &peer_url,
        "--cert-file",
        &path(&cert),
        "--key-file",
        &path(&key),
        "--trusted-ca-file",
        &path(&ca_file),
        "--client-cert-auth",
        "--peer-cert-file",
        &path(&cert),
        "--peer-key-file",
        &path(&key),
        "--peer-trusted-ca-file",
        &path(&ca_file),
        "--peer-client-cert-auth=true",
    ]);
    let log = std::fs::File::create(dir.path().join("member.log")).unwrap();
    let _member = Killed(command.stdout(Stdio::null()).stderr(log).spawn().unwrap());
    let tls = [
        "--cacert",
        &path(&ca_file),
        "--cert",
        &path(&client_cert),
        "--key",
        &path(&client_key),
    ];
    let with_tls = |args: &[&str]| -> Vec<String> {
        args.iter()
            .chain(tls.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let mut last = String::new();
    for _ in 0..60 {
        let args = with_tls(&["put", "k", "v", "--endpoints", &client_url]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = run_bounded(keel(&args), Duration::from_secs(30));
        if output.status.success() {
            last.clear();
            break;
        }
        last = String::from_utf8_lossy(&output.stderr).into_owned();
        std::thread::sleep(Duration::from_millis(500));
    }
    let log = std::fs::read_to_string(dir.path().join("member.log")).unwrap_or_default();
    assert!(last.is_empty(), "no TLS put: {last}\nmember log:\n{log}");
    // A bare HOST:PORT means https once a TLS flag is given.
    let args = with_tls(&["get", "k", "--endpoints", &format!("127.0.0.1:{client}")]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(keel_ok(&args), "k\nv\n");

    let refused = |args: &[&str]| {
        let output = run_bounded(keel(args), Duration::from_secs(30));
        assert!(!output.status.success(), "{args:?} should fail");
    };
    let short = ["--command-timeout", "2s", "--dial-timeout", "1s"];
    let plain = format!("http://127.0.0.1:{client}");
    refused(&[&["get", "k", "--endpoints", &plain][..], &short].concat());
    let ca_only = path(&ca_file);
    refused(
        &[
            &["get", "k", "--endpoints", &client_url, "--cacert", &ca_only][..],
            &short,
        ]
        .concat(),
    );
    let (oc, ok) = (path(&other_cert), path(&other_key));
    refused(
        &[
            &[
                "get",
                "k",
                "--endpoints",
                &client_url,
                "--cacert",
                &ca_only,
                "--cert",
                &oc,
                "--key",
                &ok,
            ][..],
            &short,
        ]
        .concat(),
    );

    // A client TLS file that does not exist is named.
    let output = run_bounded(
        keel(&[
            "get",
            "k",
            "--endpoints",
            &client_url,
            "--cacert",
            "/nonexistent/ca.pem",
        ]),
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("/nonexistent/ca.pem"), "{stderr}");
}

#[test]
fn https_url_without_certificate_is_refused_naming_the_flags() {
    let stderr = serve_error(keel(&[
        "serve",
        "--listen-client-urls",
        &format!("https://127.0.0.1:{}", free_port()),
        "--listen-peer-urls",
        &format!("http://127.0.0.1:{}", free_port()),
    ]));
    assert!(stderr.contains("--cert-file and --key-file"), "{stderr}");
}

#[test]
fn malformed_certificate_file_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken-cert.pem");
    std::fs::write(&bad, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
    let peer = free_port();
    let stderr = serve_error(keel(&[
        "serve",
        "--data-dir",
        dir.path().join("m").to_str().unwrap(),
        "--listen-client-urls",
        &format!("http://127.0.0.1:{}", free_port()),
        "--listen-peer-urls",
        &format!("https://127.0.0.1:{peer}"),
        "--peer-cert-file",
        bad.to_str().unwrap(),
        "--peer-key-file",
        bad.to_str().unwrap(),
    ]));
    assert!(stderr.contains("broken-cert.pem"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn cluster_up_tls_serves_keel_and_etcdctl_with_its_certificates_only() {
    let cluster = LocalCluster::start_with(3, &["--tls"]);
    let hints = wait_for_line(&cluster.lines, "etcdctl", Duration::from_secs(10));
    let tls = cluster.tls_flags();
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    assert!(
        hints
            .iter()
            .any(|l| tls.iter().all(|flag| l.contains(flag))),
        "the printed etcdctl line lacks the TLS flags: {hints:#?}"
    );
    let urls = cluster.client_urls();
    assert_eq!(urls.matches("https://").count(), 3, "{urls}");
    assert!(
        cluster.member("m1")["peer-url"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );

    let put: Vec<&str> = ["put", "k", "v", "--endpoints", &urls]
        .into_iter()
        .chain(tls.iter().copied())
        .collect();
    assert_eq!(keel_ok(&put), "OK\n");
    let get: Vec<&str> = ["get", "k", "--endpoints", &urls]
        .into_iter()
        .chain(tls.iter().copied())
        .collect();
    assert_eq!(keel_ok(&get), "k\nv\n");
    let status = cluster.status_text();
    assert!(status.contains("3 of 3 members answering"), "{status}");

    if !have("etcdctl") {
        eprintln!("etcdctl is not installed: checked keel alone");
        return;
    }
    let mut get = tls.clone();
    get.extend(["get", "k"]);
    assert_eq!(etcdctl(&urls, &get), "k\nv\n");
    let plain = urls.replace("https://", "http://");
    assert!(
        !etcdctl_output(&plain, &["--dial-timeout=1s", "get", "k"])
            .status
            .success()
    );
    let no_certificate = [tls[0], "--dial-timeout=1s", "get", "k"];
    assert!(
        !etcdctl_output(&urls, &no_certificate).status.success(),
        "a client without a certificate must be refused"
    );
}
