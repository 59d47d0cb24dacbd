//! A record of what happened in a run: a bounded ring of recent events for
//! failure reports, a full echo for `--trace`, and a fingerprint of every
//! event so that two runs of one seed can be compared bit for bit.

use std::collections::VecDeque;
use std::fmt;
use std::hash::{Hash, Hasher};

use keel_raft::{AppendResult, LogIndex, Message, MessageBody, NodeId, Role, Term};

use crate::rng::Fnv;
use crate::time::Micros;

/// A message reduced to what a reader of a trace needs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MsgInfo {
    pub from: NodeId,
    pub to: NodeId,
    pub term: Term,
    pub kind: &'static str,
    /// Up to three numbers whose meaning depends on `kind`, see `Display`.
    pub args: [u64; 3],
}

impl MsgInfo {
    pub fn of(m: &Message) -> MsgInfo {
        let args = match &m.body {
            MessageBody::VoteRequest {
                last_log_index,
                last_log_term,
                ..
            } => [last_log_index.0, last_log_term.0, 0],
            MessageBody::VoteResponse { granted, .. } => [u64::from(*granted), 0, 0],
            MessageBody::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
            } => [
                prev_log_index.0 * 1000 + prev_log_term.0.min(999),
                entries.len() as u64,
                leader_commit.0,
            ],
            MessageBody::Commit {
                prev_log_index,
                prev_log_term,
                leader_commit,
            } => [
                prev_log_index.0 * 1000 + prev_log_term.0.min(999),
                0,
                leader_commit.0,
            ],
            MessageBody::AppendResponse(AppendResult::Success { match_index }) => {
                [1, match_index.0, 0]
            }
            MessageBody::AppendResponse(AppendResult::Conflict {
                rejected,
                hint_index,
                ..
            }) => [0, rejected.0, hint_index.0],
            MessageBody::Heartbeat { commit, round } => [commit.0, *round, 0],
            MessageBody::HeartbeatResponse { round } => [*round, 0, 0],
            MessageBody::InstallSnapshot { meta } => [meta.index.0, meta.term.0, 0],
            MessageBody::TimeoutNow => [0; 3],
            MessageBody::ReadIndexRequest { id } => [id.0, 0, 0],
            MessageBody::ReadIndexResponse { id, index } => {
                [id.0, index.map_or(u64::MAX, |i| i.0), 0]
            }
        };
        MsgInfo {
            from: m.from,
            to: m.to,
            term: m.term,
            kind: m.body.kind(),
            args,
        }
    }
}

impl fmt::Display for MsgInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}->{} {}@t{}", self.from, self.to, self.kind, self.term)?;
        let [a, b, c] = self.args;
        match self.kind {
            "Vote" | "PreVote" => write!(f, " last={b}/{a}"),
            "VoteResp" | "PreVoteResp" => write!(f, " granted={}", a == 1),
            "App" => write!(f, " prev={}/{} n={b} commit={c}", a / 1000, a % 1000),
            "AppResp" if a == 1 => write!(f, " ok match={b}"),
            "AppResp" => write!(f, " reject at={b} hint={c}"),
            "Heartbeat" => write!(f, " commit={a} round={b}"),
            "HeartbeatResp" => write!(f, " round={a}"),
            "Snapshot" => write!(f, " index={a} term={b}"),
            "ReadIndex" => write!(f, " id={a}"),
            "ReadIndexResp" if b == u64::MAX => write!(f, " id={a} refused"),
            "ReadIndexResp" => write!(f, " id={a} index={b}"),
            _ => Ok(()),
        }
    }
}

/// Why the network did not deliver a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    Lost,
    Partitioned,
    NodeDown,
}

/// One thing that happened.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TraceEvent {
    Deliver(MsgInfo),
    Drop(MsgInfo, DropReason),
    Role {
        node: NodeId,
        role: Role,
        term: Term,
        leader: Option<NodeId>,
    },
    /// A Ready's writes: entries `first..=last` (if any) and the commit.
    Persist {
        node: NodeId,
        entries: Option<(LogIndex, LogIndex)>,
        snapshot: Option<LogIndex>,
        commit: LogIndex,
    },
    Apply {
        node: NodeId,
        first: LogIndex,
        last: LogIndex,
    },
    Crash {
        node: NodeId,
        kept_writes: usize,
        torn_entries: usize,
        lost_writes: usize,
    },
    Restart {
        node: NodeId,
        term: Term,
        commit: LogIndex,
        last: LogIndex,
    },
    Pause {
        node: NodeId,
        ticks: u64,
    },
    Resume(NodeId),
    Stop(NodeId),
    SlowDisk {
        node: NodeId,
        latency: Micros,
    },
    Partition {
        kind: &'static str,
        cut: Vec<(u64, u64)>,
    },
    HealPartition,
    /// A targeted profile acted on `nodes` (what a partition or crash
    /// event does not already say).
    Scenario {
        what: &'static str,
        nodes: Vec<u64>,
    },
    Snapshot {
        node: NodeId,
        index: LogIndex,
    },
    Membership {
        leader: NodeId,
        change: String,
        result: String,
    },
    Transfer {
        leader: NodeId,
        target: NodeId,
    },
    Invoke {
        client: u32,
        request: u32,
        node: NodeId,
        op: String,
    },
    Complete {
        client: u32,
        request: u32,
        outcome: String,
    },
    Phase(&'static str),
}

