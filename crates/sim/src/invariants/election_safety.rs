//! Election Safety (§5.2): at most one leader can be elected in a term.

use std::collections::BTreeMap;

use keel_raft::{NodeId, Term};

use super::{Breach, Violation};

#[derive(Debug, Default)]
pub struct ElectionSafety {
    leader_of: BTreeMap<Term, NodeId>,
}

impl ElectionSafety {
    /// Records that `node` leads `term`. Returns whether this is the first
    /// time it is seen leading it (it was just elected).
    pub fn observe_leader(&mut self, node: NodeId, term: Term) -> Result<bool, Violation> {
        match self.leader_of.get(&term) {
            Some(&leader) if leader == node => Ok(false),
            Some(&leader) => Err(Breach::TwoLeaders {
                term,
                first: leader,
                second: node,
            }
            .into()),
            None => {
                self.leader_of.insert(term, node);
                Ok(true)
            }
        }
    }
}
