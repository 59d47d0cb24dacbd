//! [`History`]: what the web page shows, built from successive rounds of
//! [`ClusterSnapshot`]s. Pure: the time of each round comes in with it, so
//! the rules (who is down, who leads, how far behind a follower is, what
//! happened between two rounds) are tested with made-up rounds.

use std::collections::{BTreeMap, VecDeque};

use keel_kv::observe::{ClusterSnapshot, MemberStatus, Role};
use serde::Serialize;

/// How much history the page shows: terms, throughput, events.
pub const WINDOW_MS: u64 = 5 * 60 * 1000;
/// A throughput and latency point is recorded at most this often.
const RATE_EVERY_MS: u64 = 1000;
/// The events kept for the page, newest last.
const EVENTS_MAX: usize = 100;
/// A follower this many entries behind the leader is reported as behind.
pub const BEHIND_ENTRIES: u64 = 1000;
/// A follower missing entries the leader appended this long ago is
/// reported as behind.
pub const BEHIND_MS: u64 = 2000;

/// Everything the page renders, sent whole on every round: simple to
/// render and to reason about, and a few kilobytes per round.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct View {
    /// Wall-clock milliseconds of the round; every other time is relative
    /// to it, so the browser's clock does not matter.
    pub now_ms: u64,
    pub window_ms: u64,
    /// The member serving the page.
    pub observer: String,
    pub leader: Option<LeaderView>,
    pub members: Vec<MemberView>,
    pub replication: Vec<FollowerView>,
    pub alerts: Vec<Alert>,
    pub events: Vec<Event>,
    pub terms: Vec<TermSpan>,
    pub rates: Vec<RatePoint>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LeaderView {
    pub id: String,
    pub name: String,
    pub term: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemberView {
    /// Hexadecimal, as etcdctl prints member ids.
    pub id: String,
    pub name: String,
    pub up: bool,
    /// Why the member is taken for down.
    pub error: Option<String>,
    /// The last known values stay for a member that is down.
    pub role: &'static str,
    pub term: u64,
    pub leader: Option<String>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_index: u64,
    pub snapshot_index: u64,
    pub db_size_bytes: i64,
}

/// The leader's view of one follower.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FollowerView {
    pub id: String,
    pub name: String,
    /// Whether the follower answered the last round.
    pub up: bool,
    pub match_index: u64,
    /// `None` while the leader has not heard from the follower in its
    /// term (a new leader knows nothing of its followers' logs until they
    /// answer): the lag is unknown, not the whole log.
    pub lag_entries: Option<u64>,
    /// How long ago the leader appended the first entry the follower
    /// lacks, to the precision of a round.
    pub lag_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    /// `error` (the cluster or a member is not working) or `warning`.
    pub level: &'static str,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    pub at_ms: u64,
    /// `down`, `up`, `pre-vote`, `vote`, `won`.
    pub kind: &'static str,
    pub member: String,
    pub term: u64,
    pub text: String,
}

/// A stretch of time in one term, with the leader seen in it, if any.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TermSpan {
    pub term: u64,
    pub leader: Option<String>,
    pub from_ms: u64,
    pub to_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RatePoint {
    pub at_ms: u64,
    /// Entries committed per second since the previous point.
    pub commits_per_s: f64,
    /// The mean duration of a WAL group commit (write and fsync) since the
    /// previous point, over every member that answered.
    pub fsync_ms: Option<f64>,
}

/// What a member's counters were at the last point, for rates.
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    at_ms: u64,
    commit_index: u64,
    log_syncs: u64,
    log_sync_micros: u64,
}

