//! Founding a cluster on a running node: [`Raft::initialize`].
//!
//! A node created with [`super::RestoredState::joining`] knows no
//! configuration and waits for a leader. `initialize` makes it a founding
//! member instead, by appending the founding configuration as the log's
//! first entry, `(index 1, term 1)`, as any entry: the caller persists it
//! from the next Ready. Being an entry rather than a snapshot's
//! configuration, it reaches the other founders by plain replication, so
//! initializing one of them is enough; initializing several with the same
//! configuration gives each the very same entry, which is what the Log
//! Matching property needs (§5.3: entries with the same index and term
//! are identical). Initializing two nodes with *different*
//! configurations breaks that property, so the caller must not: each
//! node refuses a second, different configuration, but only locally.

use crate::entry::Payload;
use crate::membership::Membership;
use crate::types::{LogIndex, NodeId, Term};

use super::Raft;

/// The term of the founding entry. Every founder writes the same one, so
/// the entries agree wherever they were written.
const FOUNDING_TERM: Term = Term(1);

/// Why [`Raft::initialize`] refused to found a cluster.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InitializeError {
    /// This node already belongs to a cluster with another configuration:
    /// founding a second one would give it two histories.
    #[error(
        "this node already belongs to a cluster with another configuration \
         (voters {:?}); refusing to found a different one",
        current.voters()
    )]
    OtherCluster {
        /// The configuration in force on this node.
        current: Membership,
    },
    /// The node holds log entries from a cluster it is joining, whose
    /// configuration has not reached it yet.
    #[error("this node already holds log entries (through {last_index}) from another member")]
    HoldsLog {
        /// The last entry it holds.
        last_index: LogIndex,
    },
    /// The node would found a cluster it is not a voter of.
    #[error("node {id} is not a voter of the configuration it was asked to found")]
    NotAVoter {
        /// This node.
        id: NodeId,
    },
}

impl Raft {
    /// Founds a cluster whose configuration is `membership`, on a node
    /// that knows no configuration yet (created with
    /// [`super::RestoredState::joining`]): appends it as the entry
    /// `(1, 1)`, which the next Ready hands over for persisting, and which
    /// takes effect at once (§4.1), so the node campaigns when its
    /// election timer fires. Returns `true` if it appended the entry,
    /// `false` if this configuration is already the one in force (the
    /// call is idempotent: calling every founder, or one twice, is fine).
    ///
    /// Every founder given a configuration must be given the same one.
    pub fn initialize(&mut self, membership: Membership) -> Result<bool, InitializeError> {
        if self.membership == membership {
            return Ok(false);
        }
        if self.membership != Membership::default() {
            return Err(InitializeError::OtherCluster {
                current: self.membership.clone(),
            });
        }
        if self.log.last_index() > LogIndex(0) {
            return Err(InitializeError::HoldsLog {
                last_index: self.log.last_index(),
            });
        }
        if !membership.is_voter(self.id()) {
            return Err(InitializeError::NotAVoter { id: self.id() });
        }
        // A pristine node may have voted in a term past the founding one
        // (another founder campaigned first): its term stays, and an
        // entry of an older term is as any entry a new leader replicates.
        self.term = self.term.max(FOUNDING_TERM);
        let index = self
            .log
            .push(FOUNDING_TERM, Payload::Membership(membership));
        debug_assert_eq!(index, LogIndex(1), "the founding entry starts the log");
        self.refresh_membership();
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::entry::Entry;
    use crate::message::{Message, MessageBody};
    use crate::raft::RestoredState;

    fn pristine(id: u64) -> Raft {
        Raft::new(Config::new(NodeId(id)), RestoredState::joining()).unwrap()
    }

    fn voters(ids: &[u64]) -> Membership {
        Membership::new(ids.iter().map(|&id| NodeId(id)), []).unwrap()
    }

    #[test]
    fn initializing_appends_the_configuration_as_the_first_entry_for_the_next_ready() {
        let mut raft = pristine(1);
        assert_eq!(raft.initialize(voters(&[1, 2, 3])), Ok(true));
        assert_eq!(raft.membership(), &voters(&[1, 2, 3]));
        let ready = raft.ready();
        assert_eq!(ready.entries.len(), 1);
        let founding = &ready.entries[0];
        assert_eq!((founding.index, founding.term), (LogIndex(1), Term(1)));
        assert_eq!(founding.payload, Payload::Membership(voters(&[1, 2, 3])));
        assert_eq!(ready.hard_state.map(|hs| hs.term), Some(Term(1)));
    }

    #[test]
    fn initializing_again_with_the_same_configuration_changes_nothing() {
        let mut raft = pristine(1);
        raft.initialize(voters(&[1, 2])).unwrap();
        let _ = raft.ready();
        assert_eq!(raft.initialize(voters(&[1, 2])), Ok(false));
        assert!(raft.ready().entries.is_empty());
    }

    #[test]
    fn initializing_with_another_configuration_is_refused() {
        let mut raft = pristine(1);
        raft.initialize(voters(&[1, 2])).unwrap();
        assert_eq!(
            raft.initialize(voters(&[1, 3])),
            Err(InitializeError::OtherCluster {
                current: voters(&[1, 2])
            })
        );
        let bootstrapped = Raft::new(
            Config::new(NodeId(1)),
            RestoredState::bootstrap(voters(&[1])),
        );
        assert!(matches!(
            bootstrapped.unwrap().initialize(voters(&[1, 2])),
            Err(InitializeError::OtherCluster { .. })
        ));
    }

    #[test]
    fn a_node_holding_another_clusters_log_is_not_initialized() {
        // Entries from a leader that reached a joining node before the
        // configuration that names it.
        let mut raft = pristine(4);
        let blank = Entry {
            term: Term(2),
            index: LogIndex(1),
            payload: Payload::Blank,
        };
        let append = Message {
            from: NodeId(1),
            to: NodeId(4),
            term: Term(2),
            body: MessageBody::AppendEntries {
                prev_log_index: LogIndex(0),
                prev_log_term: Term(0),
                entries: vec![blank],
                leader_commit: LogIndex(0),
            },
        };
        raft.step(append).unwrap();
        assert_eq!(
            raft.initialize(voters(&[4])),
            Err(InitializeError::HoldsLog {
                last_index: LogIndex(1)
            })
        );
    }

    #[test]
    fn a_node_is_not_initialized_into_a_cluster_it_does_not_vote_in() {
        assert_eq!(
            pristine(4).initialize(voters(&[1, 2, 3])),
            Err(InitializeError::NotAVoter { id: NodeId(4) })
        );
    }
}
