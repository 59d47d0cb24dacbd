//! What every full-stack run checks besides the application's own checks:
//! Election Safety, and that an entry a leader counts as committed is
//! durable on a majority.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use keel_raft::{NodeId, Term};

use crate::rng::Fnv;

/// Notes kept per run, for the report.
const NOTES_MAX: usize = 20;

#[derive(Debug, Default)]
pub struct Checks {
    /// The leader seen in each term.
    leaders: BTreeMap<Term, NodeId>,
    pub failure: Option<String>,
    /// Things worth knowing that are not violations (a member stopped).
    pub notes: Vec<String>,
}

impl Checks {
    /// Records the first violation; later ones follow from it.
    pub fn fail(&mut self, violation: String) {
        self.failure.get_or_insert(violation);
    }

    pub fn note(&mut self, note: String) {
        if self.notes.len() < NOTES_MAX {
            self.notes.push(note);
        }
    }

    /// Election Safety (§5.2): at most one leader per term.
    pub fn leader(&mut self, term: Term, id: NodeId) {
        let first = *self.leaders.entry(term).or_insert(id);
        if first != id {
            self.fail(format!("two leaders in term {term}: {first} and {id}"));
        }
    }

    /// The leaders of a run, to tell two runs of a seed apart.
    pub fn fingerprint(&self) -> u64 {
        let mut h = Fnv::default();
        self.leaders.hash(&mut h);
        h.finish()
    }
}
