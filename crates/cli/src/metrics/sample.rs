//! One reading of a member's state, taken at each scrape. The side-car
//! holds no state of its own: counters and histograms are kept by the
//! member and read here, so a scrape never disturbs the write path.
//! `Sample` does not borrow keel's types so that the exposition can be
//! tested with made-up values.

use std::future::Future;
use std::pin::Pin;

/// A member's role as the metrics report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
    Learner,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Follower,
        Role::PreCandidate,
        Role::Candidate,
        Role::Leader,
        Role::Learner,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
            Role::Learner => "learner",
        }
    }

    /// The Raft core's role, which calls a learner a follower: only the
    /// configuration tells them apart.
    pub fn from_raft(role: keel::Role, is_learner: bool) -> Role {
        match role {
            keel::Role::Leader => Role::Leader,
            keel::Role::Candidate => Role::Candidate,
            keel::Role::PreCandidate => Role::PreCandidate,
            keel::Role::Follower if is_learner => Role::Learner,
            keel::Role::Follower => Role::Follower,
        }
    }
}

/// A latency histogram: cumulative counts per upper bound, in seconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// `(upper bound in seconds, observations at or below it)`, ascending.
    pub buckets: Vec<(f64, u64)>,
    pub sum_seconds: f64,
    pub count: u64,
}

/// The Raft log as it is on disk: entries before `first_index` were
/// compacted into a snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogSpan {
    pub first_index: u64,
    pub last_index: u64,
}

impl LogSpan {
    pub fn entries(&self) -> u64 {
        (self.last_index + 1).saturating_sub(self.first_index)
    }
}

/// The member's counters since it started, and its WAL latencies.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReplicationCounters {
    pub proposals_committed: u64,
    pub proposals_failed: u64,
    pub proposals_pending: u64,
    pub peer_send_failures: u64,
    pub snapshots_created: u64,
    pub snapshots_installed: u64,
    /// Writes this member forwarded to a leader (its clients', and its own
    /// publishing of its name at start), and the batches that carried
    /// them: their ratio is the mean batch size.
    pub forwarded_commands: u64,
    pub forwarded_batches: u64,
    pub log_append_seconds: Histogram,
    pub log_fsync_seconds: Histogram,
}

/// One etcd API method's calls on the client port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcCalls {
    /// `etcdserverpb.KV`
    pub service: String,
    /// `Range`
    pub method: String,
    /// `unary`, `server_stream` or `bidi_stream`.
    pub kind: &'static str,
    pub started: u64,
    /// Finished calls by gRPC code name (`OK`, `NotFound`, …).
    pub handled: Vec<(&'static str, u64)>,
}

/// Everything `/metrics`, `/health` and `/readyz` report.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub member_id: u64,
    pub role: Role,
    pub term: u64,
    pub leader_id: Option<u64>,
    /// Leaders seen since the member started (the first one included).
    pub leader_changes: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub db_size_bytes: i64,
    /// Bytes free on the filesystem holding the data directory (`None`:
    /// unreadable), and the reserve below which the member raises a
    /// NOSPACE alarm (0: no watch).
    pub disk_free_bytes: Option<u64>,
    pub disk_reserve_bytes: u64,
    /// Keys with history in the store (live, or deleted and not compacted).
    pub keys: u64,
    pub log: LogSpan,
    pub replication: ReplicationCounters,
    /// The store's write transaction commits.
    pub backend_commit_seconds: Histogram,
    /// Round trips to each other member's peer listener, by member ID.
    pub peer_round_trip_seconds: Vec<(u64, Histogram)>,
    pub grpc: Vec<GrpcCalls>,
}

/// A sample being taken.
pub type Sampling<'a> = Pin<Box<dyn Future<Output = Option<Sample>> + Send + 'a>>;

/// Where the side-car takes its samples from.
pub trait Probe: Send + Sync + 'static {
    /// The member's current state, or `None` if it does not answer.
    fn sample(&self) -> Sampling<'_>;
}
