//! The etcd v3 gRPC services, over any [`Consensus`].
//!
//! Writes become commands that go through consensus and come back as apply
//! results; reads are served from the local store after a read barrier
//! (linearizable) or at once (serializable).

mod auth;
mod caller;
mod cluster;
mod compactor;
mod disk_reserve;
mod election;
mod kv;
mod lease;
mod lock;
mod maintenance;
mod nospace;
mod quota;
mod recipes;
pub(crate) mod validate;
mod watch;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::Required;
use crate::command::{decode_result, encode_as};
use crate::consensus::Consensus;
use crate::error::{Corruption, KvError};
use crate::leader::LeaderChannels;
use crate::lessor::Lessor;
use crate::mvcc::{LeaseState, Store};
use crate::proto::command::Caller;
use crate::proto::command::command::Op;
use crate::proto::command::command_result::Result as Outcome;
use crate::proto::etcdserverpb::ResponseHeader;
use crate::state_machine::KvStateMachine;
pub(crate) use caller::Credentials;

pub use auth::AuthService;
pub use cluster::ClusterService;
pub use compactor::{
    AutoCompaction, AutoCompactionError, REVISION_CHECK_EVERY_DEFAULT, run_compactor,
};
pub use disk_reserve::{
    DISK_CHECK_EVERY, DISK_RESERVE_BYTES_DEFAULT, DiskReserve, free_bytes, run_disk_watch,
};
pub use election::ElectionService;
pub use kv::KvService;
pub use lease::{LeaseService, run_expiry_loop};
pub use lock::LockService;
pub use maintenance::{API_VERSION, CLUSTER_VERSION, MaintenanceService};
pub use quota::{QUOTA_BACKEND_BYTES_DEFAULT, QUOTA_BACKEND_BYTES_MAX, Quota};
pub use watch::WatchService;

/// Settings the services need.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// The smallest TTL a lease gets: shorter ones could expire during a
    /// routine leader election.
    pub lease_ttl_min_seconds: i64,
    /// The period of progress notifications for watchers that asked for
    /// them (etcd's `--experimental-watch-progress-notify-interval`).
    pub watch_progress_every: Duration,
    /// How often a require-leader watch stream checks that this member
    /// has a leader: one election timeout, as in etcd.
    pub leader_check_every: Duration,
    /// How often the leader checks lease deadlines.
    pub lease_check_every: Duration,
    /// Where `Maintenance/Snapshot` stages its file.
    pub scratch_dir: std::path::PathBuf,
    /// The largest command a write may become (etcd's `--max-request-bytes`);
    /// larger ones get `etcdserver: request is too large`.
    pub max_request_bytes: usize,
    /// Seeds the IDs `MemberAdd` gives new members (see `server::ids`), so
    /// that the new member derives the same ID from its peer URLs.
    pub cluster_token: String,
    /// How this member speaks TLS to another member's `https://` client
    /// URL (relaying calls only the leader answers); `None`: it cannot.
    pub client_tls: Option<keel::tls::ClientTls>,
    /// The backend quota (etcd's `--quota-backend-bytes`).
    pub quota: Quota,
    /// The free space this member keeps on its data directory's
    /// filesystem before it raises a NOSPACE alarm (Keel's
    /// `--disk-reserve-bytes`); `None`: no watch (a store in memory, or
    /// the reserve turned off).
    pub disk_reserve: Option<DiskReserve>,
    /// What the leader compacts by itself (etcd's `--auto-compaction-*`).
    pub auto_compaction: AutoCompaction,
    /// The bcrypt cost of password hashes (etcd's `--bcrypt-cost`).
    pub bcrypt_cost: u32,
    /// How long an auth token lives unused (etcd's `--auth-token-ttl`).
    pub auth_token_ttl: Duration,
    /// Whether a request without a token is the user its verified client
    /// certificate's common name names (etcd's `--client-cert-auth`).
    pub client_cert_auth: bool,
}

impl ServiceConfig {
    /// etcd's defaults, staging snapshots in `scratch_dir`.
    pub fn new(scratch_dir: impl Into<std::path::PathBuf>) -> ServiceConfig {
        ServiceConfig {
            lease_ttl_min_seconds: 2,
            watch_progress_every: Duration::from_secs(600),
            leader_check_every: Duration::from_secs(1),
            lease_check_every: Duration::from_millis(500),
            scratch_dir: scratch_dir.into(),
            max_request_bytes: MAX_REQUEST_BYTES_DEFAULT,
            cluster_token: String::from(crate::server::ids::INITIAL_CLUSTER_TOKEN_DEFAULT),
            client_tls: None,
            quota: Quota::Bytes(QUOTA_BACKEND_BYTES_DEFAULT),
            disk_reserve: None,
            auto_compaction: AutoCompaction::Off,
            bcrypt_cost: crate::auth::BCRYPT_COST_DEFAULT,
            auth_token_ttl: crate::auth::TOKEN_TTL_DEFAULT,
            client_cert_auth: false,
        }
    }
}

/// How long a call that only the leader answers waits for one to be known.
const LEADER_WAIT: Duration = Duration::from_secs(3);
/// How often that wait looks again.
const LEADER_POLL: Duration = Duration::from_millis(50);

/// etcd's default `--max-request-bytes`: 1.5 MiB.
pub const MAX_REQUEST_BYTES_DEFAULT: usize = 3 * 512 * 1024;

/// State shared by all services of one member.
pub struct Shared<C> {
    pub sm: Arc<KvStateMachine>,
    pub consensus: Arc<C>,
    pub lessor: Lessor,
    pub config: ServiceConfig,
    leaders: LeaderChannels,
}

