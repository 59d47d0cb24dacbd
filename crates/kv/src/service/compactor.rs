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
    /// Keep `retention` of history: compact to the revision the store had
    /// `retention` ago, at most once an hour.
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
    /// Periodic mode: the revision at each check, oldest first, covering
    /// one retention period.
    revisions: VecDeque<i64>,
    /// Periodic mode: when the last compaction succeeded (or the schedule
    /// started), and how long to wait after it.
    last_success: Instant,
    wait: Duration,
    /// Revision mode: the last revision compacted to, not to ask twice.
    last_compacted: i64,
}

impl Schedule {
    pub(crate) fn new(policy: AutoCompaction, now: Instant) -> Schedule {
        let wait = match policy {
            AutoCompaction::Periodic { retention } => retention,
            _ => Duration::ZERO,
        };
        let mut schedule = Schedule {
            policy,
            next_check: None,
            revisions: VecDeque::new(),
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
    /// compact to, if one is due. `current_revision` is recorded first, as
    /// etcd records it before each wait.
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
                self.revisions.push_back(current_revision);
                let kept = (retention.as_nanos() / interval.as_nanos().max(1)) as usize + 1;
                while self.revisions.len() > kept {
                    self.revisions.pop_front();
                }
                if now.duration_since(self.last_success) < self.wait {
                    return None;
                }
                self.revisions.front().copied().filter(|r| *r > 0)
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
    let mut schedule = Schedule::new(shared.config.auto_compaction, Instant::now());
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
        let mut s = Schedule::new(AutoCompaction::Off, start);
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
        let mut s = Schedule::new(policy, start);
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
    fn periodic_mode_compacts_to_the_revision_of_one_period_ago() {
        let start = Instant::now();
        let period = Duration::from_secs(10);
        let tick = period / 10;
        let mut s = Schedule::new(AutoCompaction::Periodic { retention: period }, start);
        let mut due = Vec::new();
        for i in 1..=20u32 {
            // The store gains 100 revisions per check.
            if let Some(rev) = s.due(start + tick * i, i64::from(i) * 100) {
                due.push((i, rev));
                s.compacted(rev, start + tick * i);
            }
        }
        // First after one period, to the revision recorded then at the
        // oldest; then once per period again.
        assert_eq!(due, vec![(10, 100), (20, 1000)]);
    }
}
