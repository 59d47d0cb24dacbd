//! Ports of a new local cluster: member i (from 0) gets a block of three
//! at `base + 100·i`: client, peer, metrics — 2379/2380/2381,
//! 2479/2480/2481, … by default, etcd's ports for the first member.

use std::net::TcpListener;

use anyhow::bail;

use super::state::MemberEntry;

/// Distance between two members' port blocks.
const MEMBER_PORT_STRIDE: u16 = 100;
/// The most members `cluster up` starts: beyond this a laptop cluster
/// stops being useful and the port blocks run out.
pub const MEMBERS_MAX: u16 = 9;

fn free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// The members of a new `members`-member cluster, with names m1, m2, …;
/// with `tls`, their client and peer URLs are `https://` (the metrics
/// side-car speaks plain HTTP only).
pub fn plan(members: u16, base_port: u16, tls: bool) -> anyhow::Result<Vec<MemberEntry>> {
    if members == 0 || members > MEMBERS_MAX {
        bail!("--members must be from 1 to {MEMBERS_MAX}");
    }
    let last = u32::from(base_port) + u32::from(MEMBER_PORT_STRIDE) * u32::from(members - 1) + 2;
    if last > u32::from(u16::MAX) {
        bail!("--base-port {base_port} leaves no room for {members} members; use a lower one");
    }
    let scheme = if tls { "https" } else { "http" };
    Ok((0..members)
        .map(|i| {
            let client = base_port + MEMBER_PORT_STRIDE * i;
            MemberEntry {
                name: format!("m{}", i + 1),
                client_url: format!("{scheme}://127.0.0.1:{client}"),
                peer_url: format!("{scheme}://127.0.0.1:{}", client + 1),
                metrics_url: format!("http://127.0.0.1:{}", client + 2),
                pid: None,
            }
        })
        .collect())
}

fn port(url: &str) -> u16 {
    url.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(0)
}

/// Fails, naming the port and its member, if any port is taken.
pub fn check_free(members: &[MemberEntry], hint: &str) -> anyhow::Result<()> {
    for m in members {
        for (what, url) in [
            ("client", &m.client_url),
            ("peer", &m.peer_url),
            ("metrics", &m.metrics_url),
        ] {
            let port = port(url);
            if !free(port) {
                bail!(
                    "port {port} ({what} port of {}) is in use, maybe by another keel or etcd; {hint}",
                    m.name
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_blocks_follow_etcds_ports() {
        let members = plan(3, 2379, false).unwrap();
        assert_eq!(members[0].client_url, "http://127.0.0.1:2379");
        assert_eq!(members[0].peer_url, "http://127.0.0.1:2380");
        assert_eq!(members[2].metrics_url, "http://127.0.0.1:2581");
        assert_eq!(members[2].name, "m3");
        let secured = plan(1, 2379, true).unwrap();
        assert_eq!(secured[0].client_url, "https://127.0.0.1:2379");
        assert_eq!(secured[0].peer_url, "https://127.0.0.1:2380");
        assert_eq!(secured[0].metrics_url, "http://127.0.0.1:2381");
    }

    #[test]
    fn member_count_and_port_range_are_bounded() {
        assert!(plan(0, 2379, false).is_err());
        assert!(plan(10, 2379, false).is_err());
        assert!(plan(3, 65400, false).is_err());
    }

    #[test]
    fn taken_port_is_named() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let members = vec![MemberEntry {
            name: "m1".into(),
            client_url: format!("http://127.0.0.1:{port}"),
            peer_url: "http://127.0.0.1:1".into(),
            metrics_url: "http://127.0.0.1:2".into(),
            pid: None,
        }];
        let error = check_free(&members, "try --base-port")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(&format!("port {port} (client port of m1)")),
            "{error}"
        );
    }
}