impl<C: Consensus> Shared<C> {
    pub fn new(sm: Arc<KvStateMachine>, consensus: Arc<C>, config: ServiceConfig) -> Arc<Self> {
        sm.tokens().set_ttl(config.auth_token_ttl);
        Arc::new(Shared {
            sm,
            consensus,
            lessor: Lessor::default(),
            leaders: LeaderChannels::new(config.client_tls.clone()),
            config,
        })
    }

    /// Runs `read` on the store on a blocking thread. A large read runs for
    /// hundreds of milliseconds; on one of the runtime's few workers (two
    /// on a 2-core machine), two at once would hold up every other call,
    /// puts included: with two clients scanning 100 MB each at once on the
    /// leader, a put waited 1.68 s; with the reads here, 276 ms
    /// (`tests/reads_and_writes.rs` with a second scanner, once). A read
    /// of one key is bounded by one value and runs on the worker instead
    /// (`KvService::range`): the hop would cost it more than it takes.
    pub async fn read_store<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Store) -> Result<T, KvError> + Send + 'static,
    ) -> Result<T, KvError> {
        let sm = self.sm.clone();
        tokio::task::spawn_blocking(move || read(sm.store()))
            .await
            .map_err(|_| KvError::Stopped)?
    }

    /// A response header for `revision`, with this member's identity.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        let ids = self.consensus.header_ids();
        ResponseHeader {
            cluster_id: ids.cluster_id,
            member_id: ids.member_id,
            revision,
            raft_term: ids.term,
        }
    }

    /// Completes a header that apply or a read filled with a revision.
    fn fill(&self, header: Option<ResponseHeader>) -> Option<ResponseHeader> {
        let revision = header.map_or(self.sm.store().position().revision, |h| h.revision);
        Some(self.header(revision))
    }

    /// A channel to the leader's client URL, for the calls only the leader
    /// answers. Like etcd, which waits for a leader before it relays such
    /// a call, this waits (up to `LEADER_WAIT`) while there is no leader
    /// or the leader has not published its client URLs yet — as happens
    /// during an election and just after a cluster starts.
    async fn leader_channel(&self) -> Result<tonic::transport::Channel, KvError> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        loop {
            let leader = self.consensus.info().leader_id;
            match self
                .leaders
                .lazy(leader, |id| self.sm.store().members().remove(&id))
            {
                Err(KvError::NoLeader) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(LEADER_POLL).await;
                }
                found => return found,
            }
        }
    }

    /// Whether `caller` may do what `required` says under the auth state
    /// this member has applied (the check before proposing or reading;
    /// apply checks proposed commands again).
    fn authorize(&self, caller: &Caller, required: &Required) -> Result<(), KvError> {
        self.sm
            .store()
            .with_auth(|auth| auth.permit(caller, required))
            .map_err(KvError::from)
    }

    /// Like [`Shared::authorize`] for a request whose requirements depend
    /// on the leases: `required` runs only when auth checks `caller`, under
    /// the same view of the store as the check.
    pub(crate) fn authorize_with(
        &self,
        caller: &Caller,
        required: impl FnOnce(&BTreeMap<i64, LeaseState>) -> Required,
    ) -> Result<(), KvError> {
        self.sm
            .store()
            .with_auth_and_leases(|auth, leases| {
                if !auth.checks(caller) {
                    return Ok(());
                }
                auth.permit(caller, &required(leases))
            })
            .map_err(KvError::from)
    }

    /// Refuses the request unless auth is off or its caller has the root
    /// role: for the calls etcd reserves to admins (membership and most
    /// maintenance).
    pub(crate) async fn admit_admin(&self, credentials: &Credentials) -> Result<(), KvError> {
        let caller = self.caller(credentials).await?;
        self.authorize(&caller, &Required::Admin)
    }

    /// Proposes a command on this member's own behalf (lease expiry, the
    /// member registry).
    async fn propose_as_member(&self, op: Op) -> Result<(i64, Outcome), KvError> {
        self.propose(&crate::command::member_caller(), op).await
    }

    /// Checks the backend quota, then proposes the command as
    /// [`Shared::propose_checked`] does.
    async fn propose(&self, caller: &Caller, op: Op) -> Result<(i64, Outcome), KvError> {
        self.check_quota(&op).await?;
        self.propose_checked(caller, op).await
    }

    /// Validates a command, checks that `caller` may run it, proposes it
    /// on the caller's behalf and decodes its apply result; without the
    /// quota check: for commands that do not grow the store, and for the
    /// NOSPACE alarm itself.
    async fn propose_checked(&self, caller: &Caller, op: Op) -> Result<(i64, Outcome), KvError> {
        validate::op(&op)?;
        self.authorize_with(caller, |leases| Required::op(&op, leases))?;
        let command = encode_as(op.clone(), caller.clone());
        validate::size(&op, command.len(), self.config.max_request_bytes)?;
        let result = self.consensus.propose(command).await?;
        decode_result(&result)
    }
}

/// Turns an unexpected outcome kind into an error instead of a panic.
fn mismatch(what: &'static str) -> KvError {
    KvError::Corrupt {
        what,
        kind: Corruption::ResultKindMismatch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::LocalConsensus;

    /// With auth off nothing is required of a caller, so what a request
    /// would require (every key of each lease it touches, possibly a great
    /// many) is never worked out — once it was, on every write.
    #[tokio::test]
    async fn with_auth_off_no_requirement_is_worked_out() {
        let sm = KvStateMachine::in_memory().unwrap();
        let consensus = Arc::new(LocalConsensus::new(sm.clone(), 1, 1));
        let shared = Shared::new(sm, consensus, ServiceConfig::new(std::env::temp_dir()));
        shared
            .authorize_with(&Caller::default(), |_| {
                panic!("requirements worked out with auth off")
            })
            .unwrap();
    }
}
