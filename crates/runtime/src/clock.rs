//! Ticks that follow the monotonic clock.
//!
//! The core measures everything in ticks: election timeouts, check-quorum,
//! and the leader lease (§6.4.1). A tokio interval loses ticks when the
//! driver stalls (a paused process, a slow fsync, a burst of inbound work),
//! and a leader whose tick count falls behind real time would believe in a
//! lease that has expired — it could serve a read after a new leader
//! committed a write. So the driver does not count timer firings: it asks
//! [`TickClock::due`] how many ticks of monotonic time have passed, and
//! ticks the core that many times, before every lease read too.

use std::time::Duration;

/// A point on a node's monotonic clock: the time since the node loop
/// started. The loop never reads a clock itself; whoever drives it (the
/// runtime's shell, the simulator) says what time it is with every input,
/// so a simulated clock can pause, jump and drift.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Moment(Duration);

impl Moment {
    /// The loop's start.
    pub const ZERO: Moment = Moment(Duration::ZERO);

    /// The moment `elapsed` after the loop's start.
    pub const fn since_start(elapsed: Duration) -> Moment {
        Moment(elapsed)
    }

    /// The time from `earlier` to this moment, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Moment) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl std::ops::Add<Duration> for Moment {
    type Output = Moment;

    fn add(self, d: Duration) -> Moment {
        Moment(self.0 + d)
    }
}

/// The number of ticks owed to the core at any instant.
///
/// Invariant: `ticks_given` is the number of whole intervals between the
/// loop's start and the latest moment `due` was asked about.
#[derive(Debug)]
pub(crate) struct TickClock {
    interval: Duration,
    /// Ticks accounted for so far (those skipped by the cap included).
    ticks_given: u64,
    /// The most ticks handed out at once. After a long stall every timeout
    /// the core keeps has expired once `2 * election_ticks` have passed, so
    /// more ticks would change nothing but the amount of work (a leader
    /// would queue heartbeats for every tick). Must be at least the lease
    /// length, so that a stall of any length expires the lease.
    catch_up_max: u64,
}

impl TickClock {
    pub(crate) fn new(interval: Duration, election_ticks: u32) -> TickClock {
        assert!(
            !interval.is_zero(),
            "the configuration requires a tick interval"
        );
        TickClock {
            interval,
            ticks_given: 0,
            catch_up_max: 2 * u64::from(election_ticks.max(1)),
        }
    }

    /// How many ticks to give the core at `now`: those elapsed since the
    /// last call, at most `catch_up_max`.
    pub(crate) fn due(&mut self, now: Moment) -> u64 {
        let elapsed = now.saturating_since(Moment::ZERO);
        let total =
            u64::try_from(elapsed.as_nanos() / self.interval.as_nanos()).unwrap_or(u64::MAX);
        let owed = total.saturating_sub(self.ticks_given);
        self.ticks_given = self.ticks_given.max(total);
        owed.min(self.catch_up_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(10);

    #[test]
    fn one_tick_per_interval_of_elapsed_time() {
        let t0 = Moment::ZERO;
        let mut clock = TickClock::new(TICK, 15);
        assert_eq!(clock.due(t0), 0);
        assert_eq!(clock.due(t0 + TICK), 1);
        assert_eq!(clock.due(t0 + TICK * 3 / 2), 0);
        assert_eq!(clock.due(t0 + TICK * 2), 1);
    }

    /// A stall of five intervals owes five ticks at the next turn, which is
    /// what keeps a stalled leader from trusting an expired lease.
    #[test]
    fn a_stalled_driver_gets_the_ticks_it_missed() {
        let t0 = Moment::ZERO;
        let mut clock = TickClock::new(TICK, 15);
        assert_eq!(clock.due(t0 + TICK), 1);
        assert_eq!(clock.due(t0 + TICK * 6), 5);
    }

    #[test]
    fn a_long_stall_is_capped_at_two_election_timeouts() {
        let t0 = Moment::ZERO;
        let mut clock = TickClock::new(TICK, 15);
        assert_eq!(clock.due(t0 + Duration::from_secs(3600)), 30);
        // The skipped ticks are not owed later.
        assert_eq!(clock.due(t0 + Duration::from_secs(3600) + TICK), 1);
    }

    #[test]
    fn a_moment_earlier_than_the_last_owes_nothing() {
        let mut clock = TickClock::new(TICK, 15);
        assert_eq!(clock.due(Moment::ZERO + TICK * 3), 3);
        assert_eq!(clock.due(Moment::ZERO + TICK), 0);
        assert_eq!(clock.due(Moment::ZERO + TICK * 4), 1);
    }
}
