//! Self-signed certificates for etcd's auto TLS (`--auto-tls`,
//! `--peer-auto-tls`): a member that is given no certificate makes its
//! own, once, and keeps it in its data directory.
//!
//! Nobody can verify such a certificate (no CA signed it), so it gives
//! encryption, not authentication: clients must skip verification, and
//! members using it towards each other do (as etcd's do).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};
use time::{Duration, OffsetDateTime};
use tracing::info;

use super::TlsError;

/// How long a generated certificate is valid, as etcd's: a year.
const VALIDITY: Duration = Duration::days(365);

/// The certificate and key files in `dir` (`cert.pem`, `key.pem`, etcd's
/// names), generated now for `hosts` (host names or IP addresses, which
/// become its subject alternative names) unless both exist already: a
/// restarted member keeps presenting the same certificate. The key is
/// readable by its owner only.
pub fn ensure(dir: &Path, hosts: &[String]) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert_file = dir.join("cert.pem");
    let key_file = dir.join("key.pem");
    if cert_file.exists() && key_file.exists() {
        return Ok((cert_file, key_file));
    }
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(hosts.to_vec())?;
    params
        .distinguished_name
        .push(DnType::OrganizationName, "keel");
    params.not_before = OffsetDateTime::now_utc();
    params.not_after = params.not_before + VALIDITY;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.self_signed(&key)?;
    let write_error = |source| TlsError::SelfSignedWrite {
        dir: dir.to_owned(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(write_error)?;
    // The key first: a certificate without its key is never left behind.
    write_private(&key_file, key.serialize_pem().as_bytes()).map_err(write_error)?;
    std::fs::write(&cert_file, cert.pem()).map_err(write_error)?;
    info!(cert = %cert_file.display(), ?hosts, "generated a self-signed certificate (auto TLS)");
    Ok((cert_file, key_file))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::super::ServerTls;
    use super::super::server::ClientAuth;
    use super::*;

    #[test]
    fn generated_once_then_kept_and_servable() {
        let dir = tempfile::tempdir().unwrap();
        let fixtures = dir.path().join("fixtures/peer");
        let hosts = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        let (cert, key) = ensure(&fixtures, &hosts).unwrap();
        let first = std::fs::read(&cert).unwrap();
        ServerTls::from_files(&cert, &key, &ClientAuth::None).unwrap();
        let mode = std::fs::metadata(&key).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let (again, _) = ensure(&fixtures, &hosts).unwrap();
        assert_eq!(std::fs::read(again).unwrap(), first, "a restart keeps it");
    }
}
