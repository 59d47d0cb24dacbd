//! `keel serve`'s settings as the user gives them: the member's flags
//! ([`MemberFlags`], shared with the `keel-kv` binary) and the process's
//! own ([`ProcessSettings`]: the metrics side-car and the log), each with
//! its `KEEL_*` variable, and the same keys in the optional TOML file.

use std::path::{Path, PathBuf};

use clap::Args;
use keel_kv::server::MemberFlags;
use serde::Deserialize;

use crate::logging::{LogFormat, LogLevel};

/// The flags of `keel serve`: a member's, and the process's.
#[derive(Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    #[command(flatten)]
    pub member: MemberFlags,
    #[command(flatten)]
    pub process: ProcessSettings,
}

/// What `keel serve` runs around the member; the `keel-kv` binary has
/// none of these.
#[derive(Args, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ProcessSettings {
    /// Comma-separated URLs to serve /metrics (Prometheus), /health,
    /// /livez, /readyz and /version on over plain HTTP, apart from the
    /// client port, which serves them too [default: none].
    #[arg(long, env = "KEEL_LISTEN_METRICS_URLS", value_name = "URLS")]
    pub listen_metrics_urls: Option<String>,

    /// The least severe log events to print; RUST_LOG overrides it
    /// [default: info].
    #[arg(long, env = "KEEL_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<LogLevel>,

    /// `human` for readable lines, `json` for one JSON object per line
    /// [default: human].
    #[arg(long, env = "KEEL_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
}

/// The config file's keys that belong to [`ProcessSettings`]; every other
/// key is a member flag.
const PROCESS_KEYS: [&str; 3] = ["listen-metrics-urls", "log-level", "log-format"];

/// Why the `--config` file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("--config {path}: cannot read it: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "--config {path}: {source}\nkeys are `keel serve` flags without the leading --, e.g. data-dir = \"./m1.keel\""
    )]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
}

impl Settings {
    /// Reads a TOML settings file: the process's keys, and the member's
    /// (any other key is refused as an unknown member flag).
    pub fn from_file(path: &Path) -> Result<Settings, FileError> {
        let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let parse_error = |source| FileError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        };
        Self::from_toml(&text).map_err(parse_error)
    }

    fn from_toml(text: &str) -> Result<Settings, toml::de::Error> {
        let mut member: toml::Table = toml::from_str(text)?;
        let mut process = toml::Table::new();
        for key in PROCESS_KEYS {
            if let Some(value) = member.remove(key) {
                process.insert(key.to_string(), value);
            }
        }
        Ok(Settings {
            member: member.try_into()?,
            process: process.try_into()?,
        })
    }

    /// These settings, with `lower`'s filling the ones not given here.
    pub fn or(self, lower: Settings) -> Settings {
        let (p, q) = (self.process, lower.process);
        Settings {
            member: self.member.or(lower.member),
            process: ProcessSettings {
                listen_metrics_urls: p.listen_metrics_urls.or(q.listen_metrics_urls),
                log_level: p.log_level.or(q.log_level),
                log_format: p.log_format.or(q.log_format),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use keel_kv::server::ClusterState;

    use super::*;

    #[test]
    fn file_keys_are_the_flag_names() {
        let settings = Settings::from_toml(
            r#"
            name = "m1"
            data-dir = "/tmp/m1"
            initial-cluster-state = "existing"
            heartbeat-interval = 50
            max-request-bytes = 1024
            log-format = "json"
            "#,
        )
        .unwrap();
        let member = &settings.member;
        assert_eq!(member.name.as_deref(), Some("m1"));
        assert_eq!(member.data_dir, Some(PathBuf::from("/tmp/m1")));
        assert_eq!(member.initial_cluster_state, Some(ClusterState::Existing));
        assert_eq!(member.heartbeat_interval, Some(50));
        assert_eq!(member.max_request_bytes, Some(1024));
        assert_eq!(settings.process.log_format, Some(LogFormat::Json));
    }

    #[test]
    fn unknown_file_key_is_refused() {
        let error = Settings::from_toml("nmae = \"m1\"").unwrap_err();
        assert!(error.to_string().contains("nmae"), "{error}");
    }

    #[test]
    fn given_setting_beats_the_lower_source() {
        let high = Settings {
            member: MemberFlags {
                name: Some("flag".into()),
                ..MemberFlags::default()
            },
            ..Settings::default()
        };
        let low = Settings {
            member: MemberFlags {
                name: Some("file".into()),
                snapshot_count: Some(7),
                ..MemberFlags::default()
            },
            process: ProcessSettings {
                log_level: Some(LogLevel::Debug),
                ..ProcessSettings::default()
            },
        };
        let merged = high.or(low);
        assert_eq!(merged.member.name.as_deref(), Some("flag"));
        assert_eq!(merged.member.snapshot_count, Some(7));
        assert_eq!(merged.process.log_level, Some(LogLevel::Debug));
    }
}
