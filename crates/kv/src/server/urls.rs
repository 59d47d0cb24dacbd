//! etcd-style URLs (`http://host:port`, `https://host:port`) as the
//! `host:port` we bind or dial.

/// The `host:port` of an `http://` or `https://` URL (a bare `host:port`
/// is accepted too); `None` for other schemes or a missing port.
pub fn host_port(url: &str) -> Option<&str> {
    let rest = match url.split_once("://") {
        Some(("http" | "https", rest)) => rest,
        Some(_) => return None,
        None => url,
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest.rsplit_once(':')?;
    (!host.is_empty() && !rest.contains('/') && port.parse::<u16>().is_ok()).then_some(rest)
}

/// Whether `url` asks for TLS.
pub fn is_https(url: &str) -> bool {
    url.trim_start().starts_with("https://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls_give_host_and_port() {
        assert_eq!(host_port("http://127.0.0.1:2379"), Some("127.0.0.1:2379"));
        assert_eq!(host_port("http://[::1]:2379/"), Some("[::1]:2379"));
        assert_eq!(host_port("localhost:1"), Some("localhost:1"));
        assert_eq!(host_port("https://h:1"), Some("h:1"));
        assert_eq!(host_port("unix://h:1"), None);
        assert_eq!(host_port("http://h"), None);
        assert_eq!(host_port("http://h:1/path"), None);
    }
}
