//! Forwarding lease calls to the leader, which alone holds lease deadlines.
//! The leader's address comes from the member registry (its client URLs).

use std::collections::HashMap;
use std::sync::Mutex;

use tonic::transport::{Channel, Endpoint};

use crate::error::KvError;
use crate::proto::etcdserverpb::Member;
use crate::proto::etcdserverpb::lease_client::LeaseClient;

#[derive(Default)]
pub struct LeaderForwarder {
    /// One lazily connected channel per leader seen.
    channels: Mutex<HashMap<u64, Channel>>,
}

impl LeaderForwarder {
    /// A Lease client for `leader`, or `NoLeader` if there is none or its
    /// client URL is not known yet.
    pub fn lease_client(
        &self,
        leader: Option<u64>,
        member: impl FnOnce(u64) -> Option<Member>,
    ) -> Result<LeaseClient<Channel>, KvError> {
        let leader = leader.ok_or(KvError::NoLeader)?;
        let mut channels = self.channels.lock().expect("forwarder lock poisoned");
        if let Some(channel) = channels.get(&leader) {
            return Ok(LeaseClient::new(channel.clone()));
        }
        let url = member(leader)
            .and_then(|m| m.client_ur_ls.into_iter().next())
            .ok_or(KvError::NoLeader)?;
        let channel = Endpoint::from_shared(url)
            .map_err(|_| KvError::NoLeader)?
            .connect_lazy();
        channels.insert(leader, channel.clone());
        Ok(LeaseClient::new(channel))
    }
}
