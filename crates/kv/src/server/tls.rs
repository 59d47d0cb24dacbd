//! A member's [`TlsConfig`]s turned into the transport's rustls settings,
//! with etcd 3.4's meanings: a trusted CA file (or `client-cert-auth`)
//! makes a listener require client certificates signed by it; a member
//! connecting out presents its certificate and verifies the server's
//! against the same CA file (the system's roots without one).

use keel::tls::{ClientAuth, ClientTls, PeerTls, ServerTls, TlsError};
use tracing::warn;

use super::ServerError;
use super::config::{MemberConfig, TlsConfig};

fn tls_error(side: &'static str) -> impl Fn(TlsError) -> ServerError {
    move |source| ServerError::Tls { side, source }
}

/// A listener's TLS. Called only for a side with `https://` URLs, which
/// `MemberConfig::validate` admitted only with a certificate and its key.
fn server(tls: &TlsConfig, side: &'static str) -> Result<ServerTls, ServerError> {
    let (cert, key) =
        tls.cert_file.as_ref().zip(tls.key_file.as_ref()).expect(
            "MemberConfig::validate admits https:// URLs only with a certificate and its key",
        );
    // etcd 3.4: a trusted CA file alone requires client certificates too
    // (`TlsConfig::requires_client_certs`); `client-cert-auth` without one
    // was refused by `MemberConfig::validate`.
    let auth = match &tls.trusted_ca_file {
        Some(ca) => ClientAuth::Required {
            trusted_ca_file: ca.clone(),
            allowed_cn: tls.allowed_cn.clone(),
        },
        None => ClientAuth::None,
    };
    ServerTls::from_files(cert, key, &auth).map_err(tls_error(side))
}

fn client(tls: &TlsConfig, side: &'static str) -> Result<ClientTls, ServerError> {
    let identity = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
        _ => None,
    };
    ClientTls::from_files(tls.trusted_ca_file.as_deref(), identity).map_err(tls_error(side))
}

/// What a member needs for TLS, built (and every file read) at startup.
pub(crate) struct MemberTls {
    /// Per `listen_client_urls` entry: `Some` for `https://` ones.
    pub(crate) client_listeners: Vec<Option<ServerTls>>,
    /// For this member's calls to another member's `https://` client URL.
    pub(crate) client_out: Option<ClientTls>,
    /// `Some` when the peer URLs are `https://`.
    pub(crate) peer: Option<PeerTls>,
}

impl MemberTls {
    pub(crate) fn load(config: &MemberConfig) -> Result<MemberTls, ServerError> {
        let mut listener_tls = None;
        let mut client_listeners = Vec::new();
        for url in &config.listen_client_urls {
            if url.tls {
                if listener_tls.is_none() {
                    listener_tls = Some(server(&config.client_tls, "client")?);
                }
                client_listeners.push(listener_tls.clone());
            } else {
                if config.client_tls.cert_file.is_some() {
                    warn!(
                        %url,
                        "client URL is http while --cert-file is given; serving it without TLS"
                    );
                }
                client_listeners.push(None);
            }
        }
        let client_out = if config.client_tls.cert_file.is_some()
            || config.client_tls.trusted_ca_file.is_some()
        {
            Some(client(&config.client_tls, "client")?)
        } else {
            None
        };
        let peer = if config.listen_peer_urls.iter().any(|u| u.tls) {
            Some(PeerTls {
                server: server(&config.peer_tls, "peer")?,
                client: client(&config.peer_tls, "peer")?,
            })
        } else {
            if config.peer_tls.cert_file.is_some() {
                warn!(
                    "peer URLs are http while --peer-cert-file is given; members talk without TLS"
                );
            }
            None
        };
        Ok(MemberTls {
            client_listeners,
            client_out,
            peer,
        })
    }
}
