//! One run of a seed: the simulation's event loop, with the run's targeted
//! profile advanced after every step of the safety phase, then the
//! liveness check and the report.

use crate::figure8::Figure8;
use crate::invariants::{Violation, liveness};
use crate::isolated_leader::IsolatedLeader;
use crate::joint_lag::JointLag;
use crate::options::{Profile, SimOptions};
use crate::report::RunReport;
use crate::rng::Rng;
use crate::sim::Simulation;
use crate::targeted::TargetedProfile;
use crate::vote_crash::VoteCrash;

/// Runs `seed` to the end, or to the first violation.
pub(crate) fn run(seed: u64, options: &SimOptions) -> RunReport {
    let (mut sim, profile_rng) = Simulation::new(seed, options.clone());
    let mut targeted = profile_rng.and_then(|rng| targeted(options.profile, rng));
    let outcome = drive(&mut sim, &mut targeted);
    sim.report(outcome.err())
}

/// The targeted profile a run follows, drawing from `rng`; none for the
/// random schedule.
fn targeted(profile: Profile, rng: Rng) -> Option<Box<dyn TargetedProfile>> {
    match profile {
        Profile::Random => None,
        Profile::Figure8 => Some(Box::new(Figure8::new(rng))),
        Profile::VoteCrash => Some(Box::new(VoteCrash::new(rng))),
        Profile::JointLag => Some(Box::new(JointLag::new(rng))),
        Profile::IsolatedLeader => Some(Box::new(IsolatedLeader::new(rng))),
    }
}

fn drive(
    sim: &mut Simulation,
    targeted: &mut Option<Box<dyn TargetedProfile>>,
) -> Result<(), Violation> {
    sim.start()?;
    while sim.step()? {
        if let Some(profile) = targeted.as_mut().filter(|_| !sim.healing) {
            profile.after_step(sim)?;
        }
    }
    sim.reach_end();
    liveness::check(sim)
}
