//! TLS on rustls (ring): certificates and keys read from PEM files, the
//! server side of a listener ([`ServerTls`], [`incoming`]) and the client
//! side of a channel ([`ClientTls`]).
//!
//! Used for the peer listener and the channels to peers ([`PeerTls`] in
//! [`crate::TransportConfig`]), and by applications for their own
//! listeners (keel-kv's client URLs) and clients.
//!
//! Every file is read and checked when the configuration is built, so a
//! missing, unreadable or malformed file is an error at startup that names
//! the file and the problem ([`TlsError`]), never a panic nor a failure at
//! the first handshake.
//!
//! With client authentication on, a connection completes only if the
//! client presents a certificate that chains to one of the trusted CAs
//! (and, when an allowed common name is set, whose subject has it). This
//! is checked during the handshake: a refused client never reaches a gRPC
//! service, so the transport's identity check (cluster id header) runs
//! only for authenticated peers, in addition.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{
    self, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tracing::{info, warn};

/// How long a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress on one listener; further connections wait to
/// be accepted.
const HANDSHAKES_INFLIGHT_MAX: usize = 256;
/// Accepted connections waiting for the server to take them.
const ACCEPTED_QUEUE_MAX: usize = 64;
/// How often a listener looks for a changed certificate or key file.
const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Pause after a failed `accept` (e.g. out of file descriptors), so the
/// loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Why TLS could not be set up. Each variant names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{what} {path} is not valid PEM: {detail}")]
    BadPem {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("{what} {path} holds no PEM `CERTIFICATE` block")]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error(
        "key file {path} holds no private key (expected a PEM `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` block)"
    )]
    NoKey { path: PathBuf },
    #[error("trusted CA file {path}: certificate {index} cannot be a trust anchor: {detail}")]
    BadCa {
        path: PathBuf,
        index: usize,
        detail: String,
    },
    #[error("the key in {key} cannot be used with the certificate in {cert}: {detail}")]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        detail: String,
    },
    #[error("TLS settings refused by rustls: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("the client certificate verifier cannot be built: {0}")]
    ClientVerifier(#[from] tokio_rustls::rustls::server::VerifierBuilderError),
}

/// ring, as tonic's `tls-ring` feature: no C toolchain beyond `cc`. (rustls
/// 0.23.48 deprecates it for lacking post-quantum key exchange, which only
/// the aws-lc-rs provider has; tonic's own ring path uses the same.)
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// Every certificate in a PEM file; at least one.
fn read_certs(
    what: &'static str,
    path: &Path,
) -> Result<(Vec<u8>, Vec<CertificateDer<'static>>), TlsError> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, pem::Error>>()
        .map_err(|e| TlsError::BadPem {
            what,
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_owned(),
        });
    }
    Ok((pem, certs))
}

fn read_key(path: &Path) -> Result<(Vec<u8>, PrivateKeyDer<'static>), TlsError> {
    let pem = read("key file", path)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_owned(),
        },
        e => TlsError::BadPem {
            what: "key file",
            path: path.to_owned(),
            detail: e.to_string(),
        },
    })?;
    Ok((pem, key))
}

/// A certificate chain and its key, checked to belong together.
struct KeyPair {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    certified: CertifiedKey,
}

fn read_key_pair(cert: &Path, key: &Path) -> Result<KeyPair, TlsError> {
    let (cert_pem, certs) = read_certs("certificate file", cert)?;
    let (key_pem, key_der) = read_key(key)?;
    let certified =
        CertifiedKey::from_der(certs, key_der, &provider()).map_err(|e| TlsError::KeyMismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
            detail: e.to_string(),
        })?;
    Ok(KeyPair {
        cert_pem,
        key_pem,
        certified,
    })
}

fn read_roots(path: &Path) -> Result<(Vec<u8>, RootCertStore), TlsError> {
    let (pem, certs) = read_certs("trusted CA file", path)?;
    let mut roots = RootCertStore::empty();
    for (index, cert) in certs.into_iter().enumerate() {
        roots.add(cert).map_err(|e| TlsError::BadCa {
            path: path.to_owned(),
            index: index + 1,
            detail: e.to_string(),
        })?;
    }
    Ok((pem, roots))
}

/// Who may connect to a TLS listener.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// Any client (the server still proves who it is).
    #[default]
    None,
    /// Only clients whose certificate chains to a CA in `trusted_ca_file`,
    /// and, if `allowed_cn` is set, whose subject common name is that.
    Required {
        trusted_ca_file: PathBuf,
        allowed_cn: Option<String>,
    },
}

