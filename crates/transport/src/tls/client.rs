//! The client side of TLS ([`ClientTls`]): how a member (or a tool)
//! checks the server it connects to and which certificate it presents,
//! and the connector that gives tonic channels TLS with those settings.
//!
//! tonic's own `ClientTlsConfig` takes certificates as bytes, once; the
//! connector here builds the handshake from a rustls configuration whose
//! certificate and trusted CAs are re-read when their files change
//! ([`super::reload`]), and which can accept any server certificate, as
//! etcd does between members using auto TLS.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::{ResolvesClientCert, Resumption, WebPkiServerVerifier};
use tokio_rustls::rustls::crypto::{
    CryptoProvider, verify_tls12_signature, verify_tls13_signature,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    self, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tonic::codegen::Service;
use tonic::codegen::http::Uri;
use tonic::transport::{Channel, Endpoint};

use super::files::read_roots;
use super::reload::{Reloading, ReloadingCert};
use super::{TlsError, provider};

/// Whose certificates a client accepts from servers.
enum Trust {
    /// Those the system's roots sign.
    System,
    /// Those the CAs in a file sign, as the file is at the handshake.
    CaFile(std::path::PathBuf),
    /// Any, unverified (etcd's auto TLS between members): the connection
    /// is encrypted, but the server is not authenticated.
    Anyone,
}

/// The client side of TLS for channels. Cheap to clone.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

/// Two handles are equal when they share one configuration.
impl PartialEq for ClientTls {
    fn eq(&self, other: &ClientTls) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
    }
}

impl Eq for ClientTls {}

impl ClientTls {
    /// Trusts the CAs in `trusted_ca_file` (the system's roots if `None`)
    /// to sign servers' certificates, and presents the certificate and key
    /// of `identity` (`(cert_file, key_file)`) to servers that ask. The
    /// files are read now (an error names the file) and again for new
    /// connections whenever they change.
    pub fn from_files(
        trusted_ca_file: Option<&Path>,
        identity: Option<(&Path, &Path)>,
    ) -> Result<ClientTls, TlsError> {
        let trust = match trusted_ca_file {
            Some(path) => Trust::CaFile(path.to_owned()),
            None => Trust::System,
        };
        ClientTls::new(trust, identity)
    }

    /// Accepts any server certificate without verifying it (etcd's
    /// `InsecureSkipVerify`, which its members use towards peers with auto
    /// TLS), and presents `identity` to servers that ask. The traffic is
    /// encrypted, but anyone can stand in for the server.
    pub fn insecure_skip_verify(identity: Option<(&Path, &Path)>) -> Result<ClientTls, TlsError> {
        ClientTls::new(Trust::Anyone, identity)
    }

    fn new(trust: Trust, identity: Option<(&Path, &Path)>) -> Result<ClientTls, TlsError> {
        let verifier: Arc<dyn ServerCertVerifier> = match trust {
            Trust::System => {
                WebPkiServerVerifier::builder_with_provider(Arc::new(system_roots()?), provider())
                    .build()?
            }
            Trust::CaFile(path) => Arc::new(ReloadingServerVerifier::from_file(path)?),
            Trust::Anyone => Arc::new(AnyServer(provider())),
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match identity {
            Some((cert, key)) => {
                let resolver: Arc<dyn ResolvesClientCert> =
                    Arc::new(ReloadingCert::from_files(cert, key)?);
                builder.with_client_cert_resolver(resolver)
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        // Every connection verifies the server's certificate as the files
        // are now, rather than resume a session verified before a change.
        config.resumption = Resumption::disabled();
        Ok(ClientTls {
            config: Arc::new(config),
        })
    }

    /// An endpoint for `url` that [`ClientTls::connect`] and
    /// [`ClientTls::connect_lazy`] can take: tonic dials an `https://` URI
    /// only with its own TLS, so the endpoint dials `http://` and this
    /// connector adds TLS, while requests still name `https://` as their
    /// origin.
    pub fn endpoint(url: &str) -> Result<Endpoint, tonic::transport::Error> {
        match url.strip_prefix("https://") {
            Some(rest) => {
                let origin = Endpoint::from_shared(url.to_owned())?.uri().clone();
                Ok(Endpoint::from_shared(format!("http://{rest}"))?.origin(origin))
            }
            None => Endpoint::from_shared(url.to_owned()),
        }
    }

    /// A channel over `endpoint` (made by [`ClientTls::endpoint`]) that
    /// connects at its first call, and again after a failure.
    pub fn connect_lazy(&self, endpoint: Endpoint) -> Channel {
        endpoint.connect_with_connector_lazy(self.connector())
    }

    /// A channel over `endpoint` (made by [`ClientTls::endpoint`]),
    /// connected now.
    pub async fn connect(&self, endpoint: Endpoint) -> Result<Channel, tonic::transport::Error> {
        endpoint.connect_with_connector(self.connector()).await
    }

    fn connector(&self) -> TlsConnector {
        TlsConnector {
            tls: tokio_rustls::TlsConnector::from(self.config.clone()),
        }
    }
}

fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(TlsError::NoSystemRoots);
    }
    Ok(roots)
}

/// Dials TCP to the URI's host and port, then does the TLS handshake,
/// naming the URI's host as the server.
#[derive(Clone)]
struct TlsConnector {
    tls: tokio_rustls::TlsConnector,
}

impl Service<Uri> for TlsConnector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            let invalid =
                |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{uri}: {why}"));
            let host = uri.host().ok_or_else(|| invalid("no host"))?;
            let port = uri.port_u16().ok_or_else(|| invalid("no port"))?;
            // An IPv6 literal is bracketed in a URI, bare in a server name.
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let name = ServerName::try_from(bare.to_owned())
                .map_err(|_| invalid("not a host name or IP address"))?;
            let tcp = TcpStream::connect((bare, port)).await?;
            tcp.set_nodelay(true)?;
            Ok(TokioIo::new(tls.connect(name, tcp).await?))
        })
    }
}

/// Verifies server certificates against the CAs in a file as it is at
/// the handshake.
#[derive(Debug)]
struct ReloadingServerVerifier(Reloading<Arc<WebPkiServerVerifier>>);

impl ReloadingServerVerifier {
    fn from_file(path: std::path::PathBuf) -> Result<ReloadingServerVerifier, TlsError> {
        let file = path.clone();
        let load = move || {
            let roots = read_roots(&file)?;
            Ok(WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider()).build()?)
        };
        Reloading::new("trusted CAs", vec![path], load).map(ReloadingServerVerifier)
    }
}

impl ServerCertVerifier for ReloadingServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.current().verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
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

/// Accepts any server certificate; still checks that the server holds
/// its key (the handshake's signature), so the session is keyed to
/// whoever answered.
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
