//! Evidence that the simulator has teeth: deliberately broken callers and
//! cores must be caught within a bounded number of seeds.

use keel_sim::{Breach, CallerBugs, Invariant, RunReport, SimOptions, run_seed};

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
    let violation = report.failure.expect("a failing report").violation;
    assert_eq!(violation.invariant, Invariant::CommittedDurable);
    assert!(
        matches!(violation.detail, Breach::CommittedNotDurable { .. }),
        "caught as {violation}"
    );
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
    let violation = report.failure.expect("a failing report").violation;
    assert_eq!(violation.invariant, Invariant::Linearizability);
    assert!(
        matches!(violation.detail, Breach::NotLinearizable(_)),
        "caught as {violation}"
    );
}

/// Broken cores, behind keel-raft's test-only `fault-injection` feature
/// (enabled through this crate's `core-bugs` feature).
#[cfg(feature = "core-bugs")]
mod core_bugs {
    use super::*;
    use keel_raft::Bugs;
    use keel_sim::{Profile, Violation};

    fn caught_within(bugs: Bugs, seeds: u64) -> Invariant {
        caught_within_profile(bugs, Profile::Random, seeds).invariant
    }

    fn caught_within_profile(bugs: Bugs, profile: Profile, seeds: u64) -> Violation {
        let options = SimOptions {
            core_bugs: bugs,
            profile,
            ..SimOptions::default()
        };
        let report = first_failure(&options, seeds)
            .unwrap_or_else(|| panic!("not caught within {seeds} seeds"));
        report.failure.expect("a failing report").violation
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
        )
        .invariant;
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

    /// Random schedules never caught it in 200 seeds: a leader that hears
    /// from no quorum steps down within two election timeouts anyway, and
    /// the closed-loop clients, still waiting on the old leader, rarely
    /// read from it in the gap between a successor's first write and that
    /// step-down. The isolated-leader profile cuts the leader off and
    /// keeps one client doing lease reads at it while the others write
    /// through the majority (58 of seeds 1..=100 fail; first: 1).
    #[test]
    fn a_lease_that_never_expires_is_caught() {
        let invariant = caught_within_profile(
            Bugs {
                lease_never_expires: true,
                ..Bugs::default()
            },
            Profile::IsolatedLeader,
            20,
        )
        .invariant;
        assert_eq!(invariant, Invariant::Linearizability);
    }

    /// Ignoring check-quorum serves nothing stale (the lease still expires
    /// with the last heartbeat round a quorum answered), so no safety
    /// property notices; random schedules found it in 0 of 500 seeds. The
    /// isolated-leader profile checks check-quorum's own contract on the
    /// leader it cut off (100 of seeds 1..=100 fail; first: 1).
    #[test]
    fn a_leader_that_ignores_check_quorum_is_caught() {
        let violation = caught_within_profile(
            Bugs {
                check_quorum_ignored: true,
                ..Bugs::default()
            },
            Profile::IsolatedLeader,
            10,
        );
        assert_eq!(violation.invariant, Invariant::CheckQuorum);
        assert!(
            matches!(
                violation.detail,
                Breach::IsolatedLeaderStayed { ticks_cut_off, limit_ticks, .. }
                    if ticks_cut_off > limit_ticks
            ),
            "caught as {violation}"
        );
    }

    /// Random schedules rarely change the configuration while the outgoing
    /// voters are cut off (7 of 500 seeds failed). The joint-lag profile
    /// proposes joint changes behind exactly that partition (99 of seeds
    /// 1..=100 fail; first: 1). Which property breaks first depends on
    /// the order of the two commits; most often the lagging side elects a
    /// leader without the joint entry the rest committed.
    #[test]
    fn deciding_a_joint_configuration_by_the_incoming_voters_alone_is_caught() {
        let invariant = caught_within_profile(
            Bugs {
                joint_incoming_majority_only: true,
                ..Bugs::default()
            },
            Profile::JointLag,
            10,
        )
        .invariant;
        assert!(
            matches!(
                invariant,
                Invariant::LeaderCompleteness
                    | Invariant::ElectionSafety
                    | Invariant::CommittedDurable
            ),
            "caught as {invariant}"
        );
    }

    /// A restarted node waits an election timeout before voting (to honour
    /// leases), by which time the term it forgot has almost always passed,
    /// so random schedules missed it in 200 seeds. The vote-crash profile
    /// runs without check-quorum (no such wait) and crashes the voter of a
    /// split vote right after it grants (first failing seed: 1).
    #[test]
    fn voting_before_the_vote_is_durable_is_caught() {
        let violation = caught_within_profile(
            Bugs {
                vote_before_persist: true,
                ..Bugs::default()
            },
            Profile::VoteCrash,
            20,
        );
        assert!(
            matches!(
                violation.detail,
                Breach::TwoLeaders { first, second, .. } if first != second
            ),
            "caught as {violation}"
        );
    }
}

/// Broken node loops, in the full-stack simulation (the runtime's loop and
/// Keel KV under seeded faults), behind keel's test-only switches.
#[cfg(feature = "core-bugs")]
mod runtime_bugs {
    use keel::RuntimeBugs;
    use keel_sim::stack::{StackBugs, StackOptions, StackProfile, run_stack_seed};

    /// The first failure within `seeds` seeds of `profile`, if any.
    fn caught_within(bugs: RuntimeBugs, profile: StackProfile, seeds: u64) -> String {
        let options = StackOptions {
            safety_ticks: 400,
            heal_ticks: 200,
            profile,
            bugs: StackBugs {
                runtime: bugs,
                ..StackBugs::default()
            },
            ..StackOptions::default()
        };
        (0..seeds)
            .find_map(|seed| run_stack_seed(seed, &options).failure)
            .unwrap_or_else(|| panic!("not caught within {seeds} seeds"))
    }

    /// Votes and acknowledgements sent before their batch is synced: a
    /// leader counts an entry committed that a majority has not made
    /// durable (first failing seed: 0, at the first commit).
    #[test]
    fn acknowledging_before_fsync_in_the_node_loop_is_caught() {
        let failure = caught_within(
            RuntimeBugs {
                ack_before_fsync: true,
                ..RuntimeBugs::default()
            },
            StackProfile::Random,
            5,
        );
        assert!(failure.contains("durably"), "caught as: {failure}");
    }

    /// Ticks counted per timer firing: a leader frozen for several
    /// election timeouts wakes believing in its lease and answers a lease
    /// read after another leader committed writes (caught in 197 of 200
    /// seeds of the profile).
    #[test]
    fn leases_counted_in_timer_firings_are_caught() {
        let failure = caught_within(
            RuntimeBugs {
                tick_per_timer: true,
                ..RuntimeBugs::default()
            },
            StackProfile::PausedLeader,
            10,
        );
        assert!(failure.contains("not linearizable"), "caught as: {failure}");
    }
}
