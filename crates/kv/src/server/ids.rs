//! Member and cluster IDs, derived rather than chosen, so that every member
//! computes the same IDs from the same flags.
//!
//! Like etcd, a member's ID is a hash of its peer URLs and the cluster
//! token: founding members compute each other's IDs from
//! `--initial-cluster`, and a member added at run time (`MemberAdd`, whose
//! request carries peer URLs but no name) gets the ID that the new member,
//! started with the same peer URLs and token, computes for itself. The
//! cluster ID is a hash of the token alone: a member joining an existing
//! cluster is given a different `--initial-cluster` than the founders were,
//! so the token is the only name of the cluster they all share. IDs are
//! stored in the data directory on first start (`identity.rs`), so later
//! flags cannot change them.

/// The cluster token a member uses unless `--initial-cluster-token` says
/// otherwise. It names the cluster and enters every member ID, so both
/// binaries, `snapshot restore` and the services take it from here.
pub const INITIAL_CLUSTER_TOKEN_DEFAULT: &str = "keel-cluster";

/// FNV-1a, 64 bits: tiny, stable across versions and platforms.
fn fnv1a(parts: &[&str]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for part in parts {
        // A separator that cannot occur in a URL keeps ("ab","c") and
        // ("a","bc") apart.
        for byte in part.bytes().chain([0u8]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    hash
}

/// The ID of the member reachable at `peer_urls` in the cluster `token`.
/// Never 0 (Raft reserves it).
pub fn member_id(token: &str, peer_urls: &[String]) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(|u| u.trim_end_matches('/')).collect();
    urls.sort_unstable();
    urls.dedup();
    let mut parts = vec!["member", token];
    parts.extend(urls);
    fnv1a(&parts).max(1)
}

/// The ID of the cluster named `token`.
pub fn cluster_id(token: &str) -> u64 {
    fnv1a(&["cluster", token]).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_id_ignores_url_order_and_trailing_slash_but_not_token() {
        let a = vec!["http://h:1".to_owned(), "http://h:2/".to_owned()];
        let b = vec!["http://h:2".to_owned(), "http://h:1".to_owned()];
        assert_eq!(member_id("t", &a), member_id("t", &b));
        assert_ne!(member_id("t", &a), member_id("u", &a));
        assert_ne!(member_id("t", &a), member_id("t", &a[..1]));
        assert_ne!(cluster_id("t"), cluster_id("u"));
    }
}
