//! What the run loop knows of a targeted profile (`--profile figure8`,
//! `vote-crash`, `joint-lag`, `isolated-leader`): a schedule that owns its
//! round's state and is advanced after every step of the safety phase.
//!
//! The simulation does not know the profiles; the run (`run.rs`) holds
//! the one a run follows and hands it the simulation after each step, so
//! that a profile may use the simulation while the simulation uses none
//! of them.

use crate::invariants::Violation;
use crate::sim::Simulation;

/// A schedule for bugs that random faults reach too rarely. It watches
/// the cluster through the public `Raft` API and makes its own
/// partitions, crashes or membership changes.
pub(crate) trait TargetedProfile {
    /// Advances the round after a step of the safety phase; an error is a
    /// violation the profile itself checks (or met while acting).
    fn after_step(&mut self, sim: &mut Simulation) -> Result<(), Violation>;
}
