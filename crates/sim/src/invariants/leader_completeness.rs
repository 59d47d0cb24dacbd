//! Leader Completeness (§5.4): if an entry is committed in a term, it is
//! present in the log of the leader of every later term.
//!
//! Checked when a leader is elected (its log must hold every entry
//! committed in an earlier term, except what its snapshot covers), and
//! whenever the commit index
//! advances while a leader of a later term already exists — the case of
//! an old leader's commit racing a new election.

use keel_raft::{LogIndex, Raft};

use super::{Breach, CommittedLog, Violation, entry_digest};

/// The entry at `index` in `raft`'s log matches the committed one, or is
/// covered by its snapshot.
fn holds(raft: &Raft, committed: &CommittedLog, index: LogIndex) -> Result<(), Violation> {
    let Some(expected) = committed.get(index).and_then(|c| c.digest) else {
        return Ok(());
    };
    let status = raft.status();
    if index < status.first_index {
        return Ok(());
    }
    match raft.entry(index) {
        Some(entry) if entry_digest(entry) == expected => Ok(()),
        found => Err(Breach::LeaderLacksCommitted {
            leader: status.id,
            term: status.term,
            index,
            held_term: found.map(|e| e.term),
        }
        .into()),
    }
}

/// Entries committed in terms before the new leader's must be in its log.
/// A leader of an older term can still be elected late (its votes were
/// delayed); it need not hold what later terms committed.
pub fn check_new_leader(raft: &Raft, committed: &CommittedLog) -> Result<(), Violation> {
    let mut index = raft.status().first_index;
    while let Some(entry) = committed.get(index) {
        if entry.commit_term >= raft.term() {
            break;
        }
        holds(raft, committed, index)?;
        index = index.next();
    }
    Ok(())
}

pub fn check_holds_last_committed(raft: &Raft, committed: &CommittedLog) -> Result<(), Violation> {
    holds(raft, committed, committed.last_index())
}
