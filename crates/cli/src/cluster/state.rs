//! `<data-dir>/cluster.toml`: what `cluster up` started, so that `cluster
//! down`, `cluster status` and the next `cluster up` find the same members
//! on the same ports with the same data.

use std::path::{Path, PathBuf};

use anyhow::Context;
use keel::tls::ClientTls;
use serde::{Deserialize, Serialize};

use super::certs::TlsFiles;

/// The file's name inside the cluster's data directory.
pub const FILE_NAME: &str = "cluster.toml";

/// One member process of a local cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct MemberEntry {
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
    pub metrics_url: String,
    /// The member's process while it runs.
    pub pid: Option<u32>,
}

/// A local cluster as `cluster up` left it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct ClusterFile {
    /// Told to every member, so that two local clusters never mix.
    pub token: String,
    /// The `keel cluster up` process that supervises the members, if it
    /// still runs (absent with --detach).
    pub supervisor_pid: Option<u32>,
    /// Started with `--tls`: client and peer URLs are `https://`, with the
    /// certificates in `<data-dir>/tls/` (`certs.rs`). Absent in files
    /// written before TLS existed, which means plain text.
    #[serde(default)]
    pub tls: bool,
    #[serde(rename = "member")]
    pub members: Vec<MemberEntry>,
}

impl MemberEntry {
    /// The member's own directory: its log file and its data directory.
    pub fn dir(&self, cluster_dir: &Path) -> PathBuf {
        cluster_dir.join(&self.name)
    }

    pub fn data_dir(&self, cluster_dir: &Path) -> PathBuf {
        self.dir(cluster_dir).join("data")
    }

    pub fn log_file(&self, cluster_dir: &Path) -> PathBuf {
        self.dir(cluster_dir).join("keel.log")
    }

    /// `HOST:PORT` of the client URL, as etcdctl's --endpoints takes it.
    pub fn endpoint(&self) -> &str {
        let url = &self.client_url;
        url.strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .unwrap_or(url)
    }
}

impl ClusterFile {
    pub fn path(cluster_dir: &Path) -> PathBuf {
        cluster_dir.join(FILE_NAME)
    }

    /// Reads the file, or `None` if this directory holds no cluster yet.
    pub fn load(cluster_dir: &Path) -> anyhow::Result<Option<ClusterFile>> {
        let path = ClusterFile::path(cluster_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let file = toml::from_str(&text)
            .with_context(|| format!("{} is not a keel cluster file", path.display()))?;
        Ok(Some(file))
    }

    /// Reads the file, failing with a hint if there is none.
    pub fn require(cluster_dir: &Path) -> anyhow::Result<ClusterFile> {
        ClusterFile::load(cluster_dir)?.with_context(|| {
            format!(
                "no cluster in {} (no {FILE_NAME}); start one with `keel cluster up --data-dir {}`",
                cluster_dir.display(),
                cluster_dir.display()
            )
        })
    }

    /// Writes the file atomically, so a reader never sees half of it.
    pub fn save(&self, cluster_dir: &Path) -> anyhow::Result<()> {
        let path = ClusterFile::path(cluster_dir);
        let temporary = cluster_dir.join(format!("{FILE_NAME}.tmp"));
        let text = toml::to_string_pretty(self).context("cannot encode the cluster file")?;
        std::fs::write(&temporary, text)
            .and_then(|()| std::fs::rename(&temporary, &path))
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// `HOST:PORT,HOST:PORT,…` of every member.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(MemberEntry::endpoint)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The certificate files, when the cluster runs with TLS.
    pub fn tls_files(&self, cluster_dir: &Path) -> Option<TlsFiles> {
        self.tls.then(|| TlsFiles::in_dir(cluster_dir))
    }

    /// How `keel` itself speaks to the members' client URLs: TLS with the
    /// cluster's client certificate, or plain text.
    pub fn client_tls(&self, cluster_dir: &Path) -> anyhow::Result<Option<ClientTls>> {
        self.tls_files(cluster_dir)
            .map(|files| files.client_tls())
            .transpose()
    }

    /// `--initial-cluster` for the members: `m1=PEER,m2=PEER,…`.
    pub fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_file_round_trips_through_disk() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ClusterFile::load(dir.path()).unwrap(), None);
        let file = ClusterFile {
            token: "t".into(),
            supervisor_pid: Some(10),
            tls: false,
            members: vec![MemberEntry {
                name: "m1".into(),
                client_url: "http://127.0.0.1:2379".into(),
                peer_url: "http://127.0.0.1:2380".into(),
                metrics_url: "http://127.0.0.1:2381".into(),
                pid: None,
            }],
        };
        file.save(dir.path()).unwrap();
        assert_eq!(ClusterFile::load(dir.path()).unwrap(), Some(file.clone()));
        assert_eq!(file.endpoints(), "127.0.0.1:2379");
        assert_eq!(file.initial_cluster(), "m1=http://127.0.0.1:2380");
    }

    #[test]
    fn a_file_from_before_tls_is_a_plain_cluster() {
        let file: ClusterFile = toml::from_str("token = \"t\"\nmember = []\n").unwrap();
        assert!(!file.tls);
    }

    #[test]
    fn endpoints_drop_either_scheme() {
        let member = MemberEntry {
            name: "m1".into(),
            client_url: "https://127.0.0.1:2379".into(),
            peer_url: "https://127.0.0.1:2380".into(),
            metrics_url: "http://127.0.0.1:2381".into(),
            pid: None,
        };
        assert_eq!(member.endpoint(), "127.0.0.1:2379");
    }

    #[test]
    fn missing_cluster_file_says_how_to_start_one() {
        let dir = tempfile::tempdir().unwrap();
        let error = ClusterFile::require(dir.path()).unwrap_err().to_string();
        assert!(error.contains("keel cluster up --data-dir"), "{error}");
    }
}
