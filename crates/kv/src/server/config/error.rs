//! [`ConfigError`]: every way a member's configuration can be refused,
//! each naming the flag at fault and what would fix it, because a member
//! that starts with a wrong cluster description either fails much later
//! with a confusing peer error or, worse, bootstraps a second cluster.

use std::time::Duration;

use super::super::duration::DurationError;
use super::super::urls::UrlError;
use super::side::Side;
use crate::service::AutoCompactionError;

/// etcd's rule: an election timeout under five heartbeats makes spurious
/// elections likely when one heartbeat is late.
pub const ELECTION_HEARTBEATS_MIN: u64 = 5;

/// A configuration that cannot be used, with the flag at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "--name must not be empty, nor contain `=` or `,` (it is written into --initial-cluster)"
    )]
    BadName,
    #[error(
        "--{flag}: `{value}` is not usable: {why} (write http://HOST:PORT or https://HOST:PORT, e.g. http://127.0.0.1:2379)"
    )]
    BadUrl {
        flag: &'static str,
        value: String,
        why: UrlError,
    },
    #[error("--{flag} is empty; give at least one http://HOST:PORT")]
    NoUrl { flag: &'static str },
    #[error("--listen-peer-urls has {count} URLs; a member serves its peers on exactly one")]
    PeerListeners { count: usize },
    #[error("--{flag} {url} has port 0, which others cannot dial; give the port it listens on")]
    PortZero { flag: &'static str, url: String },
    #[error(
        "--{flag} {url} is a wildcard address that others cannot dial; set --{advertise} to this host's reachable URL"
    )]
    WildcardAdvertised {
        flag: &'static str,
        advertise: &'static str,
        url: String,
    },
    #[error("--{first} and --{second} both use {authority}; give each its own port")]
    PortClash {
        first: &'static str,
        second: &'static str,
        authority: String,
    },
    #[error(
        "--initial-cluster: `{entry}` is not NAME=PEER-URL (e.g. m1=http://127.0.0.1:2380,m2=http://127.0.0.1:2480)"
    )]
    BadClusterEntry { entry: String },
    #[error(
        "--initial-cluster gives the peer URL {url} to both `{first}` and `{second}`; each member needs its own"
    )]
    SharedPeerUrl {
        url: String,
        first: String,
        second: String,
    },
    #[error(
        "--initial-cluster does not list this member `{name}` (it lists {listed}); add `{name}=<its peer URL>` or set --name to one of those"
    )]
    NotInCluster { name: String, listed: String },
    #[error(
        "--initial-cluster gives `{name}` the peer URLs {in_cluster}, but --initial-advertise-peer-urls is {advertised}; make them the same"
    )]
    PeerUrlMismatch {
        name: String,
        in_cluster: String,
        advertised: String,
    },
    #[error(
        "peer URLs mix http:// and https:// ({urls}); members speak TLS to each other or not at all: make every peer URL (--listen-peer-urls, --initial-advertise-peer-urls, --initial-cluster) https:// or every one http://"
    )]
    MixedPeerSchemes { urls: String },
    #[error("--initial-cluster-token must not be empty")]
    EmptyToken,
    #[error("--{flag} must be at least 1")]
    Zero { flag: &'static str },
    #[error("--heartbeat-interval must be at least 1 ms")]
    HeartbeatTooShort,
    #[error("--election-timeout ({election_ms} ms) must be at least {ELECTION_HEARTBEATS_MIN} × --heartbeat-interval ({heartbeat_ms} ms); raise --election-timeout to {} or lower --heartbeat-interval", heartbeat_ms * ELECTION_HEARTBEATS_MIN)]
    ElectionTooShort { election_ms: u64, heartbeat_ms: u64 },
    #[error("--experimental-watch-progress-notify-interval ({given:?}) must be at least {min:?}")]
    WatchProgressTooShort { given: Duration, min: Duration },
    #[error("--{flag}: {error}")]
    BadDuration {
        flag: &'static str,
        error: DurationError,
    },
    #[error(transparent)]
    AutoCompaction(#[from] AutoCompactionError),
    #[error("--auth-token {kind:?}: unsupported token type (Keel serves `simple` tokens only)")]
    AuthTokenKind { kind: String },
    #[error("--auth-token-ttl must be positive")]
    AuthTokenTtlZero,
    #[error("--bcrypt-cost must be between 4 and 31, not {cost}")]
    BcryptCost { cost: u32 },
    #[error(
        "--{p}cert-file is given without --{p}key-file; give the certificate's private key too",
        p = side.prefix()
    )]
    CertWithoutKey { side: Side },
    #[error(
        "--{p}key-file is given without --{p}cert-file; give the certificate that goes with the key too",
        p = side.prefix()
    )]
    KeyWithoutCert { side: Side },
    #[error(
        "--{urls_flag} has {url}, an https URL: give --{p}cert-file and --{p}key-file (this member's certificate and key), or --{p}auto-tls for a self-signed one, or use http://",
        p = side.prefix()
    )]
    HttpsWithoutCert {
        side: Side,
        urls_flag: &'static str,
        url: String,
    },
    #[error(
        "--{p}client-cert-auth needs --{p}trusted-ca-file, the CA that must have signed a {who}'s certificate",
        p = side.prefix(),
        who = side.who()
    )]
    ClientCertAuthWithoutCa { side: Side },
    #[error(
        "--{p}cert-allowed-cn needs --{p}client-cert-auth and --{p}trusted-ca-file: a common name is only checked on a verified certificate",
        p = side.prefix()
    )]
    AllowedCnUnverified { side: Side },
    #[error("--{p}cert-allowed-cn must not be empty", p = side.prefix())]
    EmptyAllowedCn { side: Side },
    #[error(
        "--{w}-crl-file needs --{p}trusted-ca-file: a revocation list is only checked on a verified certificate",
        w = side.who(),
        p = side.prefix()
    )]
    CrlUnverified { side: Side },
    #[error("a certificate common name is only checked for peers (--peer-cert-allowed-cn)")]
    ClientAllowedCn,
}
