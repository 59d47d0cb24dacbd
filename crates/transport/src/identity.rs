//! Who may call a node's peer listener: one check for every call that
//! arrives there, Raft's own and the application's.
//!
//! Raft calls carry a [`pb::Header`] in their body. Calls to the services
//! an application serves next to Raft ([`PeerServices`]) carry the same
//! header, encoded, in the `keel-peer-header-bin` metadata entry:
//! [`IdentityStamp`] adds it on the sending side, `IdentityCheck` reads it
//! on the receiving side. Both kinds end in [`check_header`], so traffic
//! from another cluster, another protocol version or node id 0 is refused
//! the same way, with the same log line and metric, whatever it calls.
//!
//! The header is an identity, not a credential: it keeps members of
//! different clusters (or a stray client) from acting on each other by
//! mistake. Keeping strangers off the peer port takes TLS with required
//! peer certificates (`tls/`, `TransportConfig::tls`), which refuses them
//! during the handshake, before this check; without it, that is the
//! network's job, as with etcd's peer port.

use std::sync::Arc;

use keel_raft::NodeId;
use prost::Message as _;
use tonic::codegen::http;
use tonic::metadata::{BinaryMetadataValue, MetadataValue};
use tonic::server::NamedService;
use tonic::service::interceptor::InterceptedService;
use tonic::service::{Interceptor, Routes};
use tonic::transport::Channel;
use tonic::{Request, Status};
use tracing::warn;

use crate::config::PROTOCOL_VERSION;
use crate::metrics::bump;
use crate::pb;
use crate::shared::Shared;

/// The metadata entry holding the encoded [`pb::Header`] of a call to an
/// application's peer service (binary: the `-bin` suffix is gRPC's rule).
const HEADER_METADATA_KEY: &str = "keel-peer-header-bin";

/// The node that made a call to an application's peer service, as its
/// checked header names it; found in the request's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCaller(pub NodeId);

/// Refuses calls from another cluster or protocol version, or from node
/// id 0; learns the sender's address. Returns the sender.
pub(crate) fn check_header(shared: &Shared, header: Option<&pb::Header>) -> Result<NodeId, Status> {
    let counters = &shared.counters;
    let config = &shared.config;
    let Some(header) = header else {
        bump(&counters.rejected_malformed);
        warn!("refused a call without a header");
        return Err(Status::invalid_argument("missing header"));
    };
    if header.cluster_id != config.cluster_id {
        bump(&counters.rejected_wrong_cluster);
        warn!(
            their_cluster = header.cluster_id,
            our_cluster = config.cluster_id,
            from = header.from,
            from_addr = %header.from_addr,
            "refused traffic from another cluster"
        );
        return Err(Status::failed_precondition(format!(
            "this node belongs to cluster {}, not {}",
            config.cluster_id, header.cluster_id
        )));
    }
    if header.protocol_version != PROTOCOL_VERSION {
        bump(&counters.rejected_wrong_version);
        warn!(
            their_version = header.protocol_version,
            our_version = PROTOCOL_VERSION,
            from = header.from,
            "refused traffic speaking another protocol version"
        );
        return Err(Status::failed_precondition(format!(
            "this node speaks protocol version {PROTOCOL_VERSION}, not {}",
            header.protocol_version
        )));
    }
    if header.from == 0 {
        bump(&counters.rejected_malformed);
        warn!(from_addr = %header.from_addr, "refused a call from node id 0");
        return Err(Status::invalid_argument("header.from is 0"));
    }
    let from = NodeId(header.from);
    if !header.from_addr.is_empty() {
        shared.learn_peer(from, &header.from_addr);
    }
    Ok(from)
}

/// Stamps outgoing calls with a node's identity, for the receiver's
/// `IdentityCheck`. [`crate::Transport::connect`] hands out channels that
/// carry it; build one directly only to speak for a node elsewhere (tests,
/// tools).
#[derive(Clone, Debug)]
pub struct IdentityStamp {
    header: BinaryMetadataValue,
}

impl IdentityStamp {
    /// The identity of node `from` of cluster `cluster_id`, reachable at
    /// `from_addr` ("host:port"; empty if it accepts no calls), speaking
    /// this build's protocol version.
    pub fn new(cluster_id: u64, from: NodeId, from_addr: impl Into<String>) -> IdentityStamp {
        IdentityStamp::of(&pb::Header {
            cluster_id,
            protocol_version: PROTOCOL_VERSION,
            from: from.0,
            from_addr: from_addr.into(),
        })
    }

