//! The server side of TLS for a listener ([`ServerTls`]): the certificate
//! it presents and who it admits ([`ClientAuth`]), with every file
//! reloaded when it changes.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::pki_types::{CertificateDer, UnixTime};
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use tokio_rustls::rustls::{
    self, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme,
};

use super::files::{read_crls, read_roots};
use super::names::subject_common_names;
use super::reload::{Reloading, ReloadingCert};
use super::{TlsError, provider};

/// Who may connect to a TLS listener.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// Any client (the server still proves who it is).
    #[default]
    None,
    /// Only clients whose certificate chains to a CA in `trusted_ca_file`,
    /// is not revoked by a list in `crl_file`, and, if `allowed_cn` is
    /// set, whose subject common name is that.
    Required {
        /// PEM file of the CAs a client certificate must chain to.
        trusted_ca_file: PathBuf,
        /// PEM file of certificate revocation lists, if any.
        crl_file: Option<PathBuf>,
        /// The subject common name a client certificate must have, if set.
        allowed_cn: Option<String>,
    },
}

/// The server side of TLS for a listener. Cheap to clone.
#[derive(Clone)]
pub struct ServerTls {
    pub(super) config: Arc<ServerConfig>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

/// Two handles are equal when they share one configuration.
impl PartialEq for ServerTls {
    fn eq(&self, other: &ServerTls) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
    }
}

impl Eq for ServerTls {}

impl ServerTls {
    /// Serves with the certificate chain in `cert_file` and the key in
    /// `key_file`, admitting clients as `client_auth` says. Every file is
    /// read now (an error names it) and again whenever it changes.
    pub fn from_files(
        cert_file: &Path,
        key_file: &Path,
        client_auth: &ClientAuth,
    ) -> Result<ServerTls, TlsError> {
        let cert = ReloadingCert::from_files(cert_file, key_file)?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let builder = match client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Required {
                trusted_ca_file,
                crl_file,
                allowed_cn,
            } => {
                let verifier: Arc<dyn ClientCertVerifier> = Arc::new(
                    ReloadingClientVerifier::from_files(trusted_ca_file.clone(), crl_file.clone())?,
                );
                let verifier = match allowed_cn {
                    Some(cn) => Arc::new(AllowedCn {
                        inner: verifier,
                        cn: cn.clone(),
                    }),
                    None => verifier,
                };
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_cert_resolver(Arc::new(cert));
        // gRPC is HTTP/2; clients (tonic, grpc-go) insist on negotiating it.
        config.alpn_protocols = vec![b"h2".to_vec()];
        // No session resumption: a resumed session skips the client
        // certificate's verification, so a certificate revoked, or from a
        // CA dropped from the bundle, would still get in. Connections are
        // long-lived gRPC channels; a full handshake each costs little.
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(ServerTls {
            config: Arc::new(config),
        })
    }
}

/// Admits client certificates that chain to the trusted CAs and are not
/// revoked, as the CA file and the CRL file say at the handshake.
#[derive(Debug)]
struct ReloadingClientVerifier(Reloading<Arc<dyn ClientCertVerifier>>);

impl ReloadingClientVerifier {
    fn from_files(
        trusted_ca_file: PathBuf,
        crl_file: Option<PathBuf>,
    ) -> Result<ReloadingClientVerifier, TlsError> {
        let files = std::iter::once(trusted_ca_file.clone())
            .chain(crl_file.clone())
            .collect();
        let load = move || -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
            let roots = read_roots(&trusted_ca_file)?;
            let crls = crl_file.as_deref().map(read_crls).transpose()?;
            let mut builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                    // The hints would be those of the CA file at startup:
                    // without them a client sends its certificate anyway.
                    .clear_root_hint_subjects();
            if let Some(crls) = crls {
                // As etcd: a certificate is refused if a list names it;
                // one whose issuer has no list here is not.
                builder = builder.with_crls(crls).allow_unknown_revocation_status();
            }
            Ok(builder.build()?)
        };
        Reloading::new("trusted CAs", files, load).map(ReloadingClientVerifier)
    }
}

impl ClientCertVerifier for ReloadingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0
            .current()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.current().supported_verify_schemes()
    }
}

/// Admits a client only if the inner verifier does and its certificate's
/// subject has the allowed common name (etcd's `--peer-cert-allowed-cn`).
#[derive(Debug)]
struct AllowedCn {
    inner: Arc<dyn ClientCertVerifier>,
    cn: String,
}

impl ClientCertVerifier for AllowedCn {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if subject_common_names(end_entity).contains(&self.cn) {
            Ok(verified)
        } else {
            Err(rustls::Error::General(format!(
                "the client certificate's common name is not the allowed one ({})",
                self.cn
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
