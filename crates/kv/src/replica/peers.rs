//! Channels to other members' peer listeners, for forwarding writes to
//! the leader. The Raft configuration records every member's peer
//! address from the start, so a follower can forward as soon as it knows
//! who leads.

use std::collections::HashMap;
use std::sync::Mutex;

use keel::{Node, NodeId, PeerChannel};

use super::machine::RaftMachine;
use crate::error::KvError;

/// One connected channel per member, reused across calls.
#[derive(Default)]
pub(crate) struct PeerChannels {
    channels: Mutex<HashMap<u64, PeerChannel>>,
}

impl PeerChannels {
    /// A channel to member `id`, connected before it is returned so that
    /// a failure to connect is known to have sent nothing: that failure is
    /// `NoLeader`, which the caller may retry.
    pub(crate) async fn connected(
        &self,
        node: &Node<RaftMachine>,
        id: u64,
    ) -> Result<PeerChannel, KvError> {
        let cached = self
            .channels
            .lock()
            .expect("channel map lock poisoned")
            .get(&id)
            .cloned();
        if let Some(channel) = cached {
            return Ok(channel);
        }
        let channel = node.connect_peer(NodeId(id)).await.map_err(|e| {
            tracing::debug!(peer = id, error = %e, "cannot reach the leader's peer listener");
            KvError::NoLeader
        })?;
        self.channels
            .lock()
            .expect("channel map lock poisoned")
            .insert(id, channel.clone());
        Ok(channel)
    }

    /// Forgets the channel to member `id`, e.g. after a call on it failed.
    pub(crate) fn forget(&self, id: u64) {
        self.channels
            .lock()
            .expect("channel map lock poisoned")
            .remove(&id);
    }
}