/// The server side of TLS for a listener. Cheap to clone.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
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
    /// `key_file`, admitting clients as `client_auth` says.
    pub fn from_files(
        cert_file: &Path,
        key_file: &Path,
        client_auth: &ClientAuth,
    ) -> Result<ServerTls, TlsError> {
        let pair = read_key_pair(cert_file, key_file)?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let builder = match client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Required {
                trusted_ca_file,
                allowed_cn,
            } => {
                let (_, roots) = read_roots(trusted_ca_file)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()?;
                let verifier: Arc<dyn ClientCertVerifier> = match allowed_cn {
                    Some(cn) => Arc::new(AllowedCn {
                        inner: verifier,
                        cn: cn.clone(),
                    }),
                    None => verifier,
                };
                builder.with_client_cert_verifier(verifier)
            }
        };
        let resolver = ReloadingCert::new(cert_file, key_file, pair.certified);
        let mut config = builder.with_cert_resolver(Arc::new(resolver));
        // gRPC is HTTP/2; clients (tonic, grpc-go) insist on negotiating it.
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(ServerTls {
            config: Arc::new(config),
        })
    }
}

/// Presents the certificate in `cert` and `key`, re-read when either
/// file's modification time changes (looked at, at most once per
/// `RELOAD_CHECK_INTERVAL`, during a handshake), so certificates rotate
/// without a restart. A pair that fails to load (half written, key and
/// certificate not matching yet) is logged and the previous one kept; it
/// is tried again when a file changes again.
#[derive(Debug)]
struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    certified: Arc<CertifiedKey>,
    /// The files' modification times when last looked at.
    stamps: (Option<SystemTime>, Option<SystemTime>),
    checked: Instant,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl ReloadingCert {
    fn new(cert: &Path, key: &Path, certified: CertifiedKey) -> ReloadingCert {
        ReloadingCert {
            state: Mutex::new(Loaded {
                certified: Arc::new(certified),
                stamps: (modified(cert), modified(key)),
                checked: Instant::now(),
            }),
            cert: cert.to_owned(),
            key: key.to_owned(),
        }
    }

    fn current(&self) -> Arc<CertifiedKey> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.checked.elapsed() < RELOAD_CHECK_INTERVAL {
            return state.certified.clone();
        }
        state.checked = Instant::now();
        let stamps = (modified(&self.cert), modified(&self.key));
        if stamps != state.stamps {
            state.stamps = stamps;
            match read_key_pair(&self.cert, &self.key) {
                Ok(pair) => {
                    info!(cert = %self.cert.display(), "reloaded the TLS certificate");
                    state.certified = Arc::new(pair.certified);
                }
                Err(e) => warn!(error = %e, "keeping the previous TLS certificate"),
            }
        }
        state.certified.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The client side of TLS for channels. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ClientTls {
    config: Arc<ClientTlsConfig>,
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
    /// of `identity` (`(cert_file, key_file)`) to servers that ask.
    pub fn from_files(
        trusted_ca_file: Option<&Path>,
        identity: Option<(&Path, &Path)>,
    ) -> Result<ClientTls, TlsError> {
        let mut config = ClientTlsConfig::new();
        config = match trusted_ca_file {
            Some(path) => {
                let (pem, _) = read_roots(path)?;
                config.ca_certificate(Certificate::from_pem(pem))
            }
            None => config.with_native_roots(),
        };
        if let Some((cert, key)) = identity {
            let pair = read_key_pair(cert, key)?;
            config = config.identity(Identity::from_pem(pair.cert_pem, pair.key_pem));
        }
        Ok(ClientTls {
            config: Arc::new(config),
        })
    }

    /// `endpoint` (an `https://` URL) speaking TLS with these settings.
    pub fn apply(&self, endpoint: Endpoint) -> Result<Endpoint, tonic::transport::Error> {
        endpoint.tls_config((*self.config).clone())
    }
}

/// TLS between members: the peer listener's server side and the client
/// side of every channel to a peer, usually from the same certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerTls {
    pub server: ServerTls,
    pub client: ClientTls,
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

/// One DER element: its tag, its contents and what follows it. `None` if
/// the input is cut short or uses a length form DER forbids.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The common names (OID 2.5.4.3) in a certificate's subject; empty if
/// the certificate does not parse (it then never matches).
fn subject_common_names(cert: &[u8]) -> Vec<String> {
    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const OID: u8 = 0x06;
    const VERSION: u8 = 0xa0;
    const COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];
    let subject = || -> Option<&[u8]> {
        let (SEQUENCE, cert, _) = der_element(cert)? else {
            return None;
        };
        let (SEQUENCE, tbs, _) = der_element(cert)? else {
            return None;
        };
        let mut rest = tbs;
        let (tag, _, after) = der_element(rest)?;
        if tag == VERSION {
            rest = after;
        }
        // serial, signature algorithm, issuer, validity; then the subject.
        for _ in 0..4 {
            rest = der_element(rest)?.2;
        }
        let (SEQUENCE, subject, _) = der_element(rest)? else {
            return None;
        };
        Some(subject)
    };
    let mut names = Vec::new();
    let Some(mut rdns) = subject() else {
        return names;
    };
    while let Some((tag, rdn, rest)) = der_element(rdns) {
        rdns = rest;
        if tag != SET {
            continue;
        }
        let mut attributes = rdn;
        while let Some((SEQUENCE, attribute, rest)) = der_element(attributes) {
            attributes = rest;
            if let Some((OID, oid, value)) = der_element(attribute)
                && oid == COMMON_NAME
                && let Some((_, text, _)) = der_element(value)
            {
                names.push(String::from_utf8_lossy(text).into_owned());
            }
        }
    }
    names
}

