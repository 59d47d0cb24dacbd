//! The full-stack simulation: the production node loop and a state
//! machine — Keel KV's, or an embedder's (`crate::service`) — under seeded
//! faults.
//!
//! The core-only simulation (`crate::sim`) drives `keel-raft` with its own
//! Ready loop and a model of the store. This one runs what a real member
//! runs around the core — the runtime's [`keel::node_loop::NodeLoop`]
//! (proposal tracker, pending reads, tick clock, several write batches in
//! flight, snapshot publishing), the runtime's applier, and Keel KV's MVCC
//! state machine on an in-memory redb — over a crashable log store
//! (`keel_storage::MemLogStore`, held to the conformance suite), a lossy
//! partitionable network, and per-member clocks that drift and pause.
//! Clients go through the KV layer's request path (`requests.rs`): proposals,
//! forwarding to the leader, retries decided by Keel KV's `is_retryable`,
//! and results decoded by Keel KV. Their history is checked for
//! linearizability; Election Safety is checked after every step; at the
//! end no write may have been applied twice and members at one revision
//! must agree.
//!
//! ```
//! use keel_sim::stack::{StackOptions, run_stack_seed};
//!
//! let options = StackOptions { safety_ticks: 150, heal_ticks: 150, ..StackOptions::default() };
//! let report = run_stack_seed(3, &options);
//! assert!(report.failure.is_none(), "{:?}", report.failure);
//! assert_eq!(report.fingerprint, run_stack_seed(3, &options).fingerprint);
//! ```

mod app;
mod call;
mod checks;
mod events;
mod kv_app;
mod member;
mod nemesis;
mod requests;
mod world;

pub(crate) use app::{App, CallKind, Operation, PinnedReaders};
pub(crate) use member::Member;

use crate::history::OpCounts;
use crate::verdict::Verdict;

/// Which schedule of faults a full-stack run follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StackProfile {
    /// Crashes (losing a prefix of unsynced writes), partitions, pauses
    /// and slow disks at random moments, over a lossy network.
    #[default]
    Random,
    /// Rounds of a leader cut off from the other members and frozen for
    /// several election timeouts, while lease readers keep reading from it.
    PausedLeader,
    /// Rounds of a follower that hears from the leader late, serves
    /// linearizable reads, and crashes and restarts at once, while answers
    /// to its earlier life's reads are still on their way.
    RestartedReader,
}

/// Deliberate defects around the core, to show the checks catch them.
#[derive(Clone, Debug, Default)]
pub struct StackBugs {
    /// The node loop's own defects.
    #[cfg(feature = "core-bugs")]
    pub runtime: keel::RuntimeBugs,
    /// Every life of a member numbers its reads from 0 again, so a late
    /// answer to a read of an earlier life can release a new one.
    pub read_ids_from_zero: bool,
}

/// What a full-stack run is asked to do.
#[derive(Clone, Debug)]
pub struct StackOptions {
    /// Ticks of faults, then ticks of a healed cluster that must serve.
    pub safety_ticks: u64,
    /// Ticks of the healed cluster.
    pub heal_ticks: u64,
    /// Whether to inject faults at all.
    pub faults: bool,
    /// The run's scenario.
    pub profile: StackProfile,
    /// Deliberate defects of the stack, for the teeth tests.
    pub bugs: StackBugs,
}

impl Default for StackOptions {
    fn default() -> StackOptions {
        StackOptions {
            safety_ticks: 600,
            heal_ticks: 200,
            faults: true,
            profile: StackProfile::Random,
            bugs: StackBugs::default(),
        }
    }
}

/// How a full-stack run ended.
#[derive(Clone, Debug)]
pub struct StackReport {
    /// The first violation, if any.
    pub failure: Option<String>,
    /// The linearizability verdict on the clients' history.
    pub verdict: Verdict,
    /// How the clients' operations ended.
    pub ops: OpCounts,
    /// Events processed.
    pub steps: u64,
    /// Members restarted after a crash or a failed sync.
    pub restarts: u64,
    /// Members paused.
    pub pauses: u64,
    /// Closed connections reported to running members (fast failover).
    pub disconnects: u64,
    /// Syncs that failed (each stopped its member, which was restarted).
    pub sync_failures: u64,
    /// Equal for two runs of one seed and options.
    pub fingerprint: u64,
    /// Events worth knowing that are not violations.
    pub notes: Vec<String>,
}

/// Runs one seed of the full stack to completion.
pub fn run_stack_seed(seed: u64, options: &StackOptions) -> StackReport {
    run_app(seed, options, kv_app::KvApp::default())
}

/// Runs one seed of the full stack with `app` on every member.
pub(crate) fn run_app<A: App>(seed: u64, options: &StackOptions, app: A) -> StackReport {
    world::World::new(seed, options.clone(), app).run()
}
