//! Evidence that the simulator has teeth: deliberately broken callers and
//! cores must be caught within a bounded number of seeds.

use keel_sim::{CallerBugs, Invariant, RunReport, SimOptions, run_seed};

/// Runs seeds until one fails; returns the first failing report.
fn first_failure(options: &SimOptions, seeds: u64) -> Option<RunReport> {
    (1..=seeds)
        .map(|seed| run_seed(seed, options))
        .find(|r| !r.passed())
}

#[test]
fn acknowledging_before_fsync_is_caught() {
    let options = SimOptions {
        caller_bugs: CallerBugs {
            ack_before_fsync: true,
            ..CallerBugs::default()
        },
        ..SimOptions::default()
    };
    let report = first_failure(&options, 20).expect("caught within 20 seeds");
    let failure = report.failure.expect("a failing report");
    assert_eq!(failure.violation.invariant, Invariant::CommittedDurable);
}

#[test]
fn serving_reads_without_confirmation_is_caught() {
    let options = SimOptions {
        caller_bugs: CallerBugs {
            stale_reads: true,
            ..CallerBugs::default()
        },
        ..SimOptions::default()
    };
    let report = first_failure(&options, 20).expect("caught within 20 seeds");
    let failure = report.failure.expect("a failing report");
    assert_eq!(failure.violation.invariant, Invariant::Linearizability);
}

/// Broken cores, behind keel-raft's test-only `fault-injection` feature
/// (enabled through this crate's `core-bugs` feature).
#[cfg(feature = "core-bugs")]
mod core_bugs {
    use super::*;
    use keel_raft::Bugs;

    fn caught_within(bugs: Bugs, seeds: u64) -> Invariant {
        let options = SimOptions {
            core_bugs: bugs,
            ..SimOptions::default()
        };
        let report = first_failure(&options, seeds)
            .unwrap_or_else(|| panic!("not caught within {seeds} seeds"));
        report
            .failure
            .expect("a failing report")
            .violation
            .invariant
    }

    #[test]
    fn voting_without_the_up_to_date_check_is_caught() {
        caught_within(
            Bugs {
                vote_without_log_check: true,
                ..Bugs::default()
            },
            20,
        );
    }

    /// Figure 8 needs three leaders in quick succession with partial
    /// replication; random schedules have not produced it within 1,500
    /// seeds yet (the core's own data-driven test covers the scenario).
    #[test]
    #[ignore = "not yet caught within 500 seeds by random schedules"]
    fn committing_a_previous_term_entry_by_counting_is_caught() {
        caught_within(
            Bugs {
                commit_previous_term_by_counting: true,
                ..Bugs::default()
            },
            500,
        );
    }

    #[test]
    fn read_index_without_a_heartbeat_round_is_caught() {
        let invariant = caught_within(
            Bugs {
                read_index_without_heartbeat: true,
                ..Bugs::default()
            },
            100,
        );
        assert_eq!(invariant, Invariant::Linearizability);
    }

    /// Check-quorum deposes a cut-off leader within an election timeout,
    /// and a paused leader catches up on its missed ticks before it serves
    /// anything, so a stale lease read needs a pause that ends with a read
    /// before the first tick; the schedules do not produce that yet.
    #[test]
    #[ignore = "not yet caught within 200 seeds by random schedules"]
    fn a_lease_that_never_expires_is_caught() {
        let invariant = caught_within(
            Bugs {
                lease_never_expires: true,
                ..Bugs::default()
            },
            200,
        );
        assert_eq!(invariant, Invariant::Linearizability);
    }

    /// A restarted node waits an election timeout before voting (to honour
    /// leases), by which time the term it forgot has almost always passed;
    /// that rule alone defeats this bug in the schedules tried so far.
    #[test]
    #[ignore = "not yet caught within 200 seeds by random schedules"]
    fn voting_before_the_vote_is_durable_is_caught() {
        caught_within(
            Bugs {
                vote_before_persist: true,
                ..Bugs::default()
            },
            200,
        );
    }
}
