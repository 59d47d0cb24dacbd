//! [`TlsConfig`]: TLS for one side of a member, clients or peers, with
//! etcd's flags and meanings, and the checks of those flags against each
//! other and the side's URLs.

use std::path::PathBuf;

use super::super::urls::HttpUrl;
use super::error::ConfigError;
use super::side::Side;

/// TLS for one side of a member, clients or peers, with etcd's flags and
/// meanings (`--cert-file`, `--key-file`, `--trusted-ca-file`,
/// `--client-cert-auth`, `--client-crl-file`, `--auto-tls`, and their
/// `--peer-` twins).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// This member's certificate (PEM; a chain, leaf first), served on
    /// `https://` URLs and presented when it connects as a client.
    pub cert_file: Option<PathBuf>,
    /// The certificate's private key (PEM).
    pub key_file: Option<PathBuf>,
    /// The CA certificates (PEM) that sign the other side's certificates.
    /// As in etcd 3.4, giving it also makes the listener require client
    /// certificates signed by it; when this member connects out, it
    /// verifies servers against it (the system's roots without it).
    pub trusted_ca_file: Option<PathBuf>,
    /// Require a client certificate signed by `trusted_ca_file`.
    pub client_cert_auth: bool,
    /// Admit only client certificates with this subject common name
    /// (etcd's `--peer-cert-allowed-cn`; peers only).
    pub allowed_cn: Option<String>,
    /// Revocation lists (PEM): a client certificate they name is refused.
    pub crl_file: Option<PathBuf>,
    /// Without `cert_file`, serve `https://` URLs with a self-signed
    /// certificate generated in the data directory (etcd's auto TLS); as
    /// in etcd, a member then accepts any certificate from the servers it
    /// connects to on this side.
    pub auto_tls: bool,
}

impl TlsConfig {
    /// Whether the listener requires client certificates (etcd 3.4: a
    /// trusted CA file or `client-cert-auth`).
    pub fn requires_client_certs(&self) -> bool {
        self.client_cert_auth || self.trusted_ca_file.is_some()
    }

    /// Whether this side uses a generated self-signed certificate: auto
    /// TLS asked for and no certificate given (etcd ignores auto TLS
    /// when one is).
    pub fn self_signed(&self) -> bool {
        self.auto_tls && self.cert_file.is_none()
    }

    /// Checks the flags against each other and against the side's
    /// listening URLs; every refusal says which flag to add or drop.
    pub(crate) fn validate(
        &self,
        side: Side,
        urls_flag: &'static str,
        urls: &[HttpUrl],
    ) -> Result<(), ConfigError> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => return Err(ConfigError::CertWithoutKey { side }),
            (None, Some(_)) => return Err(ConfigError::KeyWithoutCert { side }),
            _ => {}
        }
        if let Some(url) = urls.iter().find(|u| u.tls)
            && self.cert_file.is_none()
            && !self.auto_tls
        {
            return Err(ConfigError::HttpsWithoutCert {
                side,
                urls_flag,
                url: url.to_string(),
            });
        }
        if self.client_cert_auth && self.trusted_ca_file.is_none() {
            return Err(ConfigError::ClientCertAuthWithoutCa { side });
        }
        if self.allowed_cn.is_some() && !self.requires_client_certs() {
            return Err(ConfigError::AllowedCnUnverified { side });
        }
        if self.allowed_cn.as_deref() == Some("") {
            return Err(ConfigError::EmptyAllowedCn { side });
        }
        if self.crl_file.is_some() && !self.requires_client_certs() {
            return Err(ConfigError::CrlUnverified { side });
        }
        Ok(())
    }
}
