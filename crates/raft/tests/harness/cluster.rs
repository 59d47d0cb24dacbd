//! An in-memory cluster for scenario scripts: nodes, their "disks", a
//! message queue with partitions, and the caller's Ready loop.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use keel_raft::{
    Config, DurabilityProof, Entry, HardState, LogIndex, Membership, Message, MessageBody, NodeId,
    Payload, Raft, ReadOutcome, RestoredState, SnapshotMeta, Term,
};

use super::format;

/// What a node has made durable, and what its state machine holds.
#[derive(Clone, Debug)]
pub struct Disk {
    pub hard_state: HardState,
    pub snapshot: SnapshotMeta,
    /// Commands applied up to `snapshot.index`, standing in for its data.
    pub snapshot_data: Vec<Bytes>,
    pub entries: Vec<Entry>,
}

/// Every write to this disk is durable as soon as it is made, so the disk
/// itself is the proof of what it holds.
impl DurabilityProof for Disk {
    fn durable_through(&self) -> (LogIndex, Term) {
        self.entries
            .last()
            .map_or((self.snapshot.index, self.snapshot.term), |e| {
                (e.index, e.term)
            })
    }
}

pub struct Node {
    pub raft: Raft,
    pub disk: Disk,
    /// The state machine: every command applied, in order.
    pub applied: Vec<Bytes>,
    pub reads: Vec<ReadOutcome>,
    pub config: Config,
}

#[derive(Default)]
pub struct Cluster {
    pub nodes: BTreeMap<NodeId, Node>,
    /// Messages sent and not yet delivered, in order.
    pub network: Vec<Message>,
    /// Links that drop messages, as `(from, to)`.
    pub cut: BTreeSet<(NodeId, NodeId)>,
}

impl Cluster {
    pub fn add_node(&mut self, config: Config, membership: Membership) {
        let id = config.id;
        let state = RestoredState::bootstrap(membership);
        let raft = Raft::new(config.clone(), state.clone()).unwrap();
        let disk = Disk {
            hard_state: state.hard_state,
            snapshot: state.snapshot,
            snapshot_data: Vec::new(),
            entries: state.entries,
        };
        let node = Node {
            raft,
            disk,
            applied: Vec::new(),
            reads: Vec::new(),
            config,
        };
        self.nodes.insert(id, node);
    }

