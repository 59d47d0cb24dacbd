//! Three lock-service members in one process, talking gRPC over loopback:
//! two clients contend for a lock, and the printer it guards refuses the
//! client that lost it.
//!
//! Run with `cargo run -p keel-lock-service`.

use std::collections::BTreeMap;
use std::time::Duration;

use keel::{Config, Error, Node, NodeId, ReadConsistency};
use keel_lock_service::{ClientId, LockMachine, Op, Outcome, Request};
use tokio::net::TcpListener;

/// A client of the printer's lock, and its latest request.
#[derive(Default)]
struct Client {
    id: ClientId,
    sequence: u64,
    latest: Vec<u8>,
}

impl Client {
    fn new(id: ClientId) -> Client {
        Client {
            id,
            ..Client::default()
        }
    }

    /// Sends a new request.
    async fn send(&mut self, node: &Node<LockMachine>, op: Op) -> Result<Outcome, Error> {
        self.sequence += 1;
        let lock = "printer".to_owned();
        self.latest = Request {
            client: self.id,
            sequence: self.sequence,
            lock,
            op,
        }
        .encode();
        self.resend(node).await
    }

    /// Sends the latest request again, as a client does after a lost reply.
    async fn resend(&self, node: &Node<LockMachine>) -> Result<Outcome, Error> {
        let outcome = node.propose(self.latest.clone()).await?;
        println!("{} -> {outcome:?}", String::from_utf8_lossy(&self.latest));
        Ok(outcome)
    }
}

/// The resource the lock guards: it refuses a token older than one it saw.
#[derive(Default)]
struct Printer {
    highest_token: u64,
}

impl Printer {
    fn print(&mut self, token: u64, page: &str) -> bool {
        let accepted = token >= self.highest_token;
        self.highest_token = self.highest_token.max(token);
        let verdict = if accepted { "printed" } else { "refused" };
        println!("printer, token {token}: {page} {verdict}");
        accepted
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut listeners = BTreeMap::new();
    for id in 1..=3 {
        listeners.insert(NodeId(id), TcpListener::bind("127.0.0.1:0").await?);
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
        let machine = LockMachine::default();
        nodes.push(Node::start_with(config, machine, storage, peers, listener).await?);
    }
    let metrics = nodes[0]
        .wait_for(Duration::from_secs(10), |m| m.leader.is_some())
        .await?;
    let leader = nodes
        .iter()
        .find(|n| Some(n.id()) == metrics.leader)
        .expect("one of ours");

    let (mut alice, mut bob, mut printer) = (Client::new(1), Client::new(2), Printer::default());
    let Outcome::Granted { token: alices } = alice.send(leader, Op::Acquire).await? else {
        panic!("a free lock is granted");
    };
    assert_eq!(
        bob.send(leader, Op::Acquire).await?,
        Outcome::Held { by: alice.id }
    );
    assert!(printer.print(alices, "alice's report"));
    let release = Op::Release { token: alices };
    assert_eq!(
        alice.send(leader, release.clone()).await?,
        Outcome::Released
    );
    // Alice's reply was lost, so she asks again: answered, not applied twice.
    assert_eq!(alice.resend(leader).await?, Outcome::Released);

    let Outcome::Granted { token: bobs } = bob.send(leader, Op::Acquire).await? else {
        panic!("a released lock is granted");
    };
    assert!(bobs > alices, "fencing tokens increase");
    assert!(printer.print(bobs, "bob's invoice"));
    // Alice, late, still believes she holds the lock: her token fences her.
    assert!(!printer.print(alices, "alice's second report"));
    assert_eq!(alice.send(leader, release).await?, Outcome::NotHolder);

    // Every member, followers included, sees bob as the holder.
    for node in &nodes {
        let lock = |m: &LockMachine| m.locks["printer"].clone();
        let lock = node.read(ReadConsistency::Linearizable, lock).await?;
        assert_eq!((lock.holder, lock.token), (Some(bob.id), bobs));
    }
    for node in &nodes {
        node.shutdown().await?;
    }
    Ok(())
}

#[cfg(test)]
#[test]
fn demo_runs() {
    main().expect("the demo succeeds");
}
