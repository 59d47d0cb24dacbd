//! Who sent a request: the user named by its `token` metadata (etcd's
//! simple token); failing that, with `--client-cert-auth`, the common name
//! of the client certificate its connection verified; or nobody. The
//! caller is stamped on every command this member proposes for the
//! request, with the auth revision it was checked against.

use keel::tls::ConnInfo;
use tonic::Request;
use tonic::metadata::{Ascii, MetadataValue};

use super::Shared;
use crate::auth::TokenLookup;
use crate::consensus::Consensus;
use crate::error::KvError;
use crate::proto::command::Caller;

/// The metadata keys a token may come in (etcd's gRPC and gateway names).
const TOKEN_KEYS: [&str; 2] = ["token", "authorization"];

/// The header etcd's gRPC gateway adds to the calls it relays. Such a call
/// comes over the gateway's own client certificate, so etcd never takes
/// that certificate's name as the user; nor does Keel (which has no
/// gateway): a client that sends it is not authenticated by certificate.
const GATEWAY_HEADER: &str = "grpcgateway-accept";

/// What a request offers to say who sent it, taken from it before the
/// handler consumes it (a streaming request's body is not `Sync`, so the
/// request itself cannot be held across an `await`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Credentials {
    token: Option<MetadataValue<Ascii>>,
    /// The verified client certificate's common name, unless the request
    /// came through a gateway.
    common_name: Option<String>,
}

impl Credentials {
    pub(crate) fn of<T>(request: &Request<T>) -> Credentials {
        let metadata = request.metadata();
        let token = TOKEN_KEYS
            .iter()
            .find_map(|key| metadata.get(*key))
            .cloned();
        let common_name = if metadata.contains_key(GATEWAY_HEADER) {
            None
        } else {
            request
                .extensions()
                .get::<ConnInfo>()
                .and_then(|conn| conn.client_common_name.clone())
        };
        Credentials { token, common_name }
    }

    /// `message` as a request to relay to the leader's client URL on the
    /// caller's behalf, carrying the caller's token, so that the leader
    /// checks the same user. (A caller known by its certificate alone is
    /// not: the relayed call presents this member's certificate. Such a
    /// caller's membership calls must go to the leader, or carry a token.)
    pub(crate) fn relay<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(token) = &self.token {
            request.metadata_mut().insert(TOKEN_KEYS[0], token.clone());
        }
        request
    }
}

impl<C: Consensus> Shared<C> {
    /// The caller of a request with `credentials`, by etcd's rules: a
    /// token, when there is one, decides (an unknown one is an error,
    /// never a fallback to the certificate). A token this member does not
    /// know yet but whose Authenticate entry lies ahead of its applied
    /// index (it was issued by a member further on) is looked up again
    /// after a read barrier, which applies everything committed: a token
    /// from any member works here, as in etcd. Without a token, and only
    /// with `--client-cert-auth`, the certificate's common name is the
    /// user (etcd 3.4's `AuthInfoFromTLS`); it need not name an existing
    /// user, which then has no permission.
    pub(crate) async fn caller(&self, credentials: &Credentials) -> Result<Caller, KvError> {
        let store = self.sm.store();
        let Some(token) = &credentials.token else {
            return Ok(match &credentials.common_name {
                Some(name) if self.config.client_cert_auth && !name.is_empty() => Caller {
                    user: name.clone(),
                    auth_revision: store.with_auth(|auth| auth.revision),
                    member: false,
                },
                _ => Caller::default(),
            });
        };
        let token = token.to_str().map_err(|_| KvError::InvalidAuthToken)?;
        let user = match self
            .sm
            .tokens()
            .lookup(token, store.position().applied_index)
        {
            TokenLookup::User(user) => user,
            TokenLookup::NotYetApplied(_) => {
                self.consensus.read_barrier().await?;
                match self
                    .sm
                    .tokens()
                    .lookup(token, store.position().applied_index)
                {
                    TokenLookup::User(user) => user,
                    _ => return Err(KvError::InvalidAuthToken),
                }
            }
            TokenLookup::Invalid => return Err(KvError::InvalidAuthToken),
        };
        Ok(Caller {
            user,
            auth_revision: store.with_auth(|auth| auth.revision),
            member: false,
        })
    }
}
