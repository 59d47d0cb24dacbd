//! Virtual time. Nothing in the simulator reads a clock: time is a number
//! the event loop advances to the next scheduled event.

use std::fmt;

/// Virtual microseconds since the start of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Micros(pub u64);

/// One Raft tick of virtual time. Election timeouts are counted in ticks.
pub const TICK: Micros = Micros(10_000);

impl Micros {
    /// This time `d` later.
    pub fn plus(self, d: Micros) -> Micros {
        Micros(self.0 + d.0)
    }

    /// This time `d` earlier, or the start.
    pub fn saturating_sub(self, d: Micros) -> Micros {
        Micros(self.0.saturating_sub(d.0))
    }

    /// `n` ticks of virtual time.
    pub fn ticks(n: u64) -> Micros {
        Micros(n * TICK.0)
    }

    /// Nanoseconds, the unit of the linearizability checker's timestamps.
    pub fn as_nanos(self) -> u64 {
        self.0 * 1000
    }
}

impl fmt::Display for Micros {
    /// As `ticks.fraction`, the unit a reader of a trace thinks in.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:04}", self.0 / TICK.0, self.0 % TICK.0)
    }
}
