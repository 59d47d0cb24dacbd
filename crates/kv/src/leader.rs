//! Reaching the leader's client URL, for etcd calls only the leader can
//! answer (lease keep-alives, membership changes), which a follower relays
//! as etcd's own API calls. The leader's URL comes from the member
//! registry, which every member publishes into when it starts. (Writes a
//! follower forwards do not come this way: they go to the leader's peer
//! listener, `replica/peers.rs`.)

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use keel::tls::ClientTls;
use tonic::transport::{Channel, Endpoint};

use crate::error::KvError;
use crate::proto::etcdserverpb::Member;

/// How long connecting to the leader may take before the call gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// One channel per leader seen, reused across calls.
#[derive(Default)]
pub struct LeaderChannels {
    channels: Mutex<HashMap<u64, Channel>>,
    /// For leaders whose client URL is `https://`.
    tls: Option<ClientTls>,
}

impl LeaderChannels {
    /// Channels speaking TLS with `tls` to `https://` client URLs.
    pub fn new(tls: Option<ClientTls>) -> LeaderChannels {
        LeaderChannels {
            channels: Mutex::default(),
            tls,
        }
    }

    /// A lazily connected channel to `leader`'s first client URL, found with
    /// `member`. `NoLeader` if there is no leader or its URL is not
    /// registered yet (it publishes it right after it starts).
    pub fn lazy(
        &self,
        leader: Option<u64>,
        member: impl FnOnce(u64) -> Option<Member>,
    ) -> Result<Channel, KvError> {
        let leader = leader.ok_or(KvError::NoLeader)?;
        let mut channels = self.channels.lock().expect("channel map lock poisoned");
        if let Some(channel) = channels.get(&leader) {
            return Ok(channel.clone());
        }
        let channel = channel(member(leader), self.tls.as_ref())?;
        channels.insert(leader, channel.clone());
        Ok(channel)
    }
}

/// A lazily connected channel to `member`'s first client URL, over TLS
/// for an `https://` one.
fn channel(member: Option<Member>, tls: Option<&ClientTls>) -> Result<Channel, KvError> {
    let url = member
        .and_then(|m| m.client_ur_ls.into_iter().next())
        .ok_or(KvError::NoLeader)?;
    match tls {
        Some(tls) if url.starts_with("https://") => Ok(tls.connect_lazy(
            ClientTls::endpoint(&url)
                .map_err(|_| KvError::NoLeader)?
                .connect_timeout(CONNECT_TIMEOUT),
        )),
        // Without client TLS settings the call fails at connection time,
        // as any call to an unreachable leader does.
        _ => Ok(Endpoint::from_shared(url)
            .map_err(|_| KvError::NoLeader)?
            .connect_timeout(CONNECT_TIMEOUT)
            .connect_lazy()),
    }
}