/// The rounds seen so far, condensed into what the page needs.
#[derive(Debug, Default)]
pub struct History {
    names: BTreeMap<u64, String>,
    /// The last status each member gave, and whether it answered the
    /// last round (with the reason when not).
    last: BTreeMap<u64, MemberStatus>,
    down: BTreeMap<u64, String>,
    events: VecDeque<Event>,
    terms: VecDeque<TermSpan>,
    /// `(time, leader's last index)`, for followers' lag in time.
    leader_log: VecDeque<(u64, u64)>,
    rates: VecDeque<RatePoint>,
    /// Counts since the last rate point was recorded.
    totals: Option<Totals>,
    /// Each member's group commits and their summed microseconds at the
    /// last round, to add up only what is new.
    member_totals: BTreeMap<u64, (u64, u64)>,
}

/// A member id as etcdctl prints it.
pub fn hex(id: u64) -> String {
    format!("{id:x}")
}

fn role_name(status: &MemberStatus) -> &'static str {
    match status.role() {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::PreCandidate => "pre-candidate",
        Role::Candidate => "candidate",
        Role::Learner => "learner",
        Role::Unspecified => "unknown",
    }
}

impl History {
    /// Takes one round, seen at `now_ms`, and returns the page's view.
    pub fn record(&mut self, now_ms: u64, round: ClusterSnapshot) -> View {
        for report in &round.members {
            match &report.status {
                Ok(status) => self.answered(now_ms, status),
                Err(reason) => self.unanswered(now_ms, report.id, reason),
            }
        }
        let members: Vec<u64> = round.members.iter().map(|r| r.id).collect();
        // Members removed from the configuration are forgotten.
        self.last.retain(|id, _| members.contains(id));
        self.down.retain(|id, _| members.contains(id));
        let leader = self.leader();
        self.track_terms(now_ms, leader.as_ref());
        self.track_rates(now_ms);
        self.forget_before(now_ms.saturating_sub(WINDOW_MS));
        let replication = self.replication(now_ms, leader.as_ref());
        let alerts = self.alerts(leader.as_ref(), &replication);
        View {
            now_ms,
            window_ms: WINDOW_MS,
            observer: self.name(round.observer),
            leader: leader.map(|(id, term)| LeaderView {
                id: hex(id),
                name: self.name(id),
                term,
            }),
            members: members.iter().map(|&id| self.member_view(id)).collect(),
            replication,
            alerts,
            events: self.events.iter().cloned().collect(),
            terms: self.terms.iter().cloned().collect(),
            rates: self.rates.iter().cloned().collect(),
        }
    }

    fn name(&self, id: u64) -> String {
        self.names.get(&id).cloned().unwrap_or_else(|| hex(id))
    }

    fn event(&mut self, at_ms: u64, kind: &'static str, id: u64, term: u64, text: String) {
        if self.events.len() == EVENTS_MAX {
            self.events.pop_front();
        }
        let member = self.name(id);
        self.events.push_back(Event {
            at_ms,
            kind,
            member,
            term,
            text,
        });
    }

    fn answered(&mut self, now_ms: u64, status: &MemberStatus) {
        let id = status.id;
        if !status.name.is_empty() {
            self.names.insert(id, status.name.clone());
        }
        let name = self.name(id);
        if self.down.remove(&id).is_some() {
            self.event(
                now_ms,
                "up",
                id,
                status.term,
                format!("{name} answers again"),
            );
        }
        // A member's counters restart with its process: compare only with
        // a previous answer from the same run (counters not lower).
        let before = self.last.get(&id).filter(|b| {
            b.pre_votes_started <= status.pre_votes_started
                && b.votes_started <= status.votes_started
                && b.elections_won <= status.elections_won
        });
        if let Some(before) = before.cloned() {
            let term = status.term;
            if status.pre_votes_started > before.pre_votes_started {
                let text = format!("{name} asked for pre-votes for term {}", before.term + 1);
                self.event(now_ms, "pre-vote", id, before.term + 1, text);
            }
            if status.votes_started > before.votes_started {
                let text = format!("{name} campaigned for votes in term {term}");
                self.event(now_ms, "vote", id, term, text);
            }
            if status.elections_won > before.elections_won {
                let text = format!("{name} won the election of term {term}");
                self.event(now_ms, "won", id, term, text);
            }
        }
        self.last.insert(id, status.clone());
    }

