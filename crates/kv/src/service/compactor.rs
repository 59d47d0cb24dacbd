//! The leader's compactor: auto-compaction (etcd's
//! `--auto-compaction-mode` and `--auto-compaction-retention`) and the
//! steps that delete what a compaction left behind (`mvcc/compaction.rs`).
//!
//! Every member keeps the schedule's clock (a periodic schedule records
//! the revision at each check, as etcd's compactor does while paused), but
//! only the leader proposes: compactions and steps are log entries, so
//! every member applies the same ones at the same positions.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Shared;
use crate::consensus::Consensus;
use crate::error::KvError;
use crate::proto::command::CompactionStep;
use crate::proto::command::command::Op;
use crate::proto::etcdserverpb::CompactionRequest;

/// How often etcd's revision compactor looks (`revInterval`).
pub const REVISION_CHECK_EVERY_DEFAULT: Duration = Duration::from_secs(300);
/// A periodic schedule checks ten times per retention period, and at
/// least once an hour (etcd's `retryDivisor` and its one-hour cap).
const PERIODIC_CHECKS_PER_PERIOD: u32 = 10;
const PERIODIC_INTERVAL_MAX: Duration = Duration::from_secs(3600);
/// How often the compactor looks for work when it has none.
const IDLE_TICK: Duration = Duration::from_millis(100);

/// What the leader compacts by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Nothing (etcd's retention 0, the default).
    Off,
    /// Keep at least `retention` of history: compact to the revision the
    /// store had `retention` ago (a tenth of it more once running), once
    /// per `retention` but at least once an hour.
    Periodic { retention: Duration },
    /// Keep the last `retention` revisions, looking every `check_every`
    /// (etcd: five minutes).
    Revision {
        retention: i64,
        check_every: Duration,
    },
}

/// Why etcd's auto-compaction flags do not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AutoCompactionError {
    #[error("unknown auto-compaction-mode {mode:?}")]
    UnknownMode { mode: String },
    #[error("--auto-compaction-retention: {0}")]
    PeriodicRetention(#[from] crate::server::DurationError),
    #[error(
        "--auto-compaction-retention {retention:?}: revision mode keeps a number of revisions (e.g. 1000)"
    )]
    RevisionRetention { retention: String },
}

impl AutoCompaction {
    /// etcd's flags: `mode` is `periodic` or `revision`; `retention` is,
    /// in periodic mode, hours as a bare integer (`1`) or a Go duration
    /// (`30m`), in revision mode a number of revisions (`1000`); `0` turns
    /// auto-compaction off. `revision_check_every` is how often revision
    /// mode looks.
    pub fn parse(
        mode: &str,
        retention: &str,
        revision_check_every: Duration,
    ) -> Result<AutoCompaction, AutoCompactionError> {
        let integer = retention.parse::<i64>().ok().filter(|n| *n >= 0);
        let parsed = match mode {
            "periodic" | "" => match integer {
                Some(hours) => AutoCompaction::Periodic {
                    retention: Duration::from_secs(hours as u64 * 3600),
                },
                None => AutoCompaction::Periodic {
                    retention: crate::server::parse_go_duration(retention)?,
                },
            },
            "revision" => AutoCompaction::Revision {
                retention: integer.ok_or_else(|| AutoCompactionError::RevisionRetention {
                    retention: retention.to_string(),
                })?,
                check_every: revision_check_every,
            },
            other => {
                return Err(AutoCompactionError::UnknownMode {
                    mode: other.to_string(),
                });
            }
        };
        Ok(match parsed {
            AutoCompaction::Periodic { retention } if retention.is_zero() => AutoCompaction::Off,
            AutoCompaction::Revision { retention: 0, .. } => AutoCompaction::Off,
            other => other,
        })
    }
}

/// When to compact, with time passed in: the schedule of one
/// [`AutoCompaction`] policy.
#[derive(Debug)]
pub(crate) struct Schedule {
    policy: AutoCompaction,
    /// `None`: never (auto-compaction is off).
    next_check: Option<Instant>,
    /// Periodic mode: the revision at the start and after each check,
    /// oldest first, covering one retention period and one interval.
    revisions: VecDeque<i64>,
    /// Periodic mode: when the last compaction succeeded (or the schedule
    /// started), and how long to wait after it.
    last_success: Instant,
    wait: Duration,
    /// Revision mode: the last revision compacted to, not to ask twice.
    last_compacted: i64,
}

