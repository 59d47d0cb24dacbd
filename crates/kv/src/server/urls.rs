//! The URLs a member listens on, advertises and dials: `http://HOST:PORT`
//! or `https://HOST:PORT` (TLS), as etcd writes them. [`HttpUrl`] is the
//! one URL type of Keel KV and of `keel`: flags, the member configuration
//! and the member registry's URLs all go through [`HttpUrl::parse`].

use std::collections::BTreeMap;
use std::fmt;

/// An `http://HOST:PORT` or `https://HOST:PORT` URL with its parts
/// checked. Port 0 parses (a listener then binds any free port), but
/// [`super::MemberConfig::validate`] refuses it where others must dial it.
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
    #[error("its port is not a number from 0 to 65535")]
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
        Ok(HttpUrl {
            host: host.to_string(),
            port,
            tls,
        })
    }

    /// Parses a comma-separated list, as flags and variables carry them;
    /// the error names the item at fault.
    pub fn parse_list(text: &str) -> Result<Vec<HttpUrl>, (String, UrlError)> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| HttpUrl::parse(s).map_err(|e| (s.to_string(), e)))
            .collect()
    }

    /// The address to bind or dial, e.g. `127.0.0.1:2379`.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Whether this is a wildcard address that others cannot dial.
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

/// URLs as the strings the member registry and the ID derivation keep.
pub fn strings(urls: &[HttpUrl]) -> Vec<String> {
    urls.iter().map(ToString::to_string).collect()
}

/// The `host:port` to dial for a URL string from the member registry or a
/// request; `None` for anything [`HttpUrl::parse`] refuses, and for an
/// address longer than a Raft configuration records.
pub fn dial_address(url: &str) -> Option<String> {
    HttpUrl::parse(url)
        .ok()
        .filter(|u| u.port != 0)
        .map(|u| u.authority())
        .filter(|addr| addr.len() <= keel::ADDRESS_BYTES_MAX)
}

/// Finds two listeners given the same host and port (port 0 binds a fresh
/// port each time, so it never collides): the flags of the first and the
/// second, and the address.
pub fn port_clash<'a>(groups: &[(&'a str, &[HttpUrl])]) -> Option<(&'a str, &'a str, String)> {
    let mut seen: BTreeMap<(String, u16), &'a str> = BTreeMap::new();
    for &(flag, urls) in groups {
        for url in urls.iter().filter(|u| u.port != 0) {
            if let Some(first) = seen.insert((url.host.clone(), url.port), flag) {
                return Some((first, flag, url.authority()));
            }
        }
    }
    None
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
        assert_eq!(
            dial_address("http://[::1]:2379/").as_deref(),
            Some("[::1]:2379")
        );
    }

    #[test]
    fn unusable_urls_say_why() {
        assert_eq!(HttpUrl::parse("ftp://a:1"), Err(UrlError::Scheme));
        assert_eq!(HttpUrl::parse("127.0.0.1:2379"), Err(UrlError::Scheme));
        assert_eq!(HttpUrl::parse("http://a"), Err(UrlError::NoPort));
        assert_eq!(HttpUrl::parse("http://:1"), Err(UrlError::NoHost));
        assert_eq!(HttpUrl::parse("http://a:99999"), Err(UrlError::BadPort));
        assert_eq!(HttpUrl::parse("http://a:1/x"), Err(UrlError::Path));
        assert_eq!(dial_address("http://a:0"), None);
        assert_eq!(dial_address("unix://a:1"), None);
    }

    #[test]
    fn list_skips_empty_items_and_names_the_bad_one() {
        let urls = HttpUrl::parse_list("http://a:1, http://b:2,").unwrap();
        assert_eq!(join(&urls), "http://a:1,http://b:2");
        let (bad, why) = HttpUrl::parse_list("http://a:1,b:2").unwrap_err();
        assert_eq!((bad.as_str(), why), ("b:2", UrlError::Scheme));
    }

    #[test]
    fn the_same_port_twice_is_a_clash_but_port_zero_never_is() {
        let a = HttpUrl::parse_list("http://127.0.0.1:1,http://127.0.0.1:0").unwrap();
        let b = HttpUrl::parse_list("http://127.0.0.1:0,http://127.0.0.1:1").unwrap();
        assert_eq!(
            port_clash(&[("x", &a), ("y", &b)]),
            Some(("x", "y", "127.0.0.1:1".to_string()))
        );
        assert_eq!(port_clash(&[("x", &a[1..]), ("y", &b[..1])]), None);
    }
}