    pub fn node(&mut self, id: u64) -> &mut Node {
        self.nodes
            .get_mut(&NodeId(id))
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// Replaces a node's durable log and term (to set up the paper's
    /// figures), then restarts it from that state.
    pub fn set_log(&mut self, id: u64, terms: &[u64], term: u64) {
        let node = self.node(id);
        node.disk.entries = terms
            .iter()
            .enumerate()
            .map(|(k, &t)| Entry {
                term: Term(t),
                index: LogIndex(k as u64 + 1),
                payload: Payload::Blank,
            })
            .collect();
        node.disk.hard_state = HardState {
            term: Term(term),
            vote: None,
            commit: LogIndex(0),
        };
        self.restart(id);
    }

    /// Crashes a node (losing nothing it persisted) and starts it again.
    pub fn restart(&mut self, id: u64) {
        let node = self.node(id);
        let state = RestoredState {
            hard_state: node.disk.hard_state.clone(),
            snapshot: node.disk.snapshot.clone(),
            entries: node.disk.entries.clone(),
        };
        node.raft = Raft::new(node.config.clone(), state).unwrap();
        node.applied = node.disk.snapshot_data.clone();
    }

    /// Runs the caller's duties for one Ready of `id`; returns a rendering
    /// of what it held.
    pub fn process_ready(&mut self, id: NodeId) -> Vec<String> {
        let node = self.nodes.get_mut(&id).unwrap();
        let mut shown = Vec::new();
        if !node.raft.has_ready() {
            return shown;
        }
        let ready = node.raft.ready();
        self.network.extend(ready.messages.iter().cloned());
        if let Some(meta) = &ready.snapshot {
            node.disk.snapshot = meta.clone();
            node.disk.entries.clear();
            node.applied = node.disk.snapshot_data.clone();
            shown.push(format!("install snapshot {}@{}", meta.index, meta.term));
        }
        if let Some(first) = ready.entries.first() {
            node.disk.entries.retain(|e| e.index < first.index);
            node.disk.entries.extend(ready.entries.iter().cloned());
            let list: Vec<String> = ready.entries.iter().map(format::entry).collect();
            shown.push(format!("persist {}", list.join(", ")));
        }
        if let Some(hs) = &ready.hard_state {
            node.disk.hard_state = hs.clone();
        }
        if let Some(up_to) = ready.persisted_up_to() {
            node.raft.persisted(up_to, &node.disk);
        }
        self.network
            .extend(ready.persisted_messages.iter().cloned());
        for entry in &ready.committed_entries {
            if let Payload::Command(data) = &entry.payload {
                node.applied.push(data.clone());
            }
        }
        match ready.committed_entries.as_slice() {
            [] => {}
            [one] => shown.push(format!("apply {}", format::entry(one))),
            [first, .., last] => shown.push(format!(
                "apply {}..{} ({} entries)",
                format::entry(first),
                format::entry(last),
                ready.committed_entries.len()
            )),
        }
        if let Some(index) = ready.applied_up_to() {
            node.raft.applied(index);
        }
        for read in &ready.reads {
            shown.push(format::read(read));
        }
        node.reads.extend(ready.reads);
        node.raft.check_invariants().unwrap();
        shown
    }

    /// Hands every queued message to its recipient, dropping those on cut
    /// links. Returns a line per message.
    pub fn deliver(&mut self, filter: impl Fn(&Message) -> bool) -> Vec<String> {
        let (now, later): (Vec<Message>, Vec<Message>) = std::mem::take(&mut self.network)
            .into_iter()
            .partition(|m| filter(m));
        self.network = later;
        let mut lines = Vec::new();
        for m in now {
            if self.cut.contains(&(m.from, m.to)) {
                lines.push(format!("{} (dropped)", format::message(&m)));
                continue;
            }
            lines.push(format::message(&m));
            self.deliver_one(m);
        }
        lines
    }

    fn deliver_one(&mut self, m: Message) {
        if !self.nodes.contains_key(&m.to) {
            return;
        }
        if let MessageBody::InstallSnapshot { meta } = &m.body {
            // The "transport" ships the leader's snapshot data along.
            let data = self.nodes[&m.from].disk.snapshot_data.clone();
            let snapshot_index = self.nodes[&m.from].disk.snapshot.index;
            assert_eq!(
                snapshot_index, meta.index,
                "leader sent a snapshot it does not have"
            );
            self.nodes.get_mut(&m.to).unwrap().disk.snapshot_data = data;
            let from = m.from;
            let to = m.to;
            self.nodes.get_mut(&to).unwrap().raft.step(m).unwrap();
            self.nodes
                .get_mut(&from)
                .unwrap()
                .raft
                .report_snapshot(to, true);
            return;
        }
        let to = m.to;
        let node = self.nodes.get_mut(&to).unwrap();
        node.raft.step(m).unwrap();
        node.raft.check_invariants().unwrap();
    }

    /// Processes Readies and delivers messages until nothing moves.
    pub fn stabilize(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        for _ in 0..10_000 {
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in ids {
                while self.nodes[&id].raft.has_ready() {
                    for line in self.process_ready(id) {
                        lines.push(format!("{id}: {line}"));
                    }
                }
            }
            if self.network.is_empty() {
                return lines;
            }
            lines.extend(self.deliver(|_| true));
        }
        panic!("cluster did not stabilize");
    }

    /// Takes an id's snapshot at `at` (default: its applied index) and
    /// compacts its log.
    pub fn snapshot(&mut self, id: u64, at: Option<u64>) -> LogIndex {
        let node = self.node(id);
        let status = node.raft.status();
        let index = at.map_or(status.applied, LogIndex);
        assert!(index <= status.applied, "snapshot beyond the applied index");
        let term = node
            .raft
            .entry(index)
            .map(|e| e.term)
            .unwrap_or(node.disk.snapshot.term);
        let membership = node
            .disk
            .entries
            .iter()
            .filter(|e| e.index <= index)
            .filter_map(|e| match &e.payload {
                Payload::Membership(m) => Some(m.clone()),
                _ => None,
            })
            .next_back()
            .unwrap_or_else(|| node.disk.snapshot.membership.clone());
        let meta = SnapshotMeta {
            index,
            term,
            membership,
        };
        let commands = node.disk.entries.iter().filter(|e| e.index <= index);
        let data: Vec<Bytes> = commands
            .filter_map(|e| match &e.payload {
                Payload::Command(data) => Some(data.clone()),
                _ => None,
            })
            .collect();
        node.disk.snapshot = meta.clone();
        node.disk.snapshot_data.extend(data);
        node.disk.entries.retain(|e| e.index > index);
        node.raft.snapshot_created(meta);
        index
    }
}
