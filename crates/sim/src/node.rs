//! One simulated node: the real `keel-raft` core driven by the caller's
//! Ready loop exactly as `keel_raft::Ready` prescribes, over a simulated
//! disk, with the KV state machine on top.
//!
//! The loop handles one Ready at a time: its `messages` leave at once, its
//! writes go to the disk, and only when the disk's `fsync` completes (after
//! the disk's latency) are `persisted_messages` sent, `persisted` reported,
//! committed entries applied and reads served. Inputs that arrive while a
//! Ready's fsync is in flight go into the core and wait for the next Ready.

use std::collections::BTreeMap;

use keel_linearizability::Output;
use keel_raft::{
    Config, Entry, LogIndex, Message, NodeId, Payload, Proposal, ProposeError, Raft, ReadError,
    ReadId, ReadMode, ReadOutcome, Role, SnapshotMeta, Term,
};

use crate::disk::{CrashKeep, Disk, Synced, Write};
use crate::invariants::{Breach, Checker, CommitRecord, StateReachedBy, Violation};
use crate::kv::{Command, KvState, Tag};
use crate::options::CallerBugs;
use crate::time::Micros;
use crate::trace::{Trace, TraceEvent};

/// Whether and how a node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    Up,
    /// Frozen (a GC pause, a stopped VM): inputs wait until it resumes.
    Paused,
    /// Crashed; restarts from its durable state.
    Down,
    /// Removed from the cluster and shut down.
    Stopped,
}

/// What a client asked a node to do.
#[derive(Clone, Debug)]
pub enum Request {
    Write {
        tag: Tag,
        command: Command,
    },
    Read {
        tag: Tag,
        key: String,
        mode: ReadMode,
    },
}

/// A node's answer to a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Written(Output),
    Read(Option<String>),
    /// Definitely not performed; `leader_hint` says where to retry.
    Failed {
        leader_hint: Option<NodeId>,
    },
}

#[derive(Clone, Debug)]
pub struct Response {
    pub tag: Tag,
    pub reply: Reply,
}

/// Everything a node call produced for the rest of the simulation.
#[derive(Debug, Default)]
pub struct NodeOutput {
    pub messages: Vec<Message>,
    pub responses: Vec<Response>,
    /// When the fsync of the Ready just taken completes.
    pub sync_at: Option<Micros>,
}

/// What one node call needs from the simulation.
pub struct Ctx<'a> {
    pub now: Micros,
    pub checker: &'a mut Checker,
    pub trace: &'a mut Trace,
    pub out: &'a mut NodeOutput,
    /// Deliberate caller bugs, to show the checks catch them.
    pub bugs: &'a CallerBugs,
}

/// The part of a Ready that waits for the fsync.
#[derive(Debug)]
struct InFlightSync {
    persisted_up_to: Option<(LogIndex, Term)>,
    persisted_messages: Vec<Message>,
    snapshot: Option<SnapshotMeta>,
    committed_entries: Vec<Entry>,
    applied_up_to: Option<LogIndex>,
    reads: Vec<ReadOutcome>,
    acknowledged_early: bool,
}

#[derive(Debug)]
pub struct SimNode {
    pub id: NodeId,
    /// `None` unless the node is up or paused.
    raft: Option<Raft>,
    pub disk: Disk,
    pub liveness: Liveness,
    /// Bumped on every restart, so events of a previous life are ignored.
    pub incarnation: u64,
    /// How long an fsync takes right now.
    pub sync_latency: Micros,
    /// The node's next clock tick.
    pub next_tick: Micros,
    kv: KvState,
    in_flight: Option<InFlightSync>,
    /// Snapshot data the transport delivered, by index, until the core
    /// asks for it to be installed.
    staged: BTreeMap<LogIndex, KvState>,
    /// Proposals waiting to be applied: index -> (tag, term).
    pending_writes: BTreeMap<LogIndex, Vec<(Tag, Term)>>,
    pending_reads: BTreeMap<ReadId, (Tag, String)>,
}

impl SimNode {
    /// A node with `disk`, started with `config`.
    pub fn start(config: Config, disk: Disk, now: Micros) -> Result<SimNode, Violation> {
        let id = config.id;
        let mut node = SimNode {
            id,
            raft: None,
            disk,
            liveness: Liveness::Down,
            incarnation: 0,
            sync_latency: Micros(0),
            next_tick: now,
            kv: KvState::default(),
            in_flight: None,
            staged: BTreeMap::new(),
            pending_writes: BTreeMap::new(),
            pending_reads: BTreeMap::new(),
        };
        node.boot(config)?;
        Ok(node)
    }

