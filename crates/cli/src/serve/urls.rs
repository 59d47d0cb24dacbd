//! The URLs a member listens on and advertises: `http://HOST:PORT` or
//! `https://HOST:PORT` (TLS, with `--cert-file`/`--peer-cert-file`), as
//! etcd writes them.

use std::fmt;

/// An `http://HOST:PORT` or `https://HOST:PORT` URL with its parts
/// checked.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HttpUrl {
    pub host: String,
    pub port: u16,
    /// `https://`: served over TLS.
    pub tls: bool,
}

/// Why a URL was refused; the caller adds which flag it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("it does not start with http:// or https://")]
    Scheme,
    #[error("it has no host")]
    NoHost,
    #[error("it has no :PORT")]
    NoPort,
    #[error("its port is not a number from 1 to 65535")]
    BadPort,
    #[error("it has a path; give only http://HOST:PORT")]
    Path,
}

impl HttpUrl {
    pub fn parse(text: &str) -> Result<HttpUrl, UrlError> {
        let text = text.trim();
        let (tls, rest) = match text.split_once("://") {
            Some(("http", rest)) => (false, rest),
            Some(("https", rest)) => (true, rest),
            _ => return Err(UrlError::Scheme),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(UrlError::Path);
        }
        // `rsplit_once` keeps IPv6 literals (`[::1]:2379`) whole.
        let (host, port) = rest.rsplit_once(':').ok_or(UrlError::NoPort)?;
        if host.is_empty() {
            return Err(UrlError::NoHost);
        }
        if port.is_empty() {
            return Err(UrlError::NoPort);
        }
        let port: u16 = port.parse().map_err(|_| UrlError::BadPort)?;
        if port == 0 {
            return Err(UrlError::BadPort);
        }
        Ok(HttpUrl {
            host: host.to_string(),
            port,
            tls,
        })
    }

    /// Parses a comma-separated list, as flags and variables carry them.
    pub fn parse_list(text: &str) -> Result<Vec<HttpUrl>, (String, UrlError)> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| HttpUrl::parse(s).map_err(|e| (s.to_string(), e)))
            .collect()
    }

    /// The address to bind, e.g. `127.0.0.1:2379`.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Whether this is a wildcard address that clients cannot dial.
    pub fn is_unspecified(&self) -> bool {
        matches!(self.host.as_str(), "0.0.0.0" | "[::]")
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// Joins URLs with commas, as flags take them.
pub fn join(urls: &[HttpUrl]) -> String {
    urls.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_url_parses_with_or_without_trailing_slash() {
        let url = HttpUrl::parse("http://127.0.0.1:2379/").unwrap();
        assert_eq!(url.authority(), "127.0.0.1:2379");
        assert_eq!(url.to_string(), "http://127.0.0.1:2379");
        assert_eq!(
            HttpUrl::parse("http://localhost:1").unwrap().host,
            "localhost"
        );
    }

    #[test]
    fn https_url_keeps_its_scheme() {
        let url = HttpUrl::parse("https://127.0.0.1:2379").unwrap();
        assert!(url.tls);
        assert_eq!(url.authority(), "127.0.0.1:2379");
        assert_eq!(url.to_string(), "https://127.0.0.1:2379");
    }

    #[test]
    fn ipv6_literal_keeps_its_brackets() {
        let url = HttpUrl::parse("http://[::1]:2379").unwrap();
        assert_eq!(url.host, "[::1]");
        assert_eq!(url.port, 2379);
    }

    #[test]
    fn unusable_urls_say_why() {
        assert_eq!(HttpUrl::parse("ftp://a:1"), Err(UrlError::Scheme));
        assert_eq!(HttpUrl::parse("127.0.0.1:2379"), Err(UrlError::Scheme));
        assert_eq!(HttpUrl::parse("http://a"), Err(UrlError::NoPort));
        assert_eq!(HttpUrl::parse("http://:1"), Err(UrlError::NoHost));
        assert_eq!(HttpUrl::parse("http://a:0"), Err(UrlError::BadPort));
        assert_eq!(HttpUrl::parse("http://a:99999"), Err(UrlError::BadPort));
        assert_eq!(HttpUrl::parse("http://a:1/x"), Err(UrlError::Path));
    }

    #[test]
    fn list_skips_empty_items_and_names_the_bad_one() {
        let urls = HttpUrl::parse_list("http://a:1, http://b:2,").unwrap();
        assert_eq!(join(&urls), "http://a:1,http://b:2");
        let (bad, why) = HttpUrl::parse_list("http://a:1,b:2").unwrap_err();
        assert_eq!((bad.as_str(), why), ("b:2", UrlError::Scheme));
    }
}
