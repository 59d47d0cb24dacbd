//! From merged [`Settings`] to a checked [`ServeConfig`]: the member's
//! configuration, resolved and checked by Keel KV exactly as the `keel-kv`
//! binary resolves it, and the side-car's URLs checked against it.

use keel_kv::server::{ConfigError, HttpUrl, MemberConfig, port_clash};

use super::settings::Settings;
use crate::logging::{LogFormat, LogLevel};

/// A member's complete, checked configuration, and the process's around it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeConfig {
    pub member: MemberConfig,
    pub listen_metrics_urls: Vec<HttpUrl>,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
}

/// A `keel serve` configuration that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Member(#[from] ConfigError),
    #[error("--listen-metrics-urls {url}: the side-car serves plain HTTP only; use http://")]
    HttpsMetrics { url: String },
}

impl ServeConfig {
    /// Applies defaults to `s` and checks the result.
    pub fn resolve(s: Settings) -> Result<ServeConfig, ServeError> {
        let member = s.member.resolve()?;
        let listen_metrics_urls = match s.process.listen_metrics_urls.as_deref() {
            Some(text) => {
                HttpUrl::parse_list(text).map_err(|(value, why)| ConfigError::BadUrl {
                    flag: "listen-metrics-urls",
                    value,
                    why,
                })?
            }
            None => Vec::new(),
        };
        if let Some(url) = listen_metrics_urls.iter().find(|u| u.tls) {
            return Err(ServeError::HttpsMetrics {
                url: url.to_string(),
            });
        }
        if let Some((first, second, authority)) = port_clash(&[
            ("listen-client-urls", &member.listen_client_urls),
            ("listen-peer-urls", &member.listen_peer_urls),
            ("listen-metrics-urls", &listen_metrics_urls),
        ]) {
            return Err(ConfigError::PortClash {
                first,
                second,
                authority,
            }
            .into());
        }
        Ok(ServeConfig {
            member,
            listen_metrics_urls,
            log_level: s.process.log_level.unwrap_or_default(),
            log_format: s.process.log_format.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use keel_kv::server::MemberFlags;

    use super::super::settings::ProcessSettings;
    use super::*;

    #[test]
    fn no_settings_give_the_member_the_keel_kv_binary_runs() {
        let config = ServeConfig::resolve(Settings::default()).unwrap();
        assert_eq!(config.member, MemberFlags::default().resolve().unwrap());
        assert!(config.listen_metrics_urls.is_empty());
    }

    #[test]
    fn metrics_on_the_client_port_is_refused() {
        let error = ServeConfig::resolve(Settings {
            process: ProcessSettings {
                listen_metrics_urls: Some("http://127.0.0.1:2379".into()),
                ..ProcessSettings::default()
            },
            ..Settings::default()
        })
        .unwrap_err();
        assert!(
            matches!(error, ServeError::Member(ConfigError::PortClash { .. })),
            "{error}"
        );
    }

    #[test]
    fn https_metrics_is_refused() {
        let error = ServeConfig::resolve(Settings {
            process: ProcessSettings {
                listen_metrics_urls: Some("https://127.0.0.1:9000".into()),
                ..ProcessSettings::default()
            },
            ..Settings::default()
        })
        .unwrap_err();
        assert!(matches!(error, ServeError::HttpsMetrics { .. }), "{error}");
    }
}