    /// Starts the core from the durable state: the snapshot's data becomes
    /// the state machine, and the core re-delivers committed entries after it.
    fn boot(&mut self, config: Config) -> Result<(), Violation> {
        let durable = self.disk.durable();
        let raft = Raft::new(config, durable.restored_state()).map_err(Breach::RestartRefused)?;
        self.kv = durable.snapshot_data.clone();
        self.raft = Some(raft);
        self.liveness = Liveness::Up;
        Ok(())
    }

    pub fn raft(&self) -> Option<&Raft> {
        self.raft.as_ref()
    }

    pub fn is_up(&self) -> bool {
        self.liveness == Liveness::Up
    }

    fn raft_mut(&mut self) -> &mut Raft {
        self.raft.as_mut().expect("inputs reach running nodes only")
    }

    pub fn tick(&mut self, ctx: &mut Ctx<'_>) -> Result<(), Violation> {
        self.raft_mut().tick();
        self.drive(ctx)
    }

    /// Runs `f` on the core (a leader-side call such as a membership
    /// change or a snapshot report), then drives the Ready loop.
    pub fn call<T>(
        &mut self,
        f: impl FnOnce(&mut Raft) -> T,
        ctx: &mut Ctx<'_>,
    ) -> Result<T, Violation> {
        let result = f(self.raft_mut());
        self.drive(ctx)?;
        Ok(result)
    }

    pub fn step(&mut self, m: Message, ctx: &mut Ctx<'_>) -> Result<(), Violation> {
        self.raft_mut()
            .step(m)
            .expect("the simulator delivers each message to its recipient");
        self.drive(ctx)
    }

    /// The transport has delivered snapshot data ahead of its message.
    pub fn stage_snapshot(&mut self, index: LogIndex, data: KvState) {
        self.staged.insert(index, data);
    }

    /// The data of the snapshot at `index`, if this node holds it.
    pub fn snapshot_data(&self, index: LogIndex) -> Option<KvState> {
        let latest = self.disk.latest();
        if latest.snapshot.index == index {
            return Some(latest.snapshot_data.clone());
        }
        self.staged.get(&index).cloned()
    }

    pub fn request(
        &mut self,
        request: Request,
        read_id: ReadId,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), Violation> {
        match request {
            Request::Write { tag, command } => match self.raft_mut().propose(command.encode()) {
                Ok(Proposal { term, index }) => {
                    self.pending_writes
                        .entry(index)
                        .or_default()
                        .push((tag, term));
                }
                Err(e) => ctx.out.responses.push(Response {
                    tag,
                    reply: Reply::Failed {
                        leader_hint: hint_of(&e),
                    },
                }),
            },
            Request::Read { tag, key, .. } if ctx.bugs.stale_reads => {
                let reply = Reply::Read(self.kv.get(&key));
                ctx.out.responses.push(Response { tag, reply });
            }
            Request::Read { tag, key, mode } => {
                self.pending_reads.insert(read_id, (tag, key));
                self.raft_mut().read(read_id, mode);
            }
        }
        self.drive(ctx)
    }

