//! Applying auth commands: the rules live in `auth::AuthState`; this
//! writes what they changed into the batch's redb transaction.

use prost::Message;

use super::apply_error::ApplyError;
use super::write::Writer;
use crate::auth::TokenChange;
use crate::error::KvError;
use crate::proto::command::Empty;
use crate::proto::command::command::Op;
use crate::proto::command::command_result::Result as Outcome;
use crate::proto::etcdserverpb::AuthenticateResponse;

impl Writer<'_, '_> {
    /// Applies an auth command that `AuthState::check` accepted.
    pub fn auth(&mut self, op: &Op) -> Result<Outcome, ApplyError> {
        let changes = self.state.auth.apply(op, self.index());
        for name in &changes.users {
            match self.state.auth.users.get(name) {
                Some(user) => self
                    .tables
                    .auth_users()?
                    .insert(name.as_str(), user.encode_to_vec().as_slice())
                    .map(drop),
                None => self.tables.auth_users()?.remove(name.as_str()).map(drop),
            }
            .map_err(KvError::storage)?;
        }
        for name in &changes.roles {
            match self.state.auth.roles.get(name) {
                Some(role) => self
                    .tables
                    .auth_roles()?
                    .insert(name.as_str(), role.encode_to_vec().as_slice())
                    .map(drop),
                None => self.tables.auth_roles()?.remove(name.as_str()).map(drop),
            }
            .map_err(KvError::storage)?;
        }
        let outcome = match &changes.tokens {
            Some(TokenChange::Assign { token, .. }) => {
                Outcome::Authenticate(AuthenticateResponse {
                    header: self.header(),
                    token: token.clone(),
                })
            }
            _ => Outcome::Done(Empty {}),
        };
        self.token_change = changes.tokens;
        Ok(outcome)
    }
}
