//! Recording what clients saw, in the linearizability checker's terms.
//!
//! Every operation is recorded when invoked and completed when a reply
//! arrives — even after its client stopped waiting, since the reply is
//! still a true observation. At the end of a run, a write that is still
//! open and whose tag is not in the committed log is recorded as failed:
//! every state any replica ever exposed comes from the committed log, so
//! that write never took effect. The rest stay unknown.

use std::collections::{BTreeMap, BTreeSet};

use keel_linearizability::{History, HistoryRecorder, OpId, OpKind, Outcome, Output};

use crate::kv::Tag;
use crate::node::Reply;
use crate::time::Micros;

/// How the recorded operations ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// Operations clients started.
    pub invoked: u64,
    /// Answered with a result.
    pub ok: u64,
    /// Certainly without effect (refused before they could apply).
    pub failed: u64,
    /// No answer: they may or may not have taken effect.
    pub unknown: u64,
}

impl OpCounts {
    /// Adds another run's counts to these.
    pub fn add(&mut self, other: &OpCounts) {
        self.invoked += other.invoked;
        self.ok += other.ok;
        self.failed += other.failed;
        self.unknown += other.unknown;
    }
}

#[derive(Debug)]
pub struct ClientHistory {
    recorder: HistoryRecorder,
    open: BTreeMap<Tag, (OpId, OpKind)>,
    counts: OpCounts,
}

impl Default for ClientHistory {
    fn default() -> ClientHistory {
        ClientHistory {
            recorder: HistoryRecorder::new(),
            open: BTreeMap::new(),
            counts: OpCounts::default(),
        }
    }
}

impl ClientHistory {
    pub fn invoke(&mut self, tag: Tag, op: OpKind, now: Micros) {
        let id = self
            .recorder
            .invoke(u64::from(tag.client), op.clone(), now.as_nanos());
        self.open.insert(tag, (id, op));
        self.counts.invoked += 1;
    }

    /// Records a reply; returns the operation if it was still open.
    pub fn complete(&mut self, tag: Tag, reply: &Reply, now: Micros) -> Option<OpKind> {
        let (id, op) = self.open.remove(&tag)?;
        let outcome = match reply {
            Reply::Written(output) => Outcome::Ok(output.clone()),
            Reply::Read(value) => Outcome::Ok(Output::Read(value.clone())),
            Reply::Failed { .. } => Outcome::Failed,
        };
        match outcome {
            Outcome::Ok(_) => self.counts.ok += 1,
            _ => self.counts.failed += 1,
        }
        self.recorder
            .complete(id, outcome, now.as_nanos())
            .expect("replies come after invocations and match the operation");
        Some(op)
    }

    /// Closes the history; `committed` holds the tags of every committed
    /// command, or is `None` when some committed entry was never seen (then
    /// no open write can be ruled out).
    pub fn finish(mut self, committed: Option<&BTreeSet<Tag>>, now: Micros) -> (History, OpCounts) {
        for (tag, (id, op)) in std::mem::take(&mut self.open) {
            let is_write = !matches!(op, OpKind::Get { .. });
            if is_write && committed.is_some_and(|c| !c.contains(&tag)) {
                self.counts.failed += 1;
                self.recorder
                    .complete(id, Outcome::Failed, now.as_nanos())
                    .expect("the end of a run comes after every invocation");
            } else {
                self.counts.unknown += 1;
            }
        }
        (self.recorder.finish(), self.counts)
    }
}
