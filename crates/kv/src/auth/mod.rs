//! etcd's authentication and authorization: users, roles, permissions on
//! key ranges, and simple tokens.
//!
//! The auth *state* (users, roles, the enabled flag and the auth revision)
//! is replicated: every change is a command in the Raft log, applied in the
//! store's redb transaction (`mvcc/auth.rs`) and carried by snapshots.
//! *Tokens* are member-local, as etcd's simple tokens are: an Authenticate
//! command names the user and the token's random part, and every member
//! that applies it learns the token, so a token obtained from one member
//! works on all of them.
//!
//! Permissions are checked twice, as etcd checks them: by the member that
//! receives a request, before it proposes anything, and again when the
//! command applies, against the auth state at the command's position in
//! the log. A command checked against an older auth revision than the one
//! it meets at apply is refused (etcd's "revision of auth store is old"),
//! so a revoked permission takes effect at one log position on every
//! member.

mod needs;
mod password;
mod ranges;
mod state;
mod tokens;

pub use needs::{Access, Need, Required};
pub use password::{BCRYPT_COST_DEFAULT, PasswordError, hash_password, password_matches};
pub use state::AuthChanges;
pub use state::{AuthState, ROOT_ROLE, ROOT_USER};
pub use tokens::{SimpleTokens, TOKEN_TTL_DEFAULT, TokenChange, TokenLookup, token_prefix};
