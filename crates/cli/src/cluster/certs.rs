//! The certificates of a local cluster started with `cluster up --tls`: a
//! throwaway CA made for this cluster alone, one certificate the members
//! use on their client and peer ports, and one for clients, all for
//! `127.0.0.1` and `localhost`, written as PEM files under
//! `<data-dir>/tls/`.
//!
//! The CA's key is never written: nothing else can ever be signed by it,
//! so the cluster trusts exactly these two certificates. They are for a
//! cluster on one machine (development, demos, tests), not for
//! production, where certificates come from the operator's own CA.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use keel::tls::ClientTls;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The names every certificate covers: where a local cluster listens.
const LOCAL_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];
/// The common name of the client certificate. With auth on and no
/// `--user`, a request over it is this user's (etcd's
/// `--client-cert-auth` rule): one without permissions unless the
/// operator creates it.
pub const CLIENT_COMMON_NAME: &str = "client";

/// Where a local cluster's certificate files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub member_cert: PathBuf,
    pub member_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TlsFiles {
    /// The directory that holds them.
    pub fn dir(cluster_dir: &Path) -> PathBuf {
        cluster_dir.join("tls")
    }

    /// The files' places in `cluster_dir`, whether or not they exist.
    pub fn in_dir(cluster_dir: &Path) -> TlsFiles {
        let dir = TlsFiles::dir(cluster_dir);
        TlsFiles {
            ca: dir.join("ca.pem"),
            member_cert: dir.join("member.pem"),
            member_key: dir.join("member.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        }
    }

    /// Makes a new CA and both certificates, and writes them (keys
    /// readable by their owner only).
    pub fn generate(cluster_dir: &Path) -> anyhow::Result<TlsFiles> {
        let files = TlsFiles::in_dir(cluster_dir);
        let dir = TlsFiles::dir(cluster_dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let ca_key = KeyPair::generate().context("cannot generate the CA's key")?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "keel cluster up CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca
            .self_signed(&ca_key)
            .context("cannot sign the CA's certificate")?;
        write(&files.ca, &ca_cert.pem(), false)?;
        let issuer = Issuer::new(ca, ca_key);
        for (common_name, cert, key) in [
            ("member", &files.member_cert, &files.member_key),
            (CLIENT_COMMON_NAME, &files.client_cert, &files.client_key),
        ] {
            let (cert_pem, key_pem) = issue(&issuer, common_name)?;
            write(key, &key_pem, true)?;
            write(cert, &cert_pem, false)?;
        }
        Ok(files)
    }

    /// How the `keel` command itself (probes, `cluster status`) reaches
    /// the members: trusting the cluster's CA, with the client certificate.
    pub fn client_tls(&self) -> anyhow::Result<ClientTls> {
        ClientTls::from_files(Some(&self.ca), Some((&self.client_cert, &self.client_key)))
            .context("the local cluster's TLS files cannot be used; start a new cluster with --tls")
    }
}

/// A certificate and key for `common_name` on this machine, good for both
/// ends of a connection: members are servers on their ports and clients
/// of each other.
fn issue(issuer: &Issuer<'_, KeyPair>, common_name: &str) -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate().context("cannot generate a key")?;
    let names: Vec<String> = LOCAL_NAMES.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params
        .signed_by(&key, issuer)
        .with_context(|| format!("cannot sign the certificate of {common_name}"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn write(path: &Path, text: &str, secret: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if secret {
        options.mode(0o600);
    }
    options
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_files_load_as_client_settings_and_keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles::generate(dir.path()).unwrap();
        assert_eq!(files, TlsFiles::in_dir(dir.path()));
        files.client_tls().unwrap();
        for key in [&files.member_key, &files.client_key] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(key).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{} is readable by others", key.display());
        }
        assert!(!dir.path().join("tls/ca.key").exists());
    }
}