/// The connections `listener` accepts, for tonic's
/// `serve_with_incoming`: plain TCP when `tls` is `None`, otherwise only
/// those whose TLS handshake succeeded (within a bounded time; a failed
/// handshake is logged with the client's address and dropped). Nagle's
/// algorithm is off on every connection (small gRPC replies would wait
/// for a delayed ACK). The accepting task ends when the stream is dropped.
pub fn incoming(listener: TcpListener, tls: Option<ServerTls>) -> ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(ACCEPTED_QUEUE_MAX);
    tokio::spawn(accept_loop(listener, tls.map(|t| t.config), tx));
    ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    tx: mpsc::Sender<io::Result<Conn>>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES_INFLIGHT_MAX));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = tx.closed() => return,
        };
        let (stream, addr) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            warn!(%addr, "cannot disable Nagle's algorithm on a connection: {e}");
        }
        let Some(acceptor) = &acceptor else {
            if tx.send(Ok(Conn::Plain(stream))).await.is_err() {
                return;
            }
            continue;
        };
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send(Ok(Conn::Tls(Box::new(tls)))).await;
                }
                Ok(Err(e)) => warn!(%addr, error = %e, "refused a TLS connection"),
                Err(_) => {
                    warn!(%addr, "refused a TLS connection: no handshake within {HANDSHAKE_TIMEOUT:?}")
                }
            }
        });
    }
}

mod conn;
#[cfg(any(test, feature = "test-certs"))]
pub mod test_certs;

pub use conn::{Conn, ConnInfo};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_name_is_found_in_a_generated_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "keel");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "member-1");
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(subject_common_names(cert.der()), vec!["member-1"]);
    }

    #[test]
    fn garbage_has_no_common_name_and_does_not_panic() {
        for bytes in [
            &[][..],
            &[0x30],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x30, 0x02, 0x30, 0x00],
        ] {
            assert!(subject_common_names(bytes).is_empty());
        }
        let mut x = 1u32;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8 | if len % 3 == 0 { 0x30 } else { 0 }
                })
                .collect();
            let _ = subject_common_names(&bytes);
        }
    }

    #[test]
    fn missing_and_malformed_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let err = ServerTls::from_files(&missing, &missing, &ClientAuth::None).unwrap_err();
        assert!(err.to_string().contains("nope.pem"), "{err}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "hello, not a certificate").unwrap();
        let err = ServerTls::from_files(&garbage, &garbage, &ClientAuth::None).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
        assert!(err.to_string().contains("garbage.pem"), "{err}");

        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cert_file = dir.path().join("cert.pem");
        std::fs::write(&cert_file, cert.pem()).unwrap();
        let err = ServerTls::from_files(&cert_file, &cert_file, &ClientAuth::None).unwrap_err();
        assert!(matches!(err, TlsError::NoKey { .. }), "{err}");

        let other_key = dir.path().join("other.key");
        std::fs::write(
            &other_key,
            rcgen::KeyPair::generate().unwrap().serialize_pem(),
        )
        .unwrap();
        let err = ServerTls::from_files(&cert_file, &other_key, &ClientAuth::None).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");

        let key_file = dir.path().join("cert.key");
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        ServerTls::from_files(&cert_file, &key_file, &ClientAuth::None).unwrap();
        let err = ServerTls::from_files(
            &cert_file,
            &key_file,
            &ClientAuth::Required {
                trusted_ca_file: garbage.clone(),
                allowed_cn: None,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("trusted CA file"), "{err}");

        let truncated = dir.path().join("truncated.pem");
        let pem = cert.pem();
        std::fs::write(&truncated, &pem[..pem.len() / 2]).unwrap();
        let err = ClientTls::from_files(Some(&truncated), None).unwrap_err();
        assert!(err.to_string().contains("truncated.pem"), "{err}");
    }
}