    fn unanswered(&mut self, now_ms: u64, id: u64, reason: &str) {
        if !self.down.contains_key(&id) {
            let name = self.name(id);
            let term = self.last.get(&id).map_or(0, |s| s.term);
            self.event(
                now_ms,
                "down",
                id,
                term,
                format!("{name} is down: {reason}"),
            );
        }
        self.down.insert(id, reason.to_owned());
    }

    fn up(&self) -> impl Iterator<Item = &MemberStatus> {
        self.last
            .values()
            .filter(|s| !self.down.contains_key(&s.id))
    }

    /// The leader of the highest term any answering member knows: a
    /// member that says it leads it, or else the leader members in that
    /// term name.
    fn leader(&self) -> Option<(u64, u64)> {
        let term = self.up().map(|s| s.term).max()?;
        let in_term = || self.up().filter(move |s| s.term == term);
        let leader = in_term()
            .find(|s| s.role() == Role::Leader)
            .map(|s| s.id)
            .or_else(|| in_term().map(|s| s.leader).find(|&l| l != 0))?;
        (!self.down.contains_key(&leader)).then_some((leader, term))
    }

    fn track_terms(&mut self, now_ms: u64, leader: Option<&(u64, u64)>) {
        let term = leader
            .map(|l| l.1)
            .or_else(|| self.up().map(|s| s.term).max());
        let Some(term) = term else { return };
        let leader = leader.map(|l| self.name(l.0));
        match self.terms.back_mut() {
            Some(span) if span.term == term && span.leader == leader => span.to_ms = now_ms,
            _ => self.terms.push_back(TermSpan {
                term,
                leader,
                from_ms: now_ms,
                to_ms: now_ms,
            }),
        }
        if let Some((id, _)) = self.leader() {
            let last_index = self.last[&id].last_index;
            self.leader_log.push_back((now_ms, last_index));
        }
    }

    fn track_rates(&mut self, now_ms: u64) {
        let commit_index = self.up().map(|s| s.commit_index).max().unwrap_or(0);
        // Group commits summed over the members that answered, each
        // compared with its own previous counts.
        let (mut syncs, mut micros) = (0, 0);
        let current: Vec<(u64, u64, u64)> = self
            .up()
            .map(|s| (s.id, s.log_syncs, s.log_sync_micros))
            .collect();
        for (id, count, sum) in current {
            if let Some(&(c0, s0)) = self.member_totals.get(&id)
                && count >= c0
            {
                syncs += count - c0;
                micros += sum.saturating_sub(s0);
            }
            self.member_totals.insert(id, (count, sum));
        }
        let totals = self.totals.get_or_insert(Totals {
            at_ms: now_ms,
            commit_index,
            ..Totals::default()
        });
        totals.log_syncs += syncs;
        totals.log_sync_micros += micros;
        let elapsed_ms = now_ms.saturating_sub(totals.at_ms);
        if elapsed_ms < RATE_EVERY_MS {
            return;
        }
        let committed = commit_index.saturating_sub(totals.commit_index);
        self.rates.push_back(RatePoint {
            at_ms: now_ms,
            commits_per_s: committed as f64 * 1000.0 / elapsed_ms as f64,
            fsync_ms: (totals.log_syncs > 0)
                .then(|| totals.log_sync_micros as f64 / totals.log_syncs as f64 / 1000.0),
        });
        self.totals = Some(Totals {
            at_ms: now_ms,
            commit_index,
            ..Totals::default()
        });
    }