impl Schedule {
    /// A schedule that starts at `now`, when the store is at `revision`.
    pub(crate) fn new(policy: AutoCompaction, now: Instant, revision: i64) -> Schedule {
        let wait = match policy {
            AutoCompaction::Periodic { retention } => retention,
            _ => Duration::ZERO,
        };
        let mut schedule = Schedule {
            policy,
            next_check: None,
            revisions: VecDeque::from([revision]),
            last_success: now,
            wait,
            last_compacted: 0,
        };
        schedule.next_check = schedule.interval().and_then(|i| now.checked_add(i));
        schedule
    }

    /// The time between checks; `None` when there are none.
    fn interval(&self) -> Option<Duration> {
        match self.policy {
            AutoCompaction::Off => None,
            AutoCompaction::Periodic { retention } => {
                Some(retention.min(PERIODIC_INTERVAL_MAX) / PERIODIC_CHECKS_PER_PERIOD)
            }
            AutoCompaction::Revision { check_every, .. } => Some(check_every),
        }
    }

    /// Called at every check with the store's revision: the revision to
    /// compact to, if one is due.
    ///
    /// Periodic mode follows etcd 3.4's compactor: the target is the
    /// oldest revision recorded, and `current_revision` is recorded only
    /// after it is chosen (etcd records before it waits), so the first
    /// compaction, one period after the start, goes to the start's
    /// revision, and later ones keep one period and one interval. Never
    /// less than the period: what was written within it stays readable.
    pub(crate) fn due(&mut self, now: Instant, current_revision: i64) -> Option<i64> {
        let (Some(next_check), Some(interval)) = (self.next_check, self.interval()) else {
            return None;
        };
        if now < next_check {
            return None;
        }
        self.next_check = now.checked_add(interval);
        match self.policy {
            AutoCompaction::Off => None,
            AutoCompaction::Periodic { retention } => {
                let target = (now.duration_since(self.last_success) >= self.wait)
                    .then(|| self.revisions.front().copied())
                    .flatten()
                    .filter(|r| *r > 0);
                self.revisions.push_back(current_revision);
                let kept = (retention.as_nanos() / interval.as_nanos().max(1)) as usize + 1;
                while self.revisions.len() > kept {
                    self.revisions.pop_front();
                }
                target
            }
            AutoCompaction::Revision { retention, .. } => {
                let target = current_revision - retention;
                (target > 0 && target != self.last_compacted).then_some(target)
            }
        }
    }

    /// The compaction to `revision` succeeded (or it was compacted already).
    pub(crate) fn compacted(&mut self, revision: i64, now: Instant) {
        self.last_compacted = revision;
        self.last_success = now;
        if let AutoCompaction::Periodic { retention } = self.policy {
            self.wait = retention.min(PERIODIC_INTERVAL_MAX);
        }
    }
}

