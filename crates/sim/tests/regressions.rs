//! Named regression seeds: every seed that ever exposed a bug, in the core
//! or in the simulator itself, replayed with the options it failed under.
//! A seed's schedule changes when the simulator's draws change, so each
//! entry also says what it used to catch; the bug stays covered by the
//! property that caught it.

use keel_sim::{SimOptions, run_seed};

fn passes(seed: u64, options: SimOptions) {
    let report = run_seed(seed, &options);
    assert!(
        report.passed(),
        "seed {seed}: {:?}\n{}",
        report.failure.as_ref().map(|f| &f.violation),
        report
            .failure
            .as_ref()
            .map(|f| f.trace_tail.join("\n"))
            .unwrap_or_default()
    );
}

/// Simulator bug: a removed node that never learned of its removal still
/// listed itself as a member, so it was never shut down; clients kept
/// sending it reads that it forwarded to a leader of an older term, which
/// drops them without an answer, and the liveness check failed.
#[test]
fn seed_3_removed_node_is_shut_down() {
    passes(3, SimOptions::default());
}

/// Simulator bug: a joining node whose addition was rolled back (the
/// configuration entry was overwritten after heal began) was kept alive as
/// an orphan that clients could talk to forever.
#[test]
fn seed_58_orphaned_joiner_is_shut_down() {
    passes(58, SimOptions::default());
}

/// Simulator bug: two removed nodes named each other in their outdated
/// configuration and kept each other alive; without pre-vote and
/// check-quorum their campaigns kept deposing the real leader after heal.
#[test]
fn seed_964_removed_nodes_do_not_keep_each_other_alive() {
    passes(964, SimOptions::default());
}

/// OPEN CORE BUG (restored term below the log's last term). A follower at
/// term 5 takes AppendEntries from the new leader of term 6; its Ready
/// holds entry 119 of term 6 and hard state term 6, written in that order.
/// The crash keeps the entry write but not the hard-state write (legal
/// under the Ready contract, which orders them but does not make them
/// atomic). `Raft::new` restores term 5 with a last entry of term 6, and
/// `check_invariants` fails: "entry 119 has out-of-order term 6".
/// Fixed: `Raft::new` now takes the last entry's term when it is higher.
fn restored_term_options(nodes: Option<usize>, safety_ticks: u64) -> SimOptions {
    SimOptions {
        nodes,
        safety_ticks,
        ..SimOptions::default()
    }
}

#[test]
fn seed_583_restart_after_entries_but_before_hard_state() {
    passes(583, restored_term_options(Some(3), 1500));
}

#[test]
fn seed_103_restart_after_entries_but_before_hard_state() {
    passes(103, restored_term_options(None, 2000));
}

#[test]
fn seed_284_restart_after_entries_but_before_hard_state() {
    passes(284, restored_term_options(None, 2000));
}

/// Checker bug: a candidate of term 6 was paused with its vote requests
/// out; meanwhile term 7 elected a leader that committed entry 98. On
/// resume the candidate counted its (old) votes and led term 6 — legal,
/// since a stale leader is deposed on first contact — but the checker
/// demanded that it hold entry 98. Leader Completeness is about entries
/// committed in *earlier* terms only.
#[test]
fn seed_7028_late_leader_of_an_older_term() {
    passes(7028, SimOptions::default());
}

/// The same checker bug as seed 7028, met independently.
#[test]
fn seed_6557_late_leader_of_an_older_term() {
    passes(6557, SimOptions::default());
}

/// Simulator bug: the leader compacted while a follower was paused, so its
/// next message to it was an InstallSnapshot, which waited among the paused
/// node's inputs. The node crashed; its waiting inputs were forgotten
/// without the transport reporting the snapshot as undelivered, and the
/// leader, whose progress waits for that report, never sent the follower
/// anything but heartbeats again (liveness failed after heal: "member 5
/// applied 461 but the leader committed 807").
#[test]
fn seed_1080_snapshot_to_a_paused_node_that_crashes_is_reported() {
    passes(1080, SimOptions::default());
}
