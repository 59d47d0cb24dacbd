//! A member's [`TlsConfig`]s turned into the transport's rustls settings,
//! with etcd 3.4's meanings: a trusted CA file (or `client-cert-auth`)
//! makes a listener require client certificates signed by it (and not
//! named by the CRL file); a member connecting out presents its
//! certificate and verifies the server's against the same CA file (the
//! system's roots without one). With auto TLS and no certificate given,
//! the side's certificate is a self-signed one kept in
//! `<data-dir>/fixtures/<side>/` (etcd's place), and the member, like
//! etcd's, accepts any certificate from the servers it calls on that
//! side: nothing could verify theirs either.

use std::path::PathBuf;

use keel::tls::{ClientAuth, ClientTls, PeerTls, ServerTls, TlsError, self_signed};
use tracing::warn;

use super::ServerError;
use super::config::{MemberConfig, Side, TlsConfig};
use super::urls::HttpUrl;

fn tls_error(side: Side) -> impl Fn(TlsError) -> ServerError {
    move |source| ServerError::Tls {
        side: side.who(),
        source,
    }
}

/// One side's settings and what it presents, with the side's name.
struct SideTls<'a> {
    side: Side,
    config: &'a TlsConfig,
    /// The certificate and key files: given, or generated for auto TLS.
    key_pair: Option<(PathBuf, PathBuf)>,
}

impl<'a> SideTls<'a> {
    /// `config`'s side; when it serves `https://` URLs and auto TLS
    /// stands in for the files, with its self-signed certificate for the
    /// hosts of `urls`.
    fn new(
        side: Side,
        config: &'a TlsConfig,
        member: &MemberConfig,
        urls: &[&HttpUrl],
    ) -> Result<SideTls<'a>, ServerError> {
        let serves_https = urls.iter().any(|u| u.tls);
        if config.auto_tls && config.cert_file.is_some() {
            warn!(
                "ignoring --{}auto-tls since certificate files are given",
                side.prefix()
            );
        }
        let key_pair = if config.self_signed() && serves_https {
            let mut hosts: Vec<String> = urls.iter().map(|u| u.host.clone()).collect();
            hosts.sort();
            hosts.dedup();
            let dir = member.data_dir.join("fixtures").join(side.who());
            Some(self_signed::ensure(&dir, &hosts).map_err(tls_error(side))?)
        } else {
            config.cert_file.clone().zip(config.key_file.clone())
        };
        Ok(SideTls {
            side,
            config,
            key_pair,
        })
    }

    /// The side's listener TLS. Called only for a side with `https://`
    /// URLs, which `MemberConfig::validate` admitted only with a
    /// certificate and its key, or auto TLS.
    fn server(&self) -> Result<ServerTls, ServerError> {
        let (cert, key) = self.key_pair.as_ref().expect(
            "MemberConfig::validate admits https:// URLs only with a certificate and its key, or auto TLS",
        );
        // etcd 3.4: a trusted CA file alone requires client certificates too
        // (`TlsConfig::requires_client_certs`); `client-cert-auth` without one
        // was refused by `MemberConfig::validate`.
        let auth = match &self.config.trusted_ca_file {
            Some(ca) => ClientAuth::Required {
                trusted_ca_file: ca.clone(),
                crl_file: self.config.crl_file.clone(),
                allowed_cn: self.config.allowed_cn.clone(),
            },
            None => ClientAuth::None,
        };
        ServerTls::from_files(cert, key, &auth).map_err(tls_error(self.side))
    }

    /// How the member calls servers on this side.
    fn client(&self) -> Result<ClientTls, ServerError> {
        let identity = self
            .key_pair
            .as_ref()
            .map(|(cert, key)| (cert.as_path(), key.as_path()));
        let tls = if self.config.self_signed() && self.key_pair.is_some() {
            ClientTls::insecure_skip_verify(identity)
        } else {
            ClientTls::from_files(self.config.trusted_ca_file.as_deref(), identity)
        };
        tls.map_err(tls_error(self.side))
    }
}

/// What a member needs for TLS, built (and every file read or generated)
/// at startup.
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
        let client_urls: Vec<&HttpUrl> = config
            .listen_client_urls
            .iter()
            .chain(&config.advertise_client_urls)
            .collect();
        let client = SideTls::new(Side::Client, &config.client_tls, config, &client_urls)?;
        let mut listener_tls = None;
        let mut client_listeners = Vec::new();
        for url in &config.listen_client_urls {
            if url.tls {
                if listener_tls.is_none() {
                    listener_tls = Some(client.server()?);
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
        let client_out = if client.key_pair.is_some() || config.client_tls.trusted_ca_file.is_some()
        {
            Some(client.client()?)
        } else {
            None
        };
        let peer = if config.listen_peer_urls.iter().any(|u| u.tls) {
            let peer_urls: Vec<&HttpUrl> = config
                .listen_peer_urls
                .iter()
                .chain(&config.initial_advertise_peer_urls)
                .collect();
            let peer = SideTls::new(Side::Peer, &config.peer_tls, config, &peer_urls)?;
            Some(PeerTls {
                server: peer.server()?,
                client: peer.client()?,
            })
        } else {
            if config.peer_tls.cert_file.is_some() || config.peer_tls.auto_tls {
                warn!(
                    "peer URLs are http while --peer-cert-file or --peer-auto-tls is given; members talk without TLS"
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
