//! [`ClusterObserver`]: one round of `Observe/Status` calls to every member
//! of the configuration this member knows.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use keel::{Node, NodeId};
use tonic::Code;

use super::status::{db_size_bytes, member_status};
use crate::proto::command::observe_client::ObserveClient;
use crate::proto::command::{MemberStatus, StatusRequest};
use crate::replica::{PeerChannels, RaftMachine};

/// What one round of asking found.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterSnapshot {
    /// The member that asked.
    pub observer: u64,
    /// Every member of the observer's configuration, itself first, then
    /// by id.
    pub members: Vec<MemberReport>,
}

/// One member's answer, or why there was none.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberReport {
    pub id: u64,
    /// `Err` says why the member is taken for down: it could not be
    /// reached, did not answer within the round's timeout, or said it
    /// stopped.
    pub status: Result<MemberStatus, String>,
}

/// Asks every member for its status. Cheap to clone; channels to the
/// other members are kept between rounds and dropped after a failed call,
/// so that a restarted member is reached again.
#[derive(Clone)]
pub struct ClusterObserver {
    node: Node<RaftMachine>,
    name: String,
    db_path: PathBuf,
    channels: Arc<PeerChannels>,
}

impl fmt::Debug for ClusterObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterObserver")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ClusterObserver {
    pub(crate) fn new(node: Node<RaftMachine>, name: String, db_path: PathBuf) -> ClusterObserver {
        ClusterObserver {
            node,
            name,
            db_path,
            channels: Arc::new(PeerChannels::default()),
        }
    }

    /// One round: this member's status read in process, every other
    /// member's asked for at once, each within `timeout`.
    pub async fn gather(&self, timeout: Duration) -> ClusterSnapshot {
        let metrics = self.node.metrics().borrow().clone();
        let me = metrics.id;
        let own = match &metrics.stopped {
            Some(reason) => Err(format!("stopped: {reason}")),
            None => Ok(member_status(
                &self.name,
                &metrics,
                db_size_bytes(&self.db_path),
            )),
        };
        let others = metrics
            .membership
            .nodes()
            .into_iter()
            .filter(|id| *id != me);
        let asked = join_all(others.map(|id| self.ask(id, timeout)));
        let mut members = vec![MemberReport {
            id: me.0,
            status: own,
        }];
        members.extend(asked.await);
        ClusterSnapshot {
            observer: me.0,
            members,
        }
    }

    /// The other members of the configuration, by ID; `None` once the
    /// node stopped.
    pub(crate) fn peers(&self) -> Option<Vec<u64>> {
        let metrics = self.node.metrics().borrow().clone();
        if metrics.stopped.is_some() {
            return None;
        }
        let me = metrics.id;
        Some(
            metrics
                .membership
                .nodes()
                .into_iter()
                .filter(|id| *id != me)
                .map(|id| id.0)
                .collect(),
        )
    }

    /// How long member `id` took to answer a status request, if it
    /// answered within `timeout`.
    pub(crate) async fn round_trip(&self, id: u64, timeout: Duration) -> Option<Duration> {
        let id = NodeId(id);
        // Connecting is not part of a round trip: a new or broken
        // connection is made first.
        let channel = self.channels.connected(&self.node, id.0).await.ok()?;
        let mut client = ObserveClient::new(channel);
        let started = tokio::time::Instant::now();
        match tokio::time::timeout(timeout, client.status(StatusRequest {})).await {
            Ok(Ok(_)) => Some(started.elapsed()),
            _ => {
                self.channels.forget(id.0);
                None
            }
        }
    }

    async fn ask(&self, id: NodeId, timeout: Duration) -> MemberReport {
        let status = match tokio::time::timeout(timeout, self.call(id)).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        };
        if status.is_err() {
            self.channels.forget(id.0);
        }
        MemberReport { id: id.0, status }
    }

    async fn call(&self, id: NodeId) -> Result<MemberStatus, String> {
        let channel = self
            .channels
            .connected(&self.node, id.0)
            .await
            .map_err(|_| "unreachable".to_owned())?;
        let mut client = ObserveClient::new(channel);
        match client.status(StatusRequest {}).await {
            Ok(reply) => Ok(reply.into_inner()),
            Err(status) if status.code() == Code::Unimplemented => {
                Err("runs a build without Observe/Status".to_owned())
            }
            // A dead connection says so in transport terms; the page says
            // it the way the connect failure above does.
            Err(status) if status.code() == Code::Unavailable => Err("unreachable".to_owned()),
            Err(status) => Err(status.message().to_owned()),
        }
    }
}
