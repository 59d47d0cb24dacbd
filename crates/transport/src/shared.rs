//! [`Shared`]: the transport's state that the handle ([`crate::Transport`]),
//! the peer tasks and the server all use. It lives apart from both the
//! handle and the server so that neither module imports the other.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use keel_raft::NodeId;
use tracing::{info, warn};

use crate::config::{PROTOCOL_VERSION, TransportConfig};
use crate::metrics::Counters;
use crate::pb;
use crate::peer::Peer;

/// State shared by the handle, the peer tasks and the server.
pub(crate) struct Shared {
    pub(crate) config: TransportConfig,
    pub(crate) counters: Arc<Counters>,
    pub(crate) peers: RwLock<BTreeMap<NodeId, Peer>>,
    /// Bumped whenever the address book changes, so the owner knows when to
    /// persist it.
    pub(crate) peers_version: AtomicU64,
}

impl Shared {
    pub(crate) fn new(config: TransportConfig) -> Shared {
        Shared {
            config,
            counters: Arc::new(Counters::default()),
            peers: RwLock::new(BTreeMap::new()),
            peers_version: AtomicU64::new(0),
        }
    }

    pub(crate) fn header(&self) -> pb::Header {
        pb::Header {
            cluster_id: self.config.cluster_id,
            protocol_version: PROTOCOL_VERSION,
            from: self.config.node_id.0,
            from_addr: self.config.advertise_addr.clone(),
        }
    }

    /// Records the address a peer announced, unless one is already known:
    /// addresses given by the operator take precedence.
    pub(crate) fn learn_peer(&self, id: NodeId, addr: &str) {
        let known = self
            .peers
            .read()
            .expect("peer map lock poisoned")
            .contains_key(&id);
        if !known && id != self.config.node_id {
            info!(peer = %id, addr, "learned a peer's address from its traffic");
            self.set_peer(id, addr.to_owned());
        }
    }

    pub(crate) fn set_peer(&self, id: NodeId, addr: String) {
        let mut peers = self.peers.write().expect("peer map lock poisoned");
        if peers.get(&id).is_some_and(|p| p.addr == addr) {
            return;
        }
        match Peer::spawn(
            id,
            addr.clone(),
            &self.config,
            self.header(),
            self.counters.clone(),
        ) {
            Ok(peer) => {
                peers.insert(id, peer);
                self.peers_version.fetch_add(1, Ordering::Release);
            }
            Err(e) => warn!(peer = %id, addr, error = %e, "ignored an unusable peer address"),
        }
    }
}
