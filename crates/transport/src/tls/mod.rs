//! TLS on rustls (ring): certificates, keys, CA bundles and revocation
//! lists read from PEM files (`files.rs`) and re-read when they change
//! (`reload.rs`), the server side of a listener ([`ServerTls`],
//! [`incoming`]), the client side of a channel ([`ClientTls`]), and
//! self-signed certificates for etcd's auto TLS ([`self_signed`]).
//!
//! Used for the peer listener and the channels to peers ([`PeerTls`] in
//! [`crate::TransportConfig`]), and by applications for their own
//! listeners (keel-kv's client URLs) and clients.
//!
//! Every file is read and checked when the configuration is built, so a
//! missing, unreadable or malformed file is an error at startup that names
//! the file and the problem ([`TlsError`]), never a panic nor a failure at
//! the first handshake. Afterwards a changed file is read again before the
//! next handshake that uses it; one that does not load keeps the previous
//! contents in use.
//!
//! With client authentication on, a connection completes only if the
//! client presents a certificate that chains to one of the trusted CAs,
//! is not revoked, and (when an allowed common name is set) whose subject
//! has it. This is checked during the handshake: a refused client never
//! reaches a gRPC service, so the transport's identity check (cluster id
//! header) runs only for authenticated peers, in addition.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::pem;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_stream::wrappers::ReceiverStream;
use tracing::warn;

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
    /// A file could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// What the file was meant to hold (`"certificate file"`, `"key file"`, ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error the operating system returned.
        #[source]
        source: io::Error,
    },
    /// A file is not valid PEM.
    #[error("{what} {path} is not valid PEM: {source}")]
    BadPem {
        /// What the file was meant to hold (`"certificate file"`, `"key file"`, ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the PEM parser reported.
        #[source]
        source: pem::Error,
    },
    /// A file that should hold certificates holds none.
    #[error("{what} {path} holds no PEM `CERTIFICATE` block")]
    NoCertificate {
        /// What the file was meant to hold (`"certificate file"`, `"trusted CA file"`, ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key block.
    #[error(
        "key file {path} holds no private key (expected a PEM `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` block)"
    )]
    NoKey {
        /// The key file.
        path: PathBuf,
    },
    /// A certificate in the trusted CA file cannot be used as a trust anchor.
    #[error("trusted CA file {path}: certificate {index} cannot be a trust anchor: {source}")]
    BadCa {
        /// The trusted CA file.
        path: PathBuf,
        /// The certificate's position in the file, counting from 1.
        index: usize,
        /// Why rustls refused it.
        ///
        /// Boxed, as in `KeyMismatch`.
        #[source]
        source: Box<rustls::Error>,
    },
    /// The private key does not fit the certificate, or rustls cannot use the pair.
    #[error("the key in {key} cannot be used with the certificate in {cert}: {source}")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why rustls refused the pair.
        ///
        /// Boxed: rustls's error is large, and holding it inline beside two
        /// paths would make every `Result` carrying a `TlsError` large.
        #[source]
        source: Box<rustls::Error>,
    },
    /// The CRL file holds no revocation list.
    #[error("CRL file {path} holds no PEM `X509 CRL` block")]
    NoCrl {
        /// The CRL file.
        path: PathBuf,
    },
    /// No trusted CA file was given and the system's root store yielded no usable certificate.
    #[error("no trusted CA file was given and the system has no usable root certificates")]
    NoSystemRoots,
    /// The self-signed certificate or its key could not be written.
    #[error("cannot write the self-signed certificate in {dir}: {source}")]
    SelfSignedWrite {
        /// The directory the files were to be written in.
        dir: PathBuf,
        /// The error the operating system returned.
        #[source]
        source: io::Error,
    },
    /// Generating a self-signed certificate failed.
    #[error("cannot generate a self-signed certificate: {0}")]
    SelfSigned(#[from] rcgen::Error),
    /// rustls refused the TLS settings.
    #[error("TLS settings refused by rustls: {0}")]
    Rustls(#[from] rustls::Error),
    /// A certificate verifier could not be built from the trusted CAs (and CRLs).
    #[error("the certificate verifier cannot be built: {0}")]
    Verifier(#[from] tokio_rustls::rustls::server::VerifierBuilderError),
}

/// ring, as tonic's `tls-ring` feature: no C toolchain beyond `cc`. (rustls
/// 0.23.48 deprecates it for lacking post-quantum key exchange, which only
/// the aws-lc-rs provider has; tonic's own ring path uses the same.)
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// TLS between members: the peer listener's server side and the client
/// side of every channel to a peer, usually from the same certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerTls {
    /// The server side, for the peer listener.
    pub server: ServerTls,
    /// The client side, for the channels to peers.
    pub client: ClientTls,
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

mod client;
mod conn;
mod files;
mod names;
mod reload;
pub mod self_signed;
mod server;
#[cfg(any(test, feature = "test-certs"))]
pub mod test_certs;

pub use client::ClientTls;
pub use conn::{Conn, ConnInfo};
pub use server::{ClientAuth, ServerTls};

#[cfg(test)]
mod tests {
    use super::*;

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
                crl_file: None,
                allowed_cn: None,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("trusted CA file"), "{err}");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, cert.pem()).unwrap();
        let err = ServerTls::from_files(
            &cert_file,
            &key_file,
            &ClientAuth::Required {
                trusted_ca_file: ca_file,
                crl_file: Some(cert_file.clone()),
                allowed_cn: None,
            },
        )
        .unwrap_err();
        assert!(matches!(err, TlsError::NoCrl { .. }), "{err}");
        assert!(err.to_string().contains("cert.pem"), "{err}");

        let truncated = dir.path().join("truncated.pem");
        let pem = cert.pem();
        std::fs::write(&truncated, &pem[..pem.len() / 2]).unwrap();
        let err = ClientTls::from_files(Some(&truncated), None).unwrap_err();
        assert!(err.to_string().contains("truncated.pem"), "{err}");
    }
}
