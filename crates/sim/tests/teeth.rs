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
    use keel_sim::Profile;

    fn caught_within(bugs: Bugs, seeds: u64) -> Invariant {
        caught_within_profile(bugs, Profile::Random, seeds)
    }

    fn caught_within_profile(bugs: Bugs, profile: Profile, seeds: u64) -> Invariant {
        let options = SimOptions {
            core_bugs: bugs,
            profile,
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
    /// replication; random schedules did not produce it within 1,500
    /// seeds, so the Figure 8 profile steers partitions around the leaders
    /// (first failing seed: 1; 38 of seeds 1..=40 fail).
    #[test]
    fn committing_a_previous_term_entry_by_counting_is_caught() {
        let invariant = caught_within_profile(
            Bugs {
                commit_previous_term_by_counting: true,
                ..Bugs::default()
            },
            Profile::Figure8,
            20,
        );
        assert_eq!(invariant, Invariant::LeaderCompleteness);
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

    /// Not caught by any profile yet. A leader that hears from no quorum
    /// steps down at its next check-quorum round (an election timeout or
    /// two after its last contact), and voters ignore vote requests for an
    /// election timeout after hearing from it; a paused leader catches up
    /// on its missed ticks before it handles anything (delivering requests
    /// before those ticks would break a correct core just the same: its
    /// lease is only as good as its clock). What remains is the gap of up
    /// to one election timeout between a successor's election and the old
    /// leader's next check; a stale read needs a write acknowledged by the
    /// successor and then a lease read at the old leader inside that gap,
    /// and the closed-loop clients, still waiting on the old leader, do
    /// not produce that order. A targeted profile would have to steer
    /// clients, not only faults.
    #[test]
    #[ignore = "not yet caught within 200 seeds by any profile"]
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
    /// leases), by which time the term it forgot has almost always passed,
    /// so random schedules missed it in 200 seeds. The vote-crash profile
    /// runs without check-quorum (no such wait) and crashes the voter of a
    /// split vote right after it grants (first failing seed: 1).
    #[test]
    fn voting_before_the_vote_is_durable_is_caught() {
        let invariant = caught_within_profile(
            Bugs {
                vote_before_persist: true,
                ..Bugs::default()
            },
            Profile::VoteCrash,
            20,
        );
        assert_eq!(invariant, Invariant::ElectionSafety);
    }
}
