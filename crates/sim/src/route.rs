//! Where a client sends its next operation: to any node that runs, unless
//! the isolated-leader profile is steering the clients around the leader
//! it cut off.

use keel_raft::{NodeId, ReadMode};

/// Where one client may send its next operation.
pub(crate) struct Route {
    /// The nodes to choose from.
    pub(crate) nodes: Vec<NodeId>,
    /// Send a read of this mode, whatever the client would have drawn.
    pub(crate) read_only: Option<ReadMode>,
}

/// The isolated-leader profile's hold on the clients while its leader is
/// cut off: half of them (the readers) read only from that leader, the
/// others avoid it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Steering {
    pub(crate) isolated: NodeId,
}

impl Route {
    /// Where client `c` of `clients` may go among the nodes `up`.
    pub(crate) fn for_client(
        steering: Option<Steering>,
        c: usize,
        clients: usize,
        up: Vec<NodeId>,
    ) -> Route {
        let Some(Steering { isolated }) = steering else {
            return Route {
                nodes: up,
                read_only: None,
            };
        };
        let reader = c < clients / 2;
        let nodes: Vec<NodeId> = up
            .iter()
            .copied()
            .filter(|&n| (n == isolated) == reader)
            .collect();
        if nodes.is_empty() {
            return Route {
                nodes: up,
                read_only: None,
            };
        }
        // A read the leader cannot confirm waits for it to step down, so
        // each reader keeps to one mode: the first to lease reads, which
        // a valid lease answers at once, the second to ReadIndex.
        let mode = if c % 2 == 0 {
            ReadMode::Lease
        } else {
            ReadMode::ReadIndex
        };
        Route {
            nodes,
            read_only: reader.then_some(mode),
        }
    }
}
