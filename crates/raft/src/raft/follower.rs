//! The follower's side of replication (§5.3) and snapshot installation (§7).

use crate::entry::{Entry, Payload, SnapshotMeta};
use crate::message::{AppendResult, MessageBody};
use crate::types::{LogIndex, NodeId, Term};

use super::Raft;
use super::role::RoleState;

impl Raft {
    /// AppendEntries: accept entries that follow a matching entry, replacing
    /// any conflicting suffix; otherwise tell the leader where to retry.
    pub(super) fn handle_append(
        &mut self,
        from: NodeId,
        prev_log_index: LogIndex,
        prev_log_term: Term,
        entries: &[Entry],
        leader_commit: LogIndex,
    ) {
        self.debug_assert_following(from);
        let committed = self.log.committed();
        if prev_log_index < committed {
            // Everything up to our commit index matches any leader's log
            // (Leader Completeness); say where we stand instead.
            self.reply_append(
                from,
                AppendResult::Success {
                    match_index: committed,
                },
            );
            return;
        }
        if !self.log.matches(prev_log_index, prev_log_term) {
            let result = self.conflict_hint(prev_log_index);
            self.reply_append(from, result);
            return;
        }
        let (vouched, written_from) = self.log.append_after(prev_log_index, entries);
        let touches_membership = written_from.is_some_and(|first| {
            first <= self.membership_index
                || entries
                    .iter()
                    .any(|e| matches!(e.payload, Payload::Membership(_)))
        });
        if touches_membership {
            self.refresh_membership();
        }
        self.log.commit_to(leader_commit.min(vouched));
        debug_assert!(
            self.log.committed() >= committed,
            "the commit index never decreases"
        );
        self.reply_append(
            from,
            AppendResult::Success {
                match_index: vouched,
            },
        );
    }

    /// A Commit: the leader's commit index, up to an entry it believes we
    /// hold. If we hold it, every entry up to it is the leader's (Log
    /// Matching), so we may commit that far, and say nothing. If not (an
    /// AppendEntries before it was lost), we answer as to an AppendEntries
    /// at the same place, and the leader backs off.
    pub(super) fn handle_commit(
        &mut self,
        from: NodeId,
        prev_log_index: LogIndex,
        prev_log_term: Term,
        leader_commit: LogIndex,
    ) {
        self.debug_assert_following(from);
        let committed = self.log.committed();
        if prev_log_index <= committed {
            // Nothing to learn: we hold and have committed more.
            return;
        }
        if !self.log.matches(prev_log_index, prev_log_term) {
            let result = self.conflict_hint(prev_log_index);
            self.reply_append(from, result);
            return;
        }
        self.log.commit_to(leader_commit.min(prev_log_index));
        debug_assert!(
            self.log.committed() >= committed,
            "the commit index never decreases"
        );
    }

    /// The hint of §5.3: our term at the rejected index and the first index
    /// we hold of that term, or our log's end if it is shorter.
    fn conflict_hint(&self, rejected: LogIndex) -> AppendResult {
        if rejected > self.log.last_index() {
            return AppendResult::Conflict {
                rejected,
                hint_index: self.log.last_index().next(),
                hint_term: None,
            };
        }
        AppendResult::Conflict {
            rejected,
            hint_index: self.log.first_index_of_term_at(rejected),
            hint_term: self.log.term(rejected),
        }
    }

    /// Messages that only a leader sends reach a follower of that leader:
    /// `follow` made us one. In particular a leader never takes entries
    /// from another, so it never truncates its own log (Leader
    /// Append-Only, §5.3).
    fn debug_assert_following(&self, from: NodeId) {
        debug_assert!(
            matches!(self.role, RoleState::Follower) && self.leader == Some(from),
            "a message from leader {from} reached a {:?} following {:?}",
            self.role(),
            self.leader
        );
    }

    fn reply_append(&mut self, to: NodeId, result: AppendResult) {
        self.send(to, MessageBody::AppendResponse(result));
    }

    pub(super) fn handle_heartbeat(&mut self, from: NodeId, commit: LogIndex, round: u64) {
        self.debug_assert_following(from);
        let committed = self.log.committed();
        self.log.commit_to(commit.min(self.log.last_index()));
        debug_assert!(
            self.log.committed() >= committed,
            "the commit index never decreases"
        );
        self.send(from, MessageBody::HeartbeatResponse { round });
    }

    /// The caller has stored the snapshot's data and steps this in. An older
    /// snapshot is acknowledged and ignored; one whose last entry we already
    /// hold just moves the commit index, keeping the log after it (§7).
    pub(super) fn handle_snapshot(&mut self, from: NodeId, meta: SnapshotMeta) {
        self.debug_assert_following(from);
        let committed = self.log.committed();
        if meta.index <= committed {
            self.reply_append(
                from,
                AppendResult::Success {
                    match_index: committed,
                },
            );
            return;
        }
        if self.log.matches(meta.index, meta.term) {
            self.log.commit_to(meta.index);
            self.reply_append(
                from,
                AppendResult::Success {
                    match_index: meta.index,
                },
            );
            return;
        }
        let index = meta.index;
        self.log.install_snapshot(meta.clone());
        debug_assert!(
            self.log.committed() == index && self.log.last_index() == index,
            "an installed snapshot is the whole log, and committed"
        );
        self.out.snapshot = Some(meta);
        self.refresh_membership();
        self.reply_append(from, AppendResult::Success { match_index: index });
    }
}
