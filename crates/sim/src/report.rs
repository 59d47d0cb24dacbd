//! What a run reports, and the summary of many runs.

use std::fmt;
use std::time::Duration;

use crate::faults::FaultCounts;
use crate::history::OpCounts;
use crate::invariants::Violation;
use crate::time::Micros;
use crate::verdict::Verdict;

/// A run that broke a property.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The property broken, and how.
    pub violation: Violation,
    /// When, in virtual time.
    pub at: Micros,
    /// The last events before the violation, oldest first.
    pub trace_tail: Vec<String>,
}

/// The outcome of one seed.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The seed the run was drawn from.
    pub seed: u64,
    /// The cluster's size at the start.
    pub nodes: usize,
    /// Events the loop processed.
    pub steps: u64,
    /// How long the run lasted, in virtual time.
    pub virtual_time: Micros,
    /// The faults injected, by kind.
    pub faults: FaultCounts,
    /// How the clients' operations ended.
    pub ops: OpCounts,
    /// `None` when the run stopped at a violation before the check.
    pub verdict: Option<Verdict>,
    /// The first broken property, if any.
    pub failure: Option<Failure>,
    /// Hash of every trace event: equal for two runs of one seed.
    pub fingerprint: u64,
}

impl RunReport {
    /// Whether every property held.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// Totals over many runs.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Seeds run.
    pub runs: u64,
    /// Events processed, over every run.
    pub steps: u64,
    /// Virtual time simulated, over every run.
    pub virtual_time: Micros,
    /// Faults injected, by kind.
    pub faults: FaultCounts,
    /// How the clients' operations ended.
    pub ops: OpCounts,
    /// Runs whose linearizability check ran out of steps.
    pub inconclusive: u64,
    /// Seeds that broke a property.
    pub failed_seeds: Vec<u64>,
    /// Real time spent.
    pub wall: Duration,
}

impl Summary {
    /// Counts one more run.
    pub fn add(&mut self, report: &RunReport) {
        self.runs += 1;
        self.steps += report.steps;
        self.virtual_time = self.virtual_time.plus(report.virtual_time);
        for (kind, n) in &report.faults {
            *self.faults.entry(*kind).or_default() += n;
        }
        self.ops.add(&report.ops);
        if matches!(report.verdict, Some(Verdict::Inconclusive { .. })) {
            self.inconclusive += 1;
        }
        if !report.passed() {
            self.failed_seeds.push(report.seed);
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "runs:                {}", self.runs)?;
        writeln!(f, "wall time:           {:.1} s", self.wall.as_secs_f64())?;
        writeln!(f, "steps (events):      {}", self.steps)?;
        writeln!(
            f,
            "virtual time:        {} ticks",
            self.virtual_time.0 / crate::time::TICK.0
        )?;
        writeln!(
            f,
            "operations:          {} invoked, {} ok, {} failed, {} unknown",
            self.ops.invoked, self.ops.ok, self.ops.failed, self.ops.unknown
        )?;
        writeln!(
            f,
            "operations checked:  {} (linearizability, {} runs inconclusive)",
            self.ops.ok + self.ops.unknown,
            self.inconclusive
        )?;
        writeln!(f, "faults injected:")?;
        for (kind, n) in &self.faults {
            writeln!(f, "  {kind:<32} {n}")?;
        }
        write!(f, "violations:          {}", self.failed_seeds.len())?;
        if !self.failed_seeds.is_empty() {
            write!(f, " (seeds {:?})", self.failed_seeds)?;
        }
        Ok(())
    }
}
