//! The embedded shape, as openraft's `benchmarks/minimal` measures it:
//! three members in one process, messages passed in memory, an in-memory
//! log, empty requests, 1 / 64 / 256 / 1024 / 4096 closed-loop clients.
//!
//! No gRPC, no disk and no threads: the three members' node loops (the
//! code a running `Node` drives: core, proposal tracker, write and apply
//! sequencing) and their appliers run on one thread, which hands each
//! member's messages to the others, "syncs" its in-memory log and applies
//! its committed entries in turn. The figure is what the consensus path
//! itself costs per request, on one core, for all three members together.
//!
//! `cargo bench -p keel --bench embedded` prints a table; under `cargo test`
//! it runs one short round as a smoke test.

use std::collections::VecDeque;
use std::io::{Cursor, Read};
use std::time::{Duration, Instant};

use bytes::Bytes;
use keel::node_loop::{
    Applier, ApplyOp, DurableWrite, Effect, Input, Moment, NodeLoop, Request, Responder,
};
use keel::{Command, Config, Error, LogIndex, NodeId, StateMachine, StateMachineError};
use keel_raft::{Membership, Message, Raft, RestoredState, Role, SnapshotMeta, Term};
use keel_storage::{LogStore, MemLogStore};
use tokio::sync::oneshot;

/// Applies nothing, answers nothing.
#[derive(Default)]
struct Sink {
    applied: LogIndex,
}

impl StateMachine for Sink {
    type Response = Bytes;

    fn apply(
        &mut self,
        commands: &[Command],
        through: LogIndex,
    ) -> Result<Vec<Bytes>, StateMachineError> {
        self.applied = through;
        Ok(vec![Bytes::new(); commands.len()])
    }

    fn applied_index(&self) -> LogIndex {
        self.applied
    }

    fn snapshot(&mut self) -> Result<Box<dyn Read + Send>, StateMachineError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    fn restore(&mut self, index: LogIndex, _: &mut dyn Read) -> Result<(), StateMachineError> {
        self.applied = index;
        Ok(())
    }
}

/// A write batch written to the log, to report once "synced".
struct Written {
    seq: u64,
    up_to: Option<(LogIndex, Term)>,
    messages: Vec<Message>,
}

struct Member {
    node: NodeLoop<Sink>,
    applier: Applier<Sink>,
    log: MemLogStore,
    written: Vec<Written>,
    applies: VecDeque<ApplyOp<Sink>>,
}

/// The three members and the messages between them.
struct Cluster {
    members: Vec<Member>,
    in_flight: VecDeque<Message>,
    started: Instant,
    next_tick: Duration,
    tick: Duration,
}

impl Cluster {
    fn new() -> Cluster {
        let ids = [NodeId(1), NodeId(2), NodeId(3)];
        let membership = Membership::new(ids, []).expect("three voters");
        let members = ids
            .iter()
            .map(|&id| {
                let mut config = Config::new(id, 1, "127.0.0.1:0".parse().expect("an address"));
                config.snapshot_entries = u64::MAX / 2;
                config.pending_proposals_max = 1 << 20;
                let raft = Raft::new(
                    config.raft.clone(),
                    RestoredState::bootstrap(membership.clone()),
                )
                .expect("a valid configuration");
                let snapshot = SnapshotMeta {
                    index: LogIndex(0),
                    term: Term(0),
                    membership: membership.clone(),
                };
                Member {
                    applier: Applier::new(Sink::default(), LogIndex(0), &snapshot, u64::MAX / 2),
                    node: NodeLoop::new(raft, config, 0),
                    log: MemLogStore::new(),
                    written: Vec::new(),
                    applies: VecDeque::new(),
                }
            })
            .collect();
        Cluster {
            members,
            in_flight: VecDeque::new(),
            started: Instant::now(),
            next_tick: Duration::ZERO,
            tick: Config::new(NodeId(1), 1, "127.0.0.1:0".parse().expect("an address"))
                .tick_interval,
        }
    }

    fn now(&self) -> Moment {
        Moment::since_start(self.started.elapsed())
    }