impl fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceEvent::Deliver(m) => write!(f, "deliver {m}"),
            TraceEvent::Drop(m, why) => write!(f, "drop {m} ({why:?})"),
            TraceEvent::Role {
                node,
                role,
                term,
                leader,
            } => write!(f, "node {node} is {role} in term {term}, leader {leader:?}"),
            TraceEvent::Persist {
                node,
                entries,
                snapshot,
                commit,
            } => {
                write!(f, "node {node} writes")?;
                if let Some(s) = snapshot {
                    write!(f, " snapshot@{s}")?;
                }
                if let Some((a, b)) = entries {
                    write!(f, " entries {a}..={b}")?;
                }
                write!(f, " commit={commit}")
            }
            TraceEvent::Apply { node, first, last } => {
                write!(f, "node {node} applies {first}..={last}")
            }
            TraceEvent::Crash {
                node,
                kept_writes,
                torn_entries,
                lost_writes,
            } => write!(
                f,
                "CRASH node {node}: of its unsynced writes {lost_writes} lost, {kept_writes} kept, then a torn record of {torn_entries} entries"
            ),
            TraceEvent::Restart {
                node,
                term,
                commit,
                last,
            } => write!(
                f,
                "RESTART node {node} from disk: term {term}, commit {commit}, last {last}"
            ),
            TraceEvent::Pause { node, ticks } => write!(f, "PAUSE node {node} for {ticks} ticks"),
            TraceEvent::Resume(node) => write!(f, "RESUME node {node}"),
            TraceEvent::Stop(node) => write!(f, "STOP removed node {node}"),
            TraceEvent::SlowDisk { node, latency } => {
                write!(f, "disk of node {node} now syncs in {latency}")
            }
            TraceEvent::Partition { kind, cut } => {
                write!(f, "PARTITION {kind}: cut links {cut:?}")
            }
            TraceEvent::HealPartition => write!(f, "partition healed"),
            TraceEvent::Scenario { what, nodes } => write!(f, "SCENARIO {what}: nodes {nodes:?}"),
            TraceEvent::Snapshot { node, index } => {
                write!(f, "node {node} snapshots at {index}")
            }
            TraceEvent::Membership {
                leader,
                change,
                result,
            } => write!(f, "MEMBERSHIP at leader {leader}: {change} -> {result}"),
            TraceEvent::Transfer { leader, target } => {
                write!(f, "TRANSFER leadership {leader} -> {target}")
            }
            TraceEvent::Invoke {
                client,
                request,
                node,
                op,
            } => write!(f, "client {client} #{request} -> node {node}: {op}"),
            TraceEvent::Complete {
                client,
                request,
                outcome,
            } => write!(f, "client {client} #{request} <- {outcome}"),
            TraceEvent::Phase(name) => write!(f, "=== {name} phase ==="),
        }
    }
}

/// The trace of one run.
#[derive(Debug)]
pub struct Trace {
    recent: VecDeque<(Micros, TraceEvent)>,
    keep: usize,
    fingerprint: Fnv,
    echo: bool,
}

impl Trace {
    /// Keeps the last `keep` events; with `echo`, prints every event as it
    /// happens.
    pub fn new(keep: usize, echo: bool) -> Trace {
        Trace {
            recent: VecDeque::with_capacity(keep),
            keep,
            fingerprint: Fnv::default(),
            echo,
        }
    }

    pub fn record(&mut self, now: Micros, event: TraceEvent) {
        now.hash(&mut self.fingerprint);
        event.hash(&mut self.fingerprint);
        if self.echo {
            println!("{now} {event}");
        }
        if self.recent.len() == self.keep {
            self.recent.pop_front();
        }
        self.recent.push_back((now, event));
    }

    /// A hash of every event recorded, in order.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint.finish()
    }

    /// The most recent events, oldest first, one per line.
    pub fn tail(&self) -> Vec<String> {
        self.recent
            .iter()
            .map(|(at, event)| format!("{at} {event}"))
            .collect()
    }
}
