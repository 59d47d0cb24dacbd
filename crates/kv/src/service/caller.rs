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
/// that certificate's name as the user; nor does Keel: a client that
/// sends it is not authenticated by certificate. (Keel's own gateway,
/// `server/gateway.rs`, calls the services in process with no connection
/// information, so its calls never are either.)
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tonic::transport::server::TcpConnectInfo;

    use super::*;
    use crate::local::LocalConsensus;
    use crate::service::ServiceConfig;
    use crate::state_machine::KvStateMachine;

    /// A member whose `--client-cert-auth` is `client_cert_auth`.
    fn member(client_cert_auth: bool) -> Arc<Shared<LocalConsensus>> {
        let sm = KvStateMachine::in_memory().unwrap();
        let consensus = Arc::new(LocalConsensus::new(sm.clone(), 1, 1));
        let config = ServiceConfig {
            client_cert_auth,
            ..ServiceConfig::new(std::env::temp_dir())
        };
        Shared::new(sm, consensus, config)
    }

    #[tokio::test]
    async fn without_a_token_the_certificate_names_the_user_only_with_client_cert_auth() {
        let alice = Credentials::of(&request(None, Some("alice"), false));
        let caller = member(true).caller(&alice).await.unwrap();
        assert_eq!(
            caller,
            Caller {
                user: "alice".into(),
                auth_revision: 1,
                member: false,
            }
        );
        // `--trusted-ca-file` alone verifies certificates but, as in etcd,
        // does not make their names users.
        let caller = member(false).caller(&alice).await.unwrap();
        assert_eq!(caller, Caller::default());
        let nameless = Credentials::of(&request(None, Some(""), false));
        let caller = member(true).caller(&nameless).await.unwrap();
        assert_eq!(caller, Caller::default());
    }

    #[tokio::test]
    async fn a_token_decides_even_when_it_is_unknown() {
        let credentials = Credentials::of(&request(Some("nope.1"), Some("alice"), false));
        let refused = member(true).caller(&credentials).await.unwrap_err();
        assert!(matches!(refused, KvError::InvalidAuthToken), "{refused:?}");
    }

    fn request(token: Option<&str>, common_name: Option<&str>, gateway: bool) -> Request<()> {
        let mut request = Request::new(());
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("token", token.parse().unwrap());
        }
        if gateway {
            request
                .metadata_mut()
                .insert(GATEWAY_HEADER, "application/json".parse().unwrap());
        }
        request.extensions_mut().insert(ConnInfo {
            tcp: TcpConnectInfo {
                local_addr: None,
                remote_addr: None,
            },
            client_common_name: common_name.map(str::to_owned),
        });
        request
    }

    #[test]
    fn the_certificate_name_is_kept_unless_the_call_came_through_a_gateway() {
        let plain = Credentials::of(&request(None, Some("alice"), false));
        assert_eq!(plain.common_name.as_deref(), Some("alice"));
        assert!(plain.token.is_none());
        let relayed = Credentials::of(&request(None, Some("alice"), true));
        assert_eq!(relayed.common_name, None);
        let unknown_connection = Credentials::of(&Request::new(()));
        assert_eq!(unknown_connection.common_name, None);
    }

    #[test]
    fn a_relayed_call_carries_the_token_and_nothing_else() {
        let credentials = Credentials::of(&request(Some("abc.7"), Some("alice"), false));
        let relayed = credentials.relay(());
        assert_eq!(relayed.metadata().get("token").unwrap(), "abc.7");
        assert!(relayed.extensions().get::<ConnInfo>().is_none());
        let without = Credentials::of(&request(None, Some("alice"), false)).relay(());
        assert!(without.metadata().get("token").is_none());
    }
}
