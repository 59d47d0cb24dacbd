//! A replicated counter: three Keel nodes in one process, talking gRPC over
//! loopback and keeping their logs in temporary directories.
//!
//! Run with `cargo run -p keel --example counter`.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::time::Duration;

use keel::{
    Command, Config, LogIndex, Node, NodeId, ReadConsistency, StateMachine, StateMachineError,
};
use tokio::net::TcpListener;

/// The replicated state: a number, and how far into the log it reflects.
#[derive(Default)]
struct Counter {
    value: i64,
    applied: LogIndex,
}

impl StateMachine for Counter {
    /// The counter's new value.
    type Response = i64;

    /// Each command is a little-endian i64 to add.
    fn apply(
        &mut self,
        commands: &[Command],
        through: LogIndex,
    ) -> Result<Vec<i64>, StateMachineError> {
        let mut responses = Vec::with_capacity(commands.len());
        for command in commands {
            let delta: [u8; 8] = command.data.as_ref().try_into()?;
            self.value += i64::from_le_bytes(delta);
            responses.push(self.value);
        }
        self.applied = through;
        Ok(responses)
    }

    fn applied_index(&self) -> LogIndex {
        self.applied
    }

    fn snapshot(&mut self) -> Result<Box<dyn Read + Send>, StateMachineError> {
        Ok(Box::new(Cursor::new(self.value.to_le_bytes())))
    }

    fn restore(&mut self, index: LogIndex, data: &mut dyn Read) -> Result<(), StateMachineError> {
        let mut bytes = [0; 8];
        data.read_exact(&mut bytes)?;
        self.value = i64::from_le_bytes(bytes);
        self.applied = index;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Bind every node's port first, so each knows the others' addresses.
    let mut listeners = BTreeMap::new();
    for id in 1..=3 {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        listeners.insert(NodeId(id), listener);
    }
    let addrs: BTreeMap<NodeId, String> = listeners
        .iter()
        .map(|(&id, l)| Ok((id, l.local_addr()?.to_string())))
        .collect::<std::io::Result<_>>()?;

    let dirs = tempfile::tempdir()?;
    let mut nodes = Vec::new();
    for (id, listener) in listeners {
        let config = Config::new(id, 1, listener.local_addr()?);
        let storage = keel::Storage::open(dirs.path().join(id.to_string()), &config)?;
        let mut peers = addrs.clone();
        peers.remove(&id);
        nodes.push(Node::start_with(config, Counter::default(), storage, peers, listener).await?);
    }

    // Wait for an election, then send increments to the leader.
    let metrics = nodes[0]
        .wait_for(Duration::from_secs(10), |m| m.leader.is_some())
        .await?;
    let leader_id = metrics.leader.expect("waited for a leader");
    let leader = nodes
        .iter()
        .find(|n| n.id() == leader_id)
        .expect("the leader is one of ours");
    println!("node {leader_id} leads term {}", metrics.term);
    for delta in [5i64, 10, -3] {
        let value = leader.propose(delta.to_le_bytes().to_vec()).await?;
        println!("added {delta:>3} -> counter is {value}");
    }

    // Every node, followers included, reads the same value.
    for node in &nodes {
        let value = node
            .read(ReadConsistency::Linearizable, |c: &Counter| c.value)
            .await?;
        println!("node {} reads {value}", node.id());
        assert_eq!(value, 12);
    }

    // State an application keeps outside the node (a database its state
    // machine writes) is read after a barrier: once `ensure_linearizable`
    // returns, this node has applied every write acknowledged before it.
    let follower = nodes
        .iter()
        .find(|n| n.id() != leader_id)
        .expect("two of three nodes follow");
    let index = follower.ensure_linearizable().await?;
    println!("node {} has applied through {index}", follower.id());

    // Leadership changes arrive as a stream: stop the leader and watch
    // another take over.
    let mut changes = follower.leader_changes();
    leader.shutdown().await?;
    let successor = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(change) = changes.next().await {
            if let Some(new) = change.leader.filter(|&id| id != leader_id) {
                return Some((new, change.term));
            }
        }
        None
    })
    .await?
    .expect("the follower is running");
    println!("node {} leads term {}", successor.0, successor.1);

    for node in &nodes {
        node.shutdown().await?;
    }
    Ok(())
}

#[cfg(test)]
#[test]
fn example_runs() {
    main().expect("the example succeeds");
}