    /// Takes the next Ready if no fsync is in flight, and does the part of
    /// it that does not wait for the disk.
    pub fn drive(&mut self, ctx: &mut Ctx<'_>) -> Result<(), Violation> {
        if self.in_flight.is_some() || !self.raft.as_ref().is_some_and(Raft::has_ready) {
            return Ok(());
        }
        let raft = self.raft.as_mut().expect("checked above");
        // Observed before the Ready is taken, so that a just-elected leader
        // is known before its first entries are written.
        ctx.checker.observe(raft)?;
        let leader_term = (raft.role() == Role::Leader).then(|| raft.term());
        let mut ready = raft.ready();
        if let Some(soft) = &ready.soft_state {
            ctx.trace.record(
                ctx.now,
                TraceEvent::Role {
                    node: self.id,
                    role: soft.role,
                    term: soft.term,
                    leader: soft.leader,
                },
            );
        }
        ctx.out.messages.append(&mut ready.messages);
        if let Some(meta) = &ready.snapshot {
            let data = self
                .staged
                .remove(&meta.index)
                .ok_or(Breach::SnapshotDataMissing {
                    node: self.id,
                    index: meta.index,
                })?;
            self.staged.retain(|&index, _| index > meta.index);
            self.write(Write::Snapshot {
                meta: meta.clone(),
                data,
            })?;
        }
        if let (Some(first), Some(last)) = (ready.entries.first(), ready.entries.last()) {
            let prev_term = self.disk.latest().term_at(first.index.prev());
            ctx.checker
                .on_entries_written(self.id, leader_term, prev_term, &ready.entries)?;
            ctx.trace.record(
                ctx.now,
                TraceEvent::Persist {
                    node: self.id,
                    entries: Some((first.index, last.index)),
                    snapshot: ready.snapshot.as_ref().map(|s| s.index),
                    commit: ready.hard_state.as_ref().map_or(LogIndex(0), |h| h.commit),
                },
            );
        }
        let persisted_up_to = ready.persisted_up_to();
        let applied_up_to = ready.applied_up_to();
        if !ready.entries.is_empty() {
            self.write(Write::Entries(std::mem::take(&mut ready.entries)))?;
        }
        if let Some(mut hs) = ready.hard_state.take() {
            if ctx.bugs.forget_votes {
                hs.vote = None;
            }
            let before = self.disk.latest().hard_state.commit;
            ctx.checker.on_commit_written(
                self.id,
                before,
                hs.commit,
                CommitRecord::WrittenHardState,
            )?;
            self.write(Write::HardState(hs))?;
        }
        let mut sync = InFlightSync {
            persisted_up_to,
            persisted_messages: ready.persisted_messages,
            snapshot: ready.snapshot,
            committed_entries: ready.committed_entries,
            applied_up_to,
            reads: ready.reads,
            acknowledged_early: false,
        };
        if ctx.bugs.ack_before_fsync {
            let pretended = self.disk.pretend_synced();
            self.acknowledge(&mut sync, &pretended, ctx);
            sync.acknowledged_early = true;
        }
        self.in_flight = Some(sync);
        ctx.out.sync_at = Some(ctx.now.plus(self.sync_latency));
        Ok(())
    }

    fn write(&mut self, write: Write) -> Result<(), Violation> {
        self.disk.write(write).map_err(|error| {
            Violation::from(Breach::ImpossibleWrite {
                node: self.id,
                error,
            })
        })
    }

    /// Tells the core what is durable, as `proof` from the disk shows, and
    /// lets the messages that depended on it leave.
    fn acknowledge(&mut self, sync: &mut InFlightSync, proof: &Synced, ctx: &mut Ctx<'_>) {
        if let Some(up_to) = sync.persisted_up_to {
            self.raft_mut().persisted(up_to, proof);
        }
        ctx.out.messages.append(&mut sync.persisted_messages);
    }

    /// The fsync of the in-flight Ready completed: finish that Ready, then
    /// take the next.
    pub fn sync_done(&mut self, ctx: &mut Ctx<'_>) -> Result<(), Violation> {
        let mut sync = self
            .in_flight
            .take()
            .expect("a sync completes only while one is in flight");
        let before = self.disk.durable().hard_state.commit;
        let synced = self.disk.sync();
        let after = self.disk.durable().hard_state.commit;
        ctx.checker
            .on_commit_written(self.id, before, after, CommitRecord::DurableHardState)?;
        if !sync.acknowledged_early {
            self.acknowledge(&mut sync, &synced, ctx);
        }
        if let Some(meta) = &sync.snapshot {
            self.kv = self.disk.latest().snapshot_data.clone();
            ctx.checker.on_state(
                self.id,
                meta.index,
                self.kv.digest(),
                StateReachedBy::InstalledSnapshot,
            )?;
        }
        self.apply(&sync.committed_entries, ctx)?;
        if let Some(index) = sync.applied_up_to {
            self.raft_mut().applied(index);
        }
        for outcome in sync.reads {
            self.serve_read(outcome, ctx);
        }
        self.drive(ctx)
    }