/// The compactor's loop, on every member; it acts only while leading.
pub async fn run_compactor<C: Consensus>(shared: Arc<Shared<C>>) {
    let mut schedule = Schedule::new(
        shared.config.auto_compaction,
        Instant::now(),
        shared.sm.store().position().revision,
    );
    loop {
        let leading = shared.consensus.info().is_leader();
        if leading && shared.sm.store().compaction_pending() {
            // Back to back: each step is one bounded entry, and writes
            // proposed meanwhile take their turn between them.
            if let Err(e) = shared
                .propose_checked(
                    &crate::command::member_caller(),
                    Op::CompactionStep(CompactionStep {}),
                )
                .await
            {
                tracing::debug!(error = %e, "compaction step not applied");
                tokio::time::sleep(IDLE_TICK).await;
            }
            continue;
        }
        let revision = shared.sm.store().position().revision;
        if let Some(target) = schedule.due(Instant::now(), revision)
            && leading
        {
            let request = Op::Compaction(CompactionRequest {
                revision: target,
                physical: false,
            });
            match shared
                .propose_checked(&crate::command::member_caller(), request)
                .await
            {
                Ok(_) | Err(KvError::Compacted) => {
                    tracing::info!(revision = target, "auto-compaction compacted");
                    schedule.compacted(target, Instant::now());
                }
                Err(e) => {
                    tracing::warn!(revision = target, error = %e, "auto-compaction failed; will retry")
                }
            }
        }
        tokio::time::sleep(IDLE_TICK).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_CHECK: Duration = Duration::from_secs(300);

    #[test]
    fn flags_parse_as_etcd_reads_them() {
        let parse = |mode, retention| AutoCompaction::parse(mode, retention, NO_CHECK);
        assert_eq!(
            parse("periodic", "1"),
            Ok(AutoCompaction::Periodic {
                retention: Duration::from_secs(3600)
            })
        );
        assert_eq!(
            parse("periodic", "30m"),
            Ok(AutoCompaction::Periodic {
                retention: Duration::from_secs(1800)
            })
        );
        assert_eq!(
            parse("revision", "1000"),
            Ok(AutoCompaction::Revision {
                retention: 1000,
                check_every: NO_CHECK
            })
        );
        assert_eq!(parse("periodic", "0"), Ok(AutoCompaction::Off));
        assert_eq!(parse("revision", "0"), Ok(AutoCompaction::Off));
        assert!(parse("revision", "1h").is_err());
        assert!(parse("periodic", "soon").is_err());
        assert_eq!(
            parse("hourly", "1"),
            Err(AutoCompactionError::UnknownMode {
                mode: "hourly".into()
            })
        );
    }

    #[test]
    fn an_off_schedule_is_never_due() {
        let start = Instant::now();
        let mut s = Schedule::new(AutoCompaction::Off, start, 1);
        assert_eq!(s.due(start + Duration::from_secs(1 << 40), 1000), None);
    }

    #[test]
    fn revision_mode_keeps_the_last_retention_revisions() {
        let start = Instant::now();
        let every = Duration::from_secs(1);
        let policy = AutoCompaction::Revision {
            retention: 10,
            check_every: every,
        };
        let mut s = Schedule::new(policy, start, 1);
        assert_eq!(s.due(start, 100), None, "not before the first check");
        assert_eq!(
            s.due(start + every, 5),
            None,
            "nothing older than 10 revisions"
        );
        assert_eq!(s.due(start + every * 2, 100), Some(90));
        s.compacted(90, start + every * 2);
        assert_eq!(s.due(start + every * 3, 100), None, "90 again is not asked");
        assert_eq!(s.due(start + every * 4, 150), Some(140));
    }

    #[test]
    fn periodic_mode_keeps_at_least_one_period_as_etcd_does() {
        let start = Instant::now();
        let period = Duration::from_secs(10);
        let tick = period / 10;
        let mut s = Schedule::new(AutoCompaction::Periodic { retention: period }, start, 50);
        let mut due = Vec::new();
        for i in 1..=30u32 {
            // The store gains 100 revisions per check.
            if let Some(rev) = s.due(start + tick * i, i64::from(i) * 100) {
                due.push((i, rev));
                s.compacted(rev, start + tick * i);
            }
        }
        // First one period after the start, to the start's revision (not
        // to the first check's: that would drop a tenth of the period);
        // then once per period, to the revision of a period and a check
        // ago, as etcd 3.4's compactor does.
        assert_eq!(due, vec![(10, 50), (20, 900), (30, 1900)]);
    }

    #[test]
    fn periodic_mode_past_an_hour_compacts_hourly_keeping_the_period() {
        let start = Instant::now();
        let hour = Duration::from_secs(3600);
        let tick = hour / 10;
        let policy = AutoCompaction::Periodic {
            retention: 2 * hour,
        };
        let mut s = Schedule::new(policy, start, 1);
        let mut due = Vec::new();
        for i in 1..=40u32 {
            if let Some(rev) = s.due(start + tick * i, i64::from(i) * 100) {
                due.push((i, rev));
                s.compacted(rev, start + tick * i);
            }
        }
        // Checks every 6 minutes; the first compaction after two hours,
        // then hourly, each to the revision of two hours and a check ago.
        assert_eq!(due, vec![(20, 1), (30, 900), (40, 1900)]);
    }

    #[test]
    fn a_periodic_schedule_off_the_leader_compacts_at_the_first_check_as_leader() {
        // Every member records; a follower never reports a compaction, so
        // once it leads, the first check compacts (etcd resumes the same).
        let start = Instant::now();
        let period = Duration::from_secs(10);
        let tick = period / 10;
        let mut s = Schedule::new(AutoCompaction::Periodic { retention: period }, start, 1);
        for i in 1..=25u32 {
            s.due(start + tick * i, i64::from(i) * 100);
        }
        assert_eq!(s.due(start + tick * 26, 2600), Some(1500));
    }
}
