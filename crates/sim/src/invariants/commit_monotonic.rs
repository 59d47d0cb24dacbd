//! A node's commit index, as stored durably, never goes back: not when a
//! new hard state is written, not when it is synced, not across a restart.
//! A restart that silently lowers it would mean the hard state claimed a
//! commit index the durable log could not back.

use keel_raft::{LogIndex, NodeId};

use super::{Breach, CommitRecord, Violation};

pub fn check(
    node: NodeId,
    before: LogIndex,
    after: LogIndex,
    record: CommitRecord,
) -> Result<(), Violation> {
    if after < before {
        return Err(Breach::CommitWentBack {
            node,
            from: before,
            to: after,
            record,
        }
        .into());
    }
    Ok(())
}