    pub(crate) fn of(header: &pb::Header) -> IdentityStamp {
        IdentityStamp {
            header: MetadataValue::from_bytes(&header.encode_to_vec()),
        }
    }
}

impl Interceptor for IdentityStamp {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert_bin(HEADER_METADATA_KEY, self.header.clone());
        Ok(request)
    }
}

/// A channel to a peer's listener whose every call carries this node's
/// identity; wrap it in the generated client of a service the peer serves
/// through [`PeerServices`].
pub type PeerChannel = InterceptedService<Channel, IdentityStamp>;

/// Checks the identity of calls to an application's peer service, with
/// the same [`check_header`] as Raft calls.
#[derive(Clone)]
pub(crate) struct IdentityCheck {
    shared: Arc<Shared>,
}

impl Interceptor for IdentityCheck {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let header = match request.metadata().get_bin(HEADER_METADATA_KEY) {
            None => None,
            Some(value) => {
                let decoded = value
                    .to_bytes()
                    .ok()
                    .and_then(|bytes| pb::Header::decode(bytes).ok());
                if decoded.is_none() {
                    bump(&self.shared.counters.rejected_malformed);
                    warn!("refused a call whose identity header does not decode");
                    return Err(Status::invalid_argument("malformed identity header"));
                }
                decoded
            }
        };
        let from = check_header(&self.shared, header.as_ref())?;
        request.extensions_mut().insert(PeerCaller(from));
        Ok(request)
    }
}

/// The services an application serves on the peer listener next to Raft
/// (e.g. a follower forwarding writes to the leader). Start from
/// [`crate::Transport::peer_services`]. Every service added here sits
/// behind the identity check, so none can be reached without it.
pub struct PeerServices {
    routes: Routes,
    check: IdentityCheck,
}

impl PeerServices {
    pub(crate) fn new(shared: Arc<Shared>) -> PeerServices {
        PeerServices {
            routes: Routes::default(),
            check: IdentityCheck { shared },
        }
    }

    /// Adds a tonic service (a generated `...Server`), behind the identity
    /// check. Its handlers find the caller as a [`PeerCaller`] in the
    /// request's extensions.
    pub fn add_service<S>(self, service: S) -> PeerServices
    where
        S: tonic::codegen::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let checked = InterceptedService::new(service, self.check.clone());
        PeerServices {
            routes: self.routes.add_service(checked),
            check: self.check,
        }
    }

    pub(crate) fn into_routes(self) -> Routes {
        self.routes
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;
    use crate::{Transport, TransportConfig};

    const CLUSTER: u64 = 7;

    fn check() -> IdentityCheck {
        let config = TransportConfig::new(CLUSTER, NodeId(1), "127.0.0.1:1");
        Transport::new(config).peer_services().check
    }

    fn stamped(stamp: IdentityStamp) -> Request<()> {
        let mut stamp = stamp;
        stamp.call(Request::new(())).expect("stamping never fails")
    }

    #[test]
    fn stamped_call_passes_and_names_its_caller() {
        let request = stamped(IdentityStamp::new(CLUSTER, NodeId(2), ""));
        let checked = check().call(request).expect("same cluster passes");
        assert_eq!(
            checked.extensions().get::<PeerCaller>(),
            Some(&PeerCaller(NodeId(2)))
        );
    }

    #[test]
    fn call_from_another_cluster_is_refused_like_raft_traffic() {
        let transport = Transport::new(TransportConfig::new(CLUSTER, NodeId(1), "127.0.0.1:1"));
        let mut check = transport.peer_services().check;
        let request = stamped(IdentityStamp::new(CLUSTER + 1, NodeId(2), ""));
        let refused = check.call(request).expect_err("another cluster");
        assert_eq!(refused.code(), Code::FailedPrecondition);
        assert_eq!(transport.metrics().rejected_wrong_cluster, 1);
    }

    #[test]
    fn call_from_node_zero_is_refused() {
        let request = stamped(IdentityStamp::new(CLUSTER, NodeId(0), ""));
        let refused = check().call(request).expect_err("node id 0");
        assert_eq!(refused.code(), Code::InvalidArgument);
    }

    #[test]
    fn call_without_identity_or_with_garbage_is_refused() {
        let refused = check().call(Request::new(())).expect_err("no header");
        assert_eq!(refused.code(), Code::InvalidArgument);

        let mut garbage = Request::new(());
        garbage.metadata_mut().insert_bin(
            HEADER_METADATA_KEY,
            BinaryMetadataValue::from_bytes(&[0xff; 7]),
        );
        let refused = check().call(garbage).expect_err("undecodable header");
        assert_eq!(refused.code(), Code::InvalidArgument);
    }
}
