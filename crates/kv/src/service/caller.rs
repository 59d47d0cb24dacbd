//! Who sent a request: the user named by the `token` metadata (etcd's
//! simple token), or nobody. The caller is stamped on every command this
//! member proposes for the request, with the auth revision it was checked
//! against.

use tonic::metadata::MetadataMap;

use super::Shared;
use crate::auth::TokenLookup;
use crate::consensus::Consensus;
use crate::error::KvError;
use crate::proto::command::Caller;

/// The metadata keys a token may come in (etcd's gRPC and gateway names).
const TOKEN_KEYS: [&str; 2] = ["token", "authorization"];

impl<C: Consensus> Shared<C> {
    /// The caller of a request with `metadata`. A token this member does
    /// not know yet but whose Authenticate entry lies ahead of its applied
    /// index (it was issued by a member further on) is looked up again
    /// after a read barrier, which applies everything committed: a token
    /// from any member works here, as in etcd.
    pub(crate) async fn caller(&self, metadata: &MetadataMap) -> Result<Caller, KvError> {
        let Some(token) = TOKEN_KEYS
            .iter()
            .find_map(|key| metadata.get(*key))
            .map(|value| value.to_str().map_err(|_| KvError::InvalidAuthToken))
            .transpose()?
        else {
            return Ok(Caller::default());
        };
        let store = self.sm.store();
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
