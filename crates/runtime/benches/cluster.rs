//! Throughput and latency of a 3-node cluster in one process over loopback:
//! 256-byte proposals from 1, 16 and 256 concurrent proposers, with the
//! file log (fsync on every group commit) and with an in-memory log.
//!
//! `cargo bench -p keel --bench cluster` prints a table; under `cargo test`
//! (no `--bench` flag) it runs one short round as a smoke test.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use keel::{
    Command, Config, Error, LogIndex, Node, NodeId, StateMachine, StateMachineError, Storage,
};
use tokio::net::TcpListener;

const PAYLOAD_BYTES: usize = 256;

/// Counts what it applies; answers with nothing.
#[derive(Default)]
struct Sink {
    commands: u64,
    applied: LogIndex,
}

impl StateMachine for Sink {
    type Response = Bytes;

    fn apply(
        &mut self,
        commands: &[Command],
        through: LogIndex,
    ) -> Result<Vec<Bytes>, StateMachineError> {
        self.commands += commands.len() as u64;
        self.applied = through;
        Ok(vec![Bytes::new(); commands.len()])
    }

    fn applied_index(&self) -> LogIndex {
        self.applied
    }

    fn snapshot(&mut self) -> Result<Box<dyn Read + Send>, StateMachineError> {
        Ok(Box::new(Cursor::new(self.commands.to_le_bytes())))
    }

    fn restore(&mut self, index: LogIndex, data: &mut dyn Read) -> Result<(), StateMachineError> {
        let mut bytes = [0; 8];
        data.read_exact(&mut bytes)?;
        self.commands = u64::from_le_bytes(bytes);
        self.applied = index;
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
enum Log {
    File,
    Memory,
}

struct Round {
    log: Log,
    proposers: usize,
    duration: Duration,
}

struct Outcome {
    proposals: u64,
    elapsed: Duration,
    latency_us: Histogram<u64>,
}

async fn start_cluster(log: Log, dir: &std::path::Path) -> Vec<Node<Sink>> {
    let mut listeners = BTreeMap::new();
    for id in 1..=3 {
        listeners.insert(NodeId(id), TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addrs: BTreeMap<NodeId, String> = listeners
        .iter()
        .map(|(&id, l)| (id, l.local_addr().unwrap().to_string()))
        .collect();
    let mut nodes = Vec::new();
    for (id, listener) in listeners {
        let config = Config::new(id, 1, listener.local_addr().unwrap());
        let data = dir.join(id.to_string());
        let storage = match log {
            Log::File => Storage::open(&data, &config).unwrap(),
            Log::Memory => Storage::in_memory_log(&data).unwrap(),
        };
        let mut peers = addrs.clone();
        peers.remove(&id);
        let node = Node::start_with(config, Sink::default(), storage, peers, listener);
        nodes.push(node.await.unwrap());
    }
    nodes
}

async fn run(round: &Round) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(round.log, dir.path()).await;
    let leader_id = nodes[0]
        .wait_for(Duration::from_secs(10), |m| m.leader.is_some())
        .await
        .unwrap()
        .leader
        .unwrap();
    let leader = nodes.iter().find(|n| n.id() == leader_id).unwrap().clone();
    // The new leader's first commit makes it ready for proposals.
    while let Err(Error::LeaderNotReady | Error::NotLeader { .. }) =
        leader.propose(vec![0u8; 8]).await
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let started = Instant::now();
    let deadline = started + round.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..round.proposers {
        let node = leader.clone();
        tasks.spawn(async move {
            let mut latency = Histogram::<u64>::new(3).unwrap();
            let payload = Bytes::from(vec![7u8; PAYLOAD_BYTES]);
            while Instant::now() < deadline {
                let sent = Instant::now();
                match node.propose(payload.clone()).await {
                    Ok(_) => latency.record(sent.elapsed().as_micros() as u64).unwrap(),
                    Err(Error::Overloaded) => tokio::task::yield_now().await,
                    Err(e) => panic!("proposal failed: {e}"),
                }
            }
            latency
        });
    }
    let mut latency_us = Histogram::<u64>::new(3).unwrap();
    for h in tasks.join_all().await {
        latency_us.add(h).unwrap();
    }
    let elapsed = started.elapsed();
    for node in &nodes {
        node.shutdown().await.unwrap();
    }
    Outcome {
        proposals: latency_us.len(),
        elapsed,
        latency_us,
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rounds: Vec<Round> = if full {
        [Log::File, Log::Memory]
            .into_iter()
            .flat_map(|log| {
                [1, 16, 256].map(|proposers| Round {
                    log,
                    proposers,
                    duration: Duration::from_secs(5),
                })
            })
            .collect()
    } else {
        vec![Round {
            log: Log::File,
            proposers: 4,
            duration: Duration::from_millis(200),
        }]
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("3 nodes, loopback gRPC, {PAYLOAD_BYTES} B proposals");
    println!(
        "{:<8} {:>10} {:>12} {:>10} {:>10}",
        "log", "proposers", "proposals/s", "p50 ms", "p99 ms"
    );
    for round in &rounds {
        let outcome = runtime.block_on(run(round));
        let per_second = outcome.proposals as f64 / outcome.elapsed.as_secs_f64();
        let ms = |q: f64| outcome.latency_us.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "{:<8} {:>10} {:>12.0} {:>10.2} {:>10.2}",
            format!("{:?}", round.log).to_lowercase(),
            round.proposers,
            per_second,
            ms(0.5),
            ms(0.99)
        );
        assert!(outcome.proposals > 0, "no proposal completed");
    }
}