    /// One round: ticks when due, every message delivered, every write
    /// synced, every apply run, each member's effects executed.
    fn round(&mut self) {
        let now = self.now();
        let elapsed = self.started.elapsed();
        let tick = elapsed >= self.next_tick;
        if tick {
            self.next_tick = elapsed + self.tick;
        }
        for m in std::mem::take(&mut self.in_flight) {
            let to = (m.to.0 - 1) as usize;
            self.members[to].node.handle(now, Input::Messages(vec![m]));
        }
        for member in &mut self.members {
            if tick {
                member.node.handle(now, Input::Tick);
            }
            let proof = member.log.sync().expect("memory does not fail");
            for w in std::mem::take(&mut member.written) {
                let input = Input::Persisted {
                    seq: w.seq,
                    durable: DurableWrite::after_sync(w.up_to, Some(&proof)),
                    messages: w.messages,
                };
                member.node.handle(now, input);
            }
            while let Some(op) = member.applies.pop_front() {
                match op {
                    ApplyOp::Entries { entries, waiters } => {
                        let applied = member.applier.apply(entries, waiters).expect("a sink");
                        if let Some(index) = applied {
                            member.node.handle(now, Input::Applied(index));
                        }
                    }
                    ApplyOp::Read(f) => member.applier.read(f),
                    ApplyOp::Restore(_) | ApplyOp::Snapshot(_) => {
                        unreachable!("no snapshots in this benchmark")
                    }
                }
            }
            for effect in member.node.effects(now) {
                match effect {
                    Effect::Send(m) => self.in_flight.push_back(m),
                    Effect::Write(batch) => {
                        batch.write_to(&mut member.log);
                        member.written.push(Written {
                            seq: batch.seq,
                            up_to: batch.persisted_up_to,
                            messages: batch.messages,
                        });
                    }
                    Effect::Apply(op) => member.applies.push_back(op),
                    Effect::Compact { index, term } => member.log.compact(index, term),
                    // Messages go by id: the members need no addresses.
                    Effect::SetPeers(_) => {}
                    Effect::SendSnapshot(_) | Effect::PublishSnapshot(_) => {
                        unreachable!("no snapshots in this benchmark")
                    }
                }
            }
        }
    }

    fn leader(&self) -> Option<usize> {
        self.members
            .iter()
            .position(|m| m.node.raft().role() == Role::Leader)
    }

    fn propose(&mut self, leader: usize) -> oneshot::Receiver<Result<Bytes, Error>> {
        let (sender, answer) = oneshot::channel();
        let request = Request::Propose {
            data: Bytes::new(),
            responder: Responder::Command(sender),
        };
        let now = self.now();
        self.members[leader]
            .node
            .handle(now, Input::Request(request));
        answer
    }
}

/// Runs `clients` closed-loop clients for `duration`; returns the
/// requests completed and the time taken.
fn run(clients: usize, duration: Duration) -> (u64, Duration) {
    let mut cluster = Cluster::new();
    let leader = loop {
        cluster.round();
        if let Some(leader) = cluster.leader() {
            break leader;
        }
        assert!(
            cluster.started.elapsed() < Duration::from_secs(10),
            "no leader within 10 s"
        );
    };
    let mut waiting: Vec<_> = (0..clients).map(|_| cluster.propose(leader)).collect();
    let started = Instant::now();
    let mut done = 0u64;
    while started.elapsed() < duration {
        cluster.round();
        for answer in &mut waiting {
            match answer.try_recv() {
                Ok(Ok(_)) => {
                    done += 1;
                    *answer = cluster.propose(leader);
                }
                Ok(Err(e)) => panic!("a proposal failed: {e}"),
                Err(oneshot::error::TryRecvError::Empty) => {}
                Err(oneshot::error::TryRecvError::Closed) => panic!("a proposal was dropped"),
            }
        }
    }
    (done, started.elapsed())
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test` runs benches without it.
    let benching = std::env::args().any(|a| a == "--bench");
    let (counts, duration): (&[usize], Duration) = if benching {
        (&[1, 64, 256, 1024, 4096], Duration::from_secs(5))
    } else {
        (&[1, 64], Duration::from_millis(200))
    };
    println!("three members on one thread, in-memory log and messages, empty requests");
    println!("{:>8} {:>12} {:>12}", "clients", "requests", "per second");
    for &clients in counts {
        let (done, elapsed) = run(clients, duration);
        assert!(done > 0, "{clients} clients completed nothing");
        println!(
            "{clients:>8} {done:>12} {:>12.0}",
            done as f64 / elapsed.as_secs_f64()
        );
    }
}
