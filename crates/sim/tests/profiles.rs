//! The targeted profiles against the correct core: the schedules that
//! catch Figure 8, early votes, joint decisions by one half, and leaders
//! that ignore check-quorum or trust an endless lease (`teeth.rs`) must
//! find nothing wrong with a core that follows the rules. Split into batches so the test
//! harness runs them on all cores.

use keel_sim::{Profile, RunReport, SimOptions, run_seed};

/// Seeds per batch.
const BATCH: u64 = 25;

fn options(profile: Profile) -> SimOptions {
    SimOptions {
        profile,
        safety_ticks: 400,
        heal_ticks: 250,
        ..SimOptions::default()
    }
}

fn explain(report: &RunReport, profile: Profile) -> String {
    let failure = report
        .failure
        .as_ref()
        .expect("only failures are explained");
    format!(
        "seed {} broke {} at {}:\n{}\nlast events:\n  {}\nreplay: cargo run --release -p keel-sim -- --seed {} --profile {profile} --ticks {} --heal-ticks {} --trace",
        report.seed,
        failure.violation.invariant,
        failure.at,
        failure.violation.detail,
        failure.trace_tail.join("\n  "),
        report.seed,
        options(profile).safety_ticks,
        options(profile).heal_ticks,
    )
}

fn run_batch(profile: Profile, batch: u64) {
    let options = options(profile);
    for seed in batch * BATCH + 1..=(batch + 1) * BATCH {
        let report = run_seed(seed, &options);
        assert!(report.passed(), "{}", explain(&report, profile));
    }
}

#[test]
fn figure8_seeds_0001_0025() {
    run_batch(Profile::Figure8, 0);
}

#[test]
fn figure8_seeds_0026_0050() {
    run_batch(Profile::Figure8, 1);
}

#[test]
fn figure8_seeds_0051_0075() {
    run_batch(Profile::Figure8, 2);
}

#[test]
fn figure8_seeds_0076_0100() {
    run_batch(Profile::Figure8, 3);
}

#[test]
fn vote_crash_seeds_0001_0025() {
    run_batch(Profile::VoteCrash, 0);
}

#[test]
fn vote_crash_seeds_0026_0050() {
    run_batch(Profile::VoteCrash, 1);
}

#[test]
fn joint_lag_seeds_0001_0025() {
    run_batch(Profile::JointLag, 0);
}

#[test]
fn joint_lag_seeds_0026_0050() {
    run_batch(Profile::JointLag, 1);
}

#[test]
fn isolated_leader_seeds_0001_0025() {
    run_batch(Profile::IsolatedLeader, 0);
}

#[test]
fn isolated_leader_seeds_0026_0050() {
    run_batch(Profile::IsolatedLeader, 1);
}

/// A profile whose rounds never start proves nothing by passing: the
/// joint-lag leader must take its joint change (it refuses one while it
/// has not committed in its term or another change is pending), and the
/// isolated-leader profile must find leaders to cut off.
#[test]
fn joint_lag_and_isolated_leader_rounds_happen() {
    use keel_sim::FaultKind;
    for (profile, kind) in [
        (Profile::JointLag, FaultKind::JointLagRound),
        (Profile::IsolatedLeader, FaultKind::IsolatedLeaderRound),
    ] {
        let options = options(profile);
        let rounds: u64 = (1..=10)
            .map(|seed| {
                run_seed(seed, &options)
                    .faults
                    .get(&kind)
                    .copied()
                    .unwrap_or(0)
            })
            .sum();
        assert!(rounds >= 30, "{profile}: {rounds} rounds in 10 seeds");
    }
}

/// Every round of the Figure 8 profile needs the cluster to cooperate
/// (a leader with an uncommitted entry, elections on the right side);
/// enough rounds must reach the end for the profile to mean anything.
#[test]
fn figure8_rounds_mostly_complete() {
    use keel_sim::FaultKind;
    let options = options(Profile::Figure8);
    let (mut started, mut completed) = (0, 0);
    for seed in 1..=10 {
        let report = run_seed(seed, &options);
        started += report
            .faults
            .get(&FaultKind::Figure8Round)
            .copied()
            .unwrap_or(0);
        completed += report
            .faults
            .get(&FaultKind::Figure8Completed)
            .copied()
            .unwrap_or(0);
    }
    assert!(
        started >= 20 && completed * 2 >= started,
        "{completed} of {started} rounds completed"
    );
}
