//! `keel cluster up` in the background, shared by the tests that drive a
//! local cluster as a user would.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use super::*;

/// A `keel cluster up` in the background, in its own temporary directory.
/// Dropping it stops the cluster and kills anything still using the
/// directory, so a failing test leaves nothing behind.
pub struct LocalCluster {
    dir: tempfile::TempDir,
    up: Child,
    /// What `cluster up` prints after the banner, as it comes.
    pub lines: std::sync::mpsc::Receiver<String>,
    /// What it printed up to the line saying the cluster is up.
    pub banner: Vec<String>,
}

impl LocalCluster {
    pub fn start(members: u32) -> LocalCluster {
        LocalCluster::start_with(members, &[])
    }

    /// `keel cluster up` with `flags` besides the members, directory and
    /// ports.
    pub fn start_with(members: u32, flags: &[&str]) -> LocalCluster {
        let dir = tempfile::tempdir().unwrap();
        let base = free_base_port(members).to_string();
        let count = members.to_string();
        let mut args = vec![
            "cluster",
            "up",
            "--members",
            &count,
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--base-port",
            &base,
        ];
        args.extend(flags);
        let mut up = keel(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = lines_of(up.stdout.take().unwrap());
        // The supervisor's notices (members exiting) go to stderr; keep the
        // pipe drained so it never blocks.
        let notices = lines_of(up.stderr.take().unwrap());
        std::thread::spawn(move || notices.iter().for_each(|l| eprintln!("[cluster up] {l}")));
        let banner = wait_for_line(&lines, "is up", Duration::from_secs(60));
        LocalCluster {
            dir,
            up,
            lines,
            banner,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn dir_arg(&self) -> String {
        self.path().display().to_string()
    }

    /// What `keel cluster status` prints for this cluster, giving each
    /// member five seconds: a loaded test machine may take longer than
    /// the default second.
    pub fn status_text(&self) -> String {
        keel_ok(&[
            "cluster",
            "status",
            "--data-dir",
            &self.dir_arg(),
            "--timeout",
            "5s",
        ])
    }

    pub fn file(&self) -> toml::Table {
        let text = std::fs::read_to_string(self.path().join("cluster.toml")).unwrap();
        text.parse().unwrap()
    }

    pub fn member(&self, name: &str) -> toml::Table {
        self.file()["member"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_table().unwrap().clone())
            .find(|m| m["name"].as_str() == Some(name))
            .unwrap()
    }

    /// Every member's `HOST:PORT`.
    pub fn endpoints(&self) -> String {
        self.client_urls()
            .split(',')
            .map(|url| url.split_once("://").map_or(url, |(_, rest)| rest))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every member's client URL, with its scheme.
    pub fn client_urls(&self) -> String {
        self.file()["member"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["client-url"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `--cacert/--cert/--key` for the certificates `cluster up --tls`
    /// made (etcdctl's and keel's flags alike).
    pub fn tls_flags(&self) -> Vec<String> {
        let tls = self.path().join("tls");
        vec![
            format!("--cacert={}", tls.join("ca.pem").display()),
            format!("--cert={}", tls.join("client.pem").display()),
            format!("--key={}", tls.join("client.key").display()),
        ]
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let _ = run_bounded(
            keel(&[
                "cluster",
                "down",
                "--data-dir",
                &self.dir_arg(),
                "--grace",
                "5s",
            ]),
            Duration::from_secs(30),
        );
        let _ = self.up.kill();
        let _ = self.up.wait();
        for pid in processes_using(self.path()) {
            kill_hard(pid);
        }
    }
}