    fn apply(&mut self, entries: &[Entry], ctx: &mut Ctx<'_>) -> Result<(), Violation> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(());
        };
        ctx.trace.record(
            ctx.now,
            TraceEvent::Apply {
                node: self.id,
                first: first.index,
                last: last.index,
            },
        );
        for entry in entries {
            ctx.checker.on_applied(self.id, entry)?;
            let applied = match &entry.payload {
                Payload::Command(data) => {
                    let command =
                        Command::decode(data).map_err(|error| Breach::AppliedCorruptEntry {
                            node: self.id,
                            index: entry.index,
                            error,
                        })?;
                    Some((command.tag, self.kv.apply(&command.op)))
                }
                Payload::Blank | Payload::Membership(_) => None,
            };
            for (tag, _) in self.pending_writes.remove(&entry.index).unwrap_or_default() {
                let reply = match &applied {
                    Some((applied_tag, output)) if *applied_tag == tag => {
                        Reply::Written(output.clone())
                    }
                    _ => Reply::Failed { leader_hint: None },
                };
                ctx.out.responses.push(Response { tag, reply });
            }
        }
        ctx.checker.on_state(
            self.id,
            last.index,
            self.kv.digest(),
            StateReachedBy::AppliedEntries,
        )?;
        Ok(())
    }

    fn serve_read(&mut self, outcome: ReadOutcome, ctx: &mut Ctx<'_>) {
        let Some((tag, key)) = self.pending_reads.remove(&outcome.id) else {
            return;
        };
        let reply = match outcome.result {
            Ok(_) => Reply::Read(self.kv.get(&key)),
            Err(ReadError::NotLeader { leader_hint }) => Reply::Failed { leader_hint },
            Err(ReadError::LeadershipLost) => Reply::Failed { leader_hint: None },
        };
        ctx.out.responses.push(Response { tag, reply });
    }

    /// Snapshots the applied state and compacts the log behind it. Only
    /// between Readies, so that nothing unsynced is on the disk. Returns
    /// the snapshot's index.
    pub fn compact(&mut self) -> Option<LogIndex> {
        if self.in_flight.is_some() {
            return None;
        }
        let raft = self.raft.as_mut()?;
        let applied = raft.status().applied;
        let durable = self.disk.durable();
        if applied <= durable.snapshot.index {
            return None;
        }
        let term = durable.term_at(applied)?;
        let meta = SnapshotMeta {
            index: applied,
            term,
            membership: durable.membership_at(applied),
        };
        self.disk.compact(&meta, &self.kv);
        raft.snapshot_created(meta);
        Some(applied)
    }

    /// Entries held after the snapshot (what compaction would free).
    pub fn log_len(&self) -> u64 {
        let latest = self.disk.latest();
        latest.last_index().0 - latest.snapshot.index.0
    }

    /// A crash: the process and everything unsynced are gone.
    pub fn crash(&mut self, keep: CrashKeep) {
        self.disk.crash(keep);
        self.raft = None;
        self.in_flight = None;
        self.staged.clear();
        self.pending_writes.clear();
        self.pending_reads.clear();
        self.liveness = Liveness::Down;
    }

    /// Shuts a removed node down for good (unless it is needed again).
    pub fn stop(&mut self) {
        self.crash(CrashKeep {
            writes: usize::MAX,
            torn_entries: 0,
        });
        self.liveness = Liveness::Stopped;
    }

    /// Restarts from the durable state with a fresh core.
    pub fn restart(&mut self, config: Config, ctx: &mut Ctx<'_>) -> Result<(), Violation> {
        self.incarnation += 1;
        let durable_commit = self.disk.durable().hard_state.commit;
        self.boot(config)?;
        let status = self.raft.as_ref().expect("just booted").status();
        ctx.checker.on_commit_written(
            self.id,
            durable_commit,
            status.commit,
            CommitRecord::Restart,
        )?;
        ctx.checker.on_state(
            self.id,
            self.disk.durable().snapshot.index,
            self.kv.digest(),
            StateReachedBy::SnapshotRestoredOnRestart,
        )?;
        ctx.trace.record(
            ctx.now,
            TraceEvent::Restart {
                node: self.id,
                term: status.term,
                commit: status.commit,
                last: status.last_index,
            },
        );
        self.drive(ctx)
    }
}

fn hint_of(e: &ProposeError) -> Option<NodeId> {
    match e {
        ProposeError::NotLeader { leader_hint } => *leader_hint,
        _ => None,
    }
}
