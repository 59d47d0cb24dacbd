//! [`MemberConfig::validate`]: the one validator of a member's
//! configuration, whichever binary or library caller built it. It checks
//! what can be checked before binding anything.

use super::super::urls::{HttpUrl, join, port_clash};
use super::error::{ConfigError, ELECTION_HEARTBEATS_MIN};
use super::side::Side;
use super::{MemberConfig, WATCH_PROGRESS_NOTIFY_INTERVAL_MIN};

/// bcrypt's own bounds on the cost.
const BCRYPT_COST_RANGE: std::ops::RangeInclusive<u32> = 4..=31;

impl MemberConfig {
    /// Checks every setting and the relations between them; the error
    /// names the flag at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_urls()?;
        self.client_tls
            .validate(Side::Client, "listen-client-urls", &self.listen_client_urls)?;
        if self.client_tls.allowed_cn.is_some() {
            return Err(ConfigError::ClientAllowedCn);
        }
        self.peer_tls
            .validate(Side::Peer, "listen-peer-urls", &self.listen_peer_urls)?;
        self.check_founders(self.known_advertise_peer_urls())?;
        if self.initial_cluster_token.is_empty() {
            return Err(ConfigError::EmptyToken);
        }
        self.validate_timing()?;
        self.validate_auth()
    }

    /// Checks the flags that found a cluster (`--name`,
    /// `--initial-cluster`, `--initial-advertise-peer-urls`), which is all
    /// that `snapshot restore` takes: every URL is dialable, this member
    /// is among the founders, and its advertised URLs are its entry's.
    pub(crate) fn validate_founders(&self) -> Result<(), ConfigError> {
        let advertised = &self.initial_advertise_peer_urls;
        self.check_founders((!advertised.is_empty()).then_some(advertised.as_slice()))
    }

    /// [`MemberConfig::validate_founders`], comparing this member's entry
    /// with `advertised` when they are known.
    fn check_founders(&self, advertised: Option<&[HttpUrl]>) -> Result<(), ConfigError> {
        if self.name.is_empty() || self.name.contains(['=', ',']) {
            return Err(ConfigError::BadName);
        }
        let dialed = self
            .initial_advertise_peer_urls
            .iter()
            .map(|u| ("initial-advertise-peer-urls", u))
            .chain(
                self.initial_cluster
                    .iter()
                    .map(|(_, u)| ("initial-cluster", u)),
            );
        for (flag, url) in dialed {
            if url.port == 0 {
                return Err(ConfigError::PortZero {
                    flag,
                    url: url.to_string(),
                });
            }
        }
        let founders = self.founders();
        let Some((_, mine)) = founders.iter().find(|(n, _)| *n == self.name) else {
            return Err(ConfigError::NotInCluster {
                name: self.name.clone(),
                listed: founders
                    .iter()
                    .map(|(n, _)| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        if let Some(advertised) = advertised
            && !same_urls(mine, advertised)
        {
            return Err(ConfigError::PeerUrlMismatch {
                name: self.name.clone(),
                in_cluster: join(mine),
                advertised: join(advertised),
            });
        }
        Ok(())
    }

    /// Listeners: at least one for clients, exactly one for peers, on
    /// distinct ports; advertised URLs others can dial; one scheme among
    /// the peer URLs.
    fn validate_urls(&self) -> Result<(), ConfigError> {
        if self.listen_client_urls.is_empty() {
            return Err(ConfigError::NoUrl {
                flag: "listen-client-urls",
            });
        }
        match self.listen_peer_urls.len() {
            0 => {
                return Err(ConfigError::NoUrl {
                    flag: "listen-peer-urls",
                });
            }
            1 => {}
            count => return Err(ConfigError::PeerListeners { count }),
        }
        if let Some(url) = self.advertise_client_urls.iter().find(|u| u.port == 0) {
            return Err(ConfigError::PortZero {
                flag: "advertise-client-urls",
                url: url.to_string(),
            });
        }
        let advertised = [
            (
                "listen-client-urls",
                "advertise-client-urls",
                &self.listen_client_urls,
                &self.advertise_client_urls,
            ),
            (
                "listen-peer-urls",
                "initial-advertise-peer-urls",
                &self.listen_peer_urls,
                &self.initial_advertise_peer_urls,
            ),
        ];
        for (flag, advertise, listen, announced) in advertised {
            if let Some(wild) = listen.iter().find(|u| u.is_unspecified())
                && announced.is_empty()
            {
                return Err(ConfigError::WildcardAdvertised {
                    flag,
                    advertise,
                    url: wild.to_string(),
                });
            }
        }
        if let Some((first, second, authority)) = port_clash(&[
            ("listen-client-urls", &self.listen_client_urls),
            ("listen-peer-urls", &self.listen_peer_urls),
        ]) {
            return Err(ConfigError::PortClash {
                first,
                second,
                authority,
            });
        }
        let peer_urls: Vec<&HttpUrl> = self
            .listen_peer_urls
            .iter()
            .chain(&self.initial_advertise_peer_urls)
            .chain(self.initial_cluster.iter().map(|(_, u)| u))
            .collect();
        let https = peer_urls.iter().filter(|u| u.tls).count();
        if https != 0 && https != peer_urls.len() {
            return Err(ConfigError::MixedPeerSchemes {
                urls: peer_urls
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(())
    }

    fn validate_timing(&self) -> Result<(), ConfigError> {
        let heartbeat_ms = self.heartbeat_interval.as_millis() as u64;
        let election_ms = self.election_timeout.as_millis() as u64;
        if heartbeat_ms == 0 {
            return Err(ConfigError::HeartbeatTooShort);
        }
        if election_ms < heartbeat_ms.saturating_mul(ELECTION_HEARTBEATS_MIN) {
            return Err(ConfigError::ElectionTooShort {
                election_ms,
                heartbeat_ms,
            });
        }
        if self.snapshot_count == 0 {
            return Err(ConfigError::Zero {
                flag: "snapshot-count",
            });
        }
        if self.max_request_bytes == 0 {
            return Err(ConfigError::Zero {
                flag: "max-request-bytes",
            });
        }
        if self.watch_progress_notify_interval < WATCH_PROGRESS_NOTIFY_INTERVAL_MIN {
            return Err(ConfigError::WatchProgressTooShort {
                given: self.watch_progress_notify_interval,
                min: WATCH_PROGRESS_NOTIFY_INTERVAL_MIN,
            });
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let kind = self.auth_token.split(',').next().unwrap_or_default();
        if kind != "simple" {
            return Err(ConfigError::AuthTokenKind {
                kind: kind.to_string(),
            });
        }
        if self.auth_token_ttl.is_zero() {
            return Err(ConfigError::AuthTokenTtlZero);
        }
        if !BCRYPT_COST_RANGE.contains(&self.bcrypt_cost) {
            return Err(ConfigError::BcryptCost {
                cost: self.bcrypt_cost,
            });
        }
        Ok(())
    }
}

/// The same URLs, in any order.
fn same_urls(a: &[HttpUrl], b: &[HttpUrl]) -> bool {
    let sorted = |urls: &[HttpUrl]| {
        let mut v = urls.to_vec();
        v.sort();
        v
    };
    sorted(a) == sorted(b)
}

#[cfg(test)]
mod tests {
    use super::super::TlsConfig;
    use super::*;

    fn url(text: &str) -> HttpUrl {
        HttpUrl::parse(text).unwrap()
    }

    #[test]
    fn defaults_are_valid_and_initial_cluster_parses() {
        assert_eq!(MemberConfig::new("n1", "/tmp/x").validate(), Ok(()));
        let parsed = MemberConfig::parse_initial_cluster("a=http://h:1,b=http://h:2").unwrap();
        assert_eq!(parsed[1], ("b".into(), url("http://h:2")));
        assert!(matches!(
            MemberConfig::parse_initial_cluster("a"),
            Err(ConfigError::BadClusterEntry { .. })
        ));
        assert!(matches!(
            MemberConfig::parse_initial_cluster("a=http://h:1,b=http://h:1"),
            Err(ConfigError::SharedPeerUrl { .. })
        ));
    }

    #[test]
    fn member_missing_from_initial_cluster_is_refused() {
        let config = MemberConfig {
            initial_cluster: vec![("other".into(), url("http://h:1"))],
            ..MemberConfig::new("n1", "/tmp/x")
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::NotInCluster { .. })
        ));
    }

    #[test]
    fn listeners_on_port_zero_are_accepted_but_dialed_urls_on_it_are_not() {
        let config = MemberConfig {
            listen_client_urls: vec![url("http://127.0.0.1:0")],
            listen_peer_urls: vec![url("http://127.0.0.1:0")],
            initial_advertise_peer_urls: vec![url("http://127.0.0.1:1")],
            initial_cluster: vec![("n1".into(), url("http://127.0.0.1:1"))],
            ..MemberConfig::new("n1", "/tmp/x")
        };
        assert_eq!(config.validate(), Ok(()));
        let config = MemberConfig {
            initial_advertise_peer_urls: vec![url("http://127.0.0.1:0")],
            initial_cluster: vec![("n1".into(), url("http://127.0.0.1:0"))],
            ..config
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::PortZero { .. })
        ));
    }

    fn tls_member() -> MemberConfig {
        MemberConfig {
            listen_client_urls: vec![url("https://127.0.0.1:2379")],
            listen_peer_urls: vec![url("https://127.0.0.1:2380")],
            initial_cluster: vec![("n1".into(), url("https://127.0.0.1:2380"))],
            client_tls: TlsConfig {
                cert_file: Some("c.pem".into()),
                key_file: Some("c.key".into()),
                ..TlsConfig::default()
            },
            peer_tls: TlsConfig {
                cert_file: Some("p.pem".into()),
                key_file: Some("p.key".into()),
                trusted_ca_file: Some("ca.pem".into()),
                client_cert_auth: true,
                allowed_cn: Some("member".into()),
                crl_file: Some("crl.pem".into()),
                auto_tls: false,
            },
            ..MemberConfig::new("n1", "/tmp/x")
        }
    }

    fn refusal(config: MemberConfig) -> String {
        match config.validate() {
            Err(e) => e.to_string(),
            Ok(()) => panic!("expected a refusal"),
        }
    }

    #[test]
    fn tls_flags_that_fit_together_are_accepted() {
        assert_eq!(tls_member().validate(), Ok(()));
    }

    #[test]
    fn tls_flags_that_do_not_fit_together_say_what_to_do() {
        let mut c = tls_member();
        c.client_tls.cert_file = None;
        assert!(refusal(c).contains("key-file is given without --cert-file"));

        let mut c = tls_member();
        c.client_tls = TlsConfig::default();
        let msg = refusal(c);
        assert!(msg.contains("https://127.0.0.1:2379"), "{msg}");
        assert!(msg.contains("give --cert-file and --key-file"), "{msg}");

        let mut c = tls_member();
        c.peer_tls.trusted_ca_file = None;
        assert!(refusal(c).contains("--peer-client-cert-auth needs --peer-trusted-ca-file"));

        let mut c = tls_member();
        c.peer_tls.client_cert_auth = false;
        c.peer_tls.trusted_ca_file = None;
        assert!(refusal(c).contains("--peer-cert-allowed-cn needs"));

        let mut c = tls_member();
        c.initial_cluster
            .push(("n2".into(), url("http://127.0.0.1:2480")));
        assert!(refusal(c).contains("mix http:// and https://"));

        let mut c = tls_member();
        c.client_tls.crl_file = Some("crl.pem".into());
        assert_eq!(
            refusal(c),
            "--client-crl-file needs --trusted-ca-file: a revocation list is only checked on a verified certificate"
        );
    }

    #[test]
    fn auto_tls_stands_in_for_the_certificate_files() {
        let mut c = tls_member();
        c.client_tls = TlsConfig {
            auto_tls: true,
            ..TlsConfig::default()
        };
        c.peer_tls = c.client_tls.clone();
        assert_eq!(c.validate(), Ok(()));
        assert!(c.peer_tls.self_signed());
        let mut given = tls_member();
        given.client_tls.auto_tls = true;
        assert!(
            !given.client_tls.self_signed(),
            "given files win, as in etcd"
        );
    }

    #[test]
    fn short_election_timeout_says_the_minimum() {
        let config = MemberConfig {
            heartbeat_interval: std::time::Duration::from_millis(100),
            election_timeout: std::time::Duration::from_millis(300),
            ..MemberConfig::new("n1", "/tmp/x")
        };
        assert_eq!(
            refusal(config),
            "--election-timeout (300 ms) must be at least 5 × --heartbeat-interval (100 ms); \
             raise --election-timeout to 500 or lower --heartbeat-interval"
        );
    }

    #[test]
    fn same_port_for_clients_and_peers_is_refused() {
        let config = MemberConfig {
            listen_peer_urls: vec![url("http://127.0.0.1:2379")],
            initial_cluster: vec![("n1".into(), url("http://127.0.0.1:2379"))],
            ..MemberConfig::new("n1", "/tmp/x")
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::PortClash { .. })
        ));
    }
}
