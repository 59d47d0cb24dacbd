use keel_kv::observe::{ClusterSnapshot, FollowerProgress, MemberReport, MemberStatus, Role};

use super::*;

fn status(id: u64, role: Role, term: u64, leader: u64, last_index: u64) -> MemberStatus {
    MemberStatus {
        id,
        name: format!("m{id}"),
        role: role.into(),
        term,
        leader,
        commit_index: last_index,
        applied_index: last_index,
        last_index,
        voters: vec![1, 2, 3],
        ..MemberStatus::default()
    }
}

fn round(observer: u64, members: Vec<Result<MemberStatus, &str>>) -> ClusterSnapshot {
    ClusterSnapshot {
        observer,
        members: members
            .into_iter()
            .enumerate()
            .map(|(i, s)| MemberReport {
                id: s.as_ref().map_or(i as u64 + 1, |s| s.id),
                status: s.map_err(str::to_owned),
            })
            .collect(),
    }
}

fn led_by_1(term: u64, last: u64, matches: [u64; 2]) -> Vec<Result<MemberStatus, &'static str>> {
    let mut leader = status(1, Role::Leader, term, 1, last);
    leader.followers = vec![
        FollowerProgress {
            id: 2,
            match_index: matches[0],
            next_index: matches[0] + 1,
        },
        FollowerProgress {
            id: 3,
            match_index: matches[1],
            next_index: matches[1] + 1,
        },
    ];
    vec![
        Ok(leader),
        Ok(status(2, Role::Follower, term, 1, matches[0])),
        Ok(status(3, Role::Follower, term, 1, matches[1])),
    ]
}

#[test]
fn a_healthy_cluster_shows_its_leader_and_no_alerts() {
    let mut history = History::default();
    let view = history.record(1_000, round(1, led_by_1(2, 10, [10, 10])));
    let leader = view.leader.unwrap();
    assert_eq!((leader.name.as_str(), leader.term), ("m1", 2));
    assert_eq!(view.observer, "m1");
    assert!(view.alerts.is_empty(), "{:?}", view.alerts);
    assert!(view.members.iter().all(|m| m.up));
    assert_eq!(view.replication.len(), 2);
    assert!(
        view.replication
            .iter()
            .all(|f| f.lag_entries == Some(0) && f.lag_ms == Some(0))
    );
}

#[test]
fn a_killed_leader_is_down_with_no_leader_until_a_higher_term_is_won() {
    let mut history = History::default();
    history.record(1_000, round(2, led_by_1(2, 10, [10, 10])));
    let mut candidate = status(2, Role::PreCandidate, 2, 0, 10);
    candidate.pre_votes_started = 1;
    let view = history.record(
        1_250,
        round(
            2,
            vec![
                Err("unreachable"),
                Ok(candidate),
                Ok(status(3, Role::Follower, 2, 1, 10)),
            ],
        ),
    );
    assert!(view.leader.is_none(), "the old leader is down");
    let m1 = &view.members[0];
    assert!(!m1.up);
    assert_eq!(m1.error.as_deref(), Some("unreachable"));
    assert_eq!(m1.role, "leader", "its last known role stays");
    assert!(view.alerts.iter().any(|a| a.text.starts_with("No leader")));
    assert!(view.alerts.iter().any(|a| a.text.starts_with("m1 is down")));

    let mut winner = status(2, Role::Leader, 3, 2, 11);
    winner.pre_votes_started = 1;
    winner.votes_started = 1;
    winner.elections_won = 1;
    let view = history.record(
        1_500,
        round(
            2,
            vec![
                Err("unreachable"),
                Ok(winner),
                Ok(status(3, Role::Follower, 3, 2, 11)),
            ],
        ),
    );
    let leader = view.leader.unwrap();
    assert_eq!((leader.name.as_str(), leader.term), ("m2", 3));
    let kinds: Vec<&str> = view.events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, ["down", "pre-vote", "vote", "won"]);
    assert_eq!(view.events[1].text, "m2 asked for pre-votes for term 3");
    assert_eq!(view.events[3].text, "m2 won the election of term 3");
    let terms: Vec<(u64, Option<&str>)> = view
        .terms
        .iter()
        .map(|t| (t.term, t.leader.as_deref()))
        .collect();
    assert_eq!(terms, [(2, Some("m1")), (2, None), (3, Some("m2"))]);
}

#[test]
fn a_member_back_after_a_restart_reports_no_campaigns_of_its_old_run() {
    let mut history = History::default();
    let mut before = led_by_1(2, 10, [10, 10]);
    if let Ok(s) = &mut before[2] {
        s.votes_started = 5;
    }
    history.record(1_000, round(1, before));
    let view = history.record(1_250, round(1, led_by_1(2, 10, [10, 10])));
    assert!(view.events.is_empty(), "{:?}", view.events);
}

#[test]
fn a_follower_behind_is_measured_in_entries_and_time() {
    let mut history = History::default();
    history.record(1_000, round(1, led_by_1(2, 10, [10, 10])));
    history.record(2_000, round(1, led_by_1(2, 20, [20, 10])));
    let view = history.record(4_500, round(1, led_by_1(2, 30, [30, 10])));
    let m3 = view.replication.iter().find(|f| f.name == "m3").unwrap();
    assert_eq!(m3.lag_entries, Some(20));
    assert_eq!(m3.lag_ms, Some(2_500), "entry 11 was first seen at 2 s");
    assert!(
        view.alerts
            .iter()
            .any(|a| a.level == "warning" && a.text.starts_with("m3 is behind"))
    );
    let m2 = view.replication.iter().find(|f| f.name == "m2").unwrap();
    assert_eq!((m2.lag_entries, m2.lag_ms), (Some(0), Some(0)));
}

#[test]
fn a_new_leader_that_has_not_heard_from_a_follower_reports_no_lag_and_no_alert() {
    let mut history = History::default();
    history.record(1_000, round(1, led_by_1(2, 10, [10, 10])));
    let mut fresh = led_by_1(3, 11, [11, 11]);
    if let Ok(leader) = &mut fresh[0] {
        leader.followers[1] = FollowerProgress {
            id: 3,
            match_index: 0,
            next_index: 12,
        };
    }
    let view = history.record(9_000, round(1, fresh));
    let m3 = view.replication.iter().find(|f| f.name == "m3").unwrap();
    assert_eq!((m3.lag_entries, m3.lag_ms), (None, None));
    assert!(view.alerts.is_empty(), "{:?}", view.alerts);
}

#[test]
fn throughput_is_committed_entries_per_second() {
    let mut history = History::default();
    history.record(1_000, round(1, led_by_1(2, 100, [100, 100])));
    let view = history.record(3_000, round(1, led_by_1(2, 500, [500, 500])));
    assert_eq!(view.rates.len(), 1);
    assert_eq!(view.rates[0].commits_per_s, 200.0);
}

#[test]
fn old_terms_leave_the_window() {
    let mut history = History::default();
    history.record(1_000, round(1, led_by_1(2, 1, [1, 1])));
    let view = history.record(1_000 + WINDOW_MS + 1, round(1, led_by_1(3, 1, [1, 1])));
    assert_eq!(view.terms.len(), 1);
    assert_eq!(view.terms[0].term, 3);
}
