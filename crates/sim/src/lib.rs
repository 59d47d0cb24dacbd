//! Keel's deterministic cluster simulator.
//!
//! One thread, virtual time and one seeded generator drive N nodes of the
//! real `keel-raft` core over a simulated disk (fsync, lost unsynced
//! writes, torn tails) and a simulated network (loss, duplication, delay,
//! partitions), while simulated clients run a KV workload. Faults come
//! from the seed; invariants named after the Raft paper's properties are
//! checked after every step; the client history is checked for
//! linearizability. A failing seed reproduces bit for bit:
//!
//! ```
//! use keel_sim::{SimOptions, run_seed};
//!
//! let options = SimOptions { safety_ticks: 100, heal_ticks: 150, ..SimOptions::default() };
//! let first = run_seed(7, &options);
//! assert!(first.passed(), "{:?}", first.failure);
//! assert_eq!(first.fingerprint, run_seed(7, &options).fingerprint);
//! ```
//!
//! Two more simulations run what a real member runs around the core: the
//! full stack with Keel KV's state machine ([`stack`]), and the same with
//! *your* state machine and your sequential model of it ([`service`]),
//! from a plain `#[test]` in your crate.

#![deny(missing_docs)]

mod client;
mod disk;
pub mod faults;
mod figure8;
mod history;
mod inject;
pub mod invariants;
mod isolated_leader;
mod joint_lag;
mod kv;
mod nemesis;
mod network;
mod node;
mod options;
mod reconfig;
mod report;
mod rng;
mod route;
mod run;
pub mod service;
mod sim;
pub mod stack;
mod targeted;
mod time;
mod trace;
mod verdict;
mod vote_crash;

pub use faults::{FaultKind, FaultSet};
pub use history::OpCounts;
pub use invariants::{Breach, Invariant, Violation};
pub use options::{CallerBugs, Profile, SimOptions};
pub use report::{Failure, RunReport, Summary};
pub use time::{Micros, TICK};
pub use verdict::{Refutation, Verdict};

/// Runs one seed to completion.
pub fn run_seed(seed: u64, options: &SimOptions) -> RunReport {
    run::run(seed, options)
}
