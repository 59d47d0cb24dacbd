//! A log store of your own: a Raft log in a `BTreeMap`, checked against
//! Keel's log store contract in one line and run under a node.
//!
//! It keeps everything in memory, so a real crash loses it all; it models
//! one by keeping, at each `sync`, a copy of what a disk would hold. A
//! store for production writes that copy to stable storage instead.
//!
//! Run with `cargo run -p keel --example btree_log_store`.

use std::collections::BTreeMap;
use std::time::Duration;

use keel::{
    Config, Durable, Entry, HardState, LogIndex, LogStore, Node, NodeId, StorageError, Term,
};

/// The log as one moment sees it.
#[derive(Clone, Default)]
struct Log {
    entries: BTreeMap<LogIndex, Entry>,
    /// The last entry a snapshot covers, where the log starts after.
    compacted: (LogIndex, Term),
    hard_state: HardState,
}

/// Writes land in `live`; `sync` copies it to `durable`, all a crash keeps.
#[derive(Default)]
pub struct BTreeLogStore {
    live: Log,
    durable: Log,
}

impl BTreeLogStore {
    /// What a restart after a power loss finds: the last synced state.
    pub fn crash_and_recover(self) -> BTreeLogStore {
        BTreeLogStore {
            live: self.durable.clone(),
            durable: self.durable,
        }
    }
}

impl LogStore for BTreeLogStore {
    fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        assert!(
            first.index >= self.first_index() && first.index <= self.last_index().next(),
            "entry {} would leave a gap in the log",
            first.index
        );
        assert!(entries.windows(2).all(|w| w[1].index == w[0].index.next()));
        self.live.entries.split_off(&first.index);
        self.live
            .entries
            .extend(entries.iter().map(|e| (e.index, e.clone())));
    }

    fn set_hard_state(&mut self, hs: HardState) {
        assert_ne!(hs.vote, Some(NodeId(0)), "node 0 is reserved");
        self.live.hard_state = hs;
    }

    fn compact(&mut self, upto: LogIndex, term: Term) {
        if upto < self.first_index() {
            return;
        }
        if self.term(upto) == Some(term) {
            self.live.entries = self.live.entries.split_off(&upto.next());
        } else {
            self.live.entries.clear(); // the log disagrees with the snapshot
        }
        self.live.compacted = (upto, term);
    }

    fn sync(&mut self) -> Result<Durable, StorageError> {
        self.durable = self.live.clone();
        let hard_state = self.live.hard_state.clone();
        Ok(Durable::synced(
            self.last_index(),
            self.last_term(),
            hard_state,
        ))
    }

    fn entries(
        &self,
        lo: LogIndex,
        hi: LogIndex,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let (first_index, last_index) = (self.first_index(), self.last_index());
        if lo < first_index {
            return Err(StorageError::Compacted {
                requested: lo,
                first_index,
            });
        }
        if hi > last_index.next() {
            return Err(StorageError::Unavailable {
                requested: hi,
                last_index,
            });
        }
        let (mut out, mut bytes) = (Vec::new(), 0);
        for entry in self.live.entries.range(lo..hi).map(|(_, e)| e) {
            bytes += entry.size_bytes();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(entry.clone());
        }
        Ok(out)
    }

    fn term(&self, index: LogIndex) -> Option<Term> {
        match self.live.compacted {
            (at, term) if at == index => Some(term),
            _ => self.live.entries.get(&index).map(|e| e.term),
        }
    }

    fn first_index(&self) -> LogIndex {
        self.live.compacted.0.next()
    }

    fn last_index(&self) -> LogIndex {
        self.live
            .entries
            .keys()
            .next_back()
            .copied()
            .unwrap_or(self.live.compacted.0)
    }

    fn hard_state(&self) -> &HardState {
        &self.live.hard_state
    }
}

/// A state machine that only counts the commands it applied.
#[derive(Default)]
struct Count {
    commands: u64,
    applied: LogIndex,
}

impl keel::StateMachine for Count {
    type Response = u64;

    fn apply(
        &mut self,
        commands: &[keel::Command],
        through: LogIndex,
    ) -> Result<Vec<u64>, keel::StateMachineError> {
        self.applied = through;
        Ok(commands
            .iter()
            .map(|_| {
                self.commands += 1;
                self.commands
            })
            .collect())
    }
    fn applied_index(&self) -> LogIndex {
        self.applied
    }
    fn snapshot(&mut self) -> Result<Box<dyn std::io::Read + Send>, keel::StateMachineError> {
        Ok(Box::new(std::io::Cursor::new(self.commands.to_le_bytes())))
    }
    fn restore(
        &mut self,
        index: LogIndex,
        data: &mut dyn std::io::Read,
    ) -> Result<(), keel::StateMachineError> {
        let mut bytes = [0; 8];
        data.read_exact(&mut bytes)?;
        (self.commands, self.applied) = (u64::from_le_bytes(bytes), index);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The store keeps Keel's log store contract: one line checks it all.
    keel::conformance::check(BTreeLogStore::default, BTreeLogStore::crash_and_recover);
    println!("BTreeLogStore passes the conformance suite");

    // And a node runs on it: a single-member cluster.
    let dir = tempfile::tempdir()?;
    let config = Config::new(NodeId(1), 1, "127.0.0.1:0".parse()?);
    let storage = keel::Storage::with_log_store(BTreeLogStore::default(), dir.path())?;
    let listener = tokio::net::TcpListener::bind(config.listen_addr).await?;
    let node =
        Node::start_with(config, Count::default(), storage, BTreeMap::new(), listener).await?;
    node.wait_for(Duration::from_secs(10), |m| m.leader == Some(NodeId(1)))
        .await?;
    for expected in 1..=3 {
        assert_eq!(node.propose(vec![]).await?, expected);
    }
    println!("the node applied 3 commands through the BTreeMap log");
    node.shutdown().await?;
    Ok(())
}

#[cfg(test)]
#[test]
fn example_runs() {
    main().expect("the example succeeds");
}

#[cfg(test)]
#[test]
fn a_store_whose_crash_keeps_unsynced_writes_fails_the_suite() {
    let outcome = std::panic::catch_unwind(|| {
        keel::conformance::check(BTreeLogStore::default, |store: BTreeLogStore| store);
    });
    assert!(
        outcome.is_err(),
        "the suite catches writes surviving without a sync"
    );
}