    fn forget_before(&mut self, cutoff_ms: u64) {
        while self.terms.front().is_some_and(|s| s.to_ms < cutoff_ms) {
            self.terms.pop_front();
        }
        while self.rates.front().is_some_and(|p| p.at_ms < cutoff_ms) {
            self.rates.pop_front();
        }
        while self.events.front().is_some_and(|e| e.at_ms < cutoff_ms) {
            self.events.pop_front();
        }
        // Keep one sample older than the window, so that a follower that
        // has been behind all along still has a time.
        while self.leader_log.len() > 1 && self.leader_log[1].0 < cutoff_ms {
            self.leader_log.pop_front();
        }
    }

    /// When the leader first held more than `index` entries.
    fn appended_after(&self, index: u64) -> Option<u64> {
        self.leader_log
            .iter()
            .find(|(_, last)| *last > index)
            .map(|(at, _)| *at)
    }

    fn replication(&self, now_ms: u64, leader: Option<&(u64, u64)>) -> Vec<FollowerView> {
        let Some(leader) = leader.and_then(|(id, _)| self.last.get(id)) else {
            return Vec::new();
        };
        leader
            .followers
            .iter()
            .map(|f| {
                // A leader starts every follower at match 0 with next past
                // its own log, and only an answer moves either.
                let heard = f.match_index > 0 || f.next_index <= 1;
                let lag_entries = leader.last_index.saturating_sub(f.match_index);
                let lag_ms = if lag_entries == 0 {
                    0
                } else {
                    self.appended_after(f.match_index)
                        .map_or(0, |at| now_ms.saturating_sub(at))
                };
                let (lag_entries, lag_ms) = match heard {
                    true => (Some(lag_entries), Some(lag_ms)),
                    false => (None, None),
                };
                FollowerView {
                    id: hex(f.id),
                    name: self.name(f.id),
                    up: !self.down.contains_key(&f.id),
                    match_index: f.match_index,
                    lag_entries,
                    lag_ms,
                }
            })
            .collect()
    }

    fn alerts(&self, leader: Option<&(u64, u64)>, replication: &[FollowerView]) -> Vec<Alert> {
        let mut alerts = Vec::new();
        if leader.is_none() {
            alerts.push(Alert {
                level: "error",
                text: "No leader: the cluster cannot take writes until an election ends."
                    .to_owned(),
            });
        }
        for (id, reason) in &self.down {
            alerts.push(Alert {
                level: "error",
                text: format!("{} is down ({reason}).", self.name(*id)),
            });
        }
        for f in replication {
            let (Some(entries), Some(ms)) = (f.lag_entries, f.lag_ms) else {
                continue;
            };
            if f.up && (entries >= BEHIND_ENTRIES || ms >= BEHIND_MS) {
                alerts.push(Alert {
                    level: "warning",
                    text: format!(
                        "{} is behind the leader by {entries} entries ({:.1} s).",
                        f.name,
                        ms as f64 / 1000.0
                    ),
                });
            }
        }
        for s in self.up() {
            let unapplied = s.commit_index.saturating_sub(s.applied_index);
            if unapplied > crate::metrics::READY_APPLY_LAG_MAX {
                alerts.push(Alert {
                    level: "warning",
                    text: format!(
                        "{} has {unapplied} committed entries still to apply.",
                        self.name(s.id)
                    ),
                });
            }
        }
        alerts
    }

    fn member_view(&self, id: u64) -> MemberView {
        let status = self.last.get(&id);
        let error = self.down.get(&id).cloned();
        let value = |f: fn(&MemberStatus) -> u64| status.map_or(0, f);
        MemberView {
            id: hex(id),
            name: self.name(id),
            up: error.is_none(),
            error,
            role: status.map_or("unknown", role_name),
            term: value(|s| s.term),
            leader: status
                .map(|s| s.leader)
                .filter(|&l| l != 0)
                .map(|l| self.name(l)),
            commit_index: value(|s| s.commit_index),
            applied_index: value(|s| s.applied_index),
            last_index: value(|s| s.last_index),
            snapshot_index: value(|s| s.snapshot_index),
            db_size_bytes: status.map_or(0, |s| s.db_size_bytes),
        }
    }
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
