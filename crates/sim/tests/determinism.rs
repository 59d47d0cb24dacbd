//! A seed must reproduce bit for bit: same events, same order, same
//! outcome. The fingerprint hashes every trace event of a run.

use keel_sim::{FaultSet, SimOptions, run_seed};

#[test]
fn one_seed_twice_gives_the_same_trace() {
    let options = SimOptions::default();
    for seed in [1, 2, 3] {
        let first = run_seed(seed, &options);
        let second = run_seed(seed, &options);
        assert_eq!(first.fingerprint, second.fingerprint, "seed {seed}");
        assert_eq!(first.steps, second.steps, "seed {seed}");
        assert_eq!(first.faults, second.faults, "seed {seed}");
        assert_eq!(first.ops, second.ops, "seed {seed}");
    }
}

#[test]
fn different_seeds_give_different_runs() {
    let options = SimOptions::default();
    assert_ne!(
        run_seed(1, &options).fingerprint,
        run_seed(2, &options).fingerprint
    );
}

#[test]
fn a_run_without_faults_injects_none_and_passes() {
    let options = SimOptions {
        faults: FaultSet::none(),
        ..SimOptions::default()
    };
    let report = run_seed(5, &options);
    assert!(report.passed(), "{:?}", report.failure);
    assert!(report.faults.is_empty(), "{:?}", report.faults);
    assert!(report.ops.ok > 100, "{:?}", report.ops);
}
