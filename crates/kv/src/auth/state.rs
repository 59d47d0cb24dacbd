//! The replicated auth state and its rules (etcd 3.4's `auth/store.go`):
//! who may do what, and how each auth command changes users and roles.

use std::collections::BTreeMap;

use super::needs::{Access, Need, Required};
use super::ranges::{Interval, any_contains, covers};
use super::tokens::TokenChange;
use crate::proto::authpb::permission::Type as PermType;
use crate::proto::authpb::{Permission, Role, User, UserAddOptions};
use crate::proto::command::Caller;
use crate::proto::command::command::Op;
use crate::rejection::Rejection;

/// The user that must exist, with the root role, before auth is enabled.
pub const ROOT_USER: &str = "root";
/// The role that may do everything, on every key.
pub const ROOT_ROLE: &str = "root";

/// Users, roles and the enabled flag, as every member holds them in memory
/// (rebuilt from the store's tables on open).
#[derive(Clone, Debug, PartialEq)]
pub struct AuthState {
    pub enabled: bool,
    /// Moves on with every change to users or roles (etcd's auth revision;
    /// 1 on a new store). A command checked against an older revision
    /// than apply finds is refused.
    pub revision: u64,
    pub users: BTreeMap<String, User>,
    pub roles: BTreeMap<String, Role>,
}

impl Default for AuthState {
    fn default() -> AuthState {
        AuthState {
            enabled: false,
            revision: 1,
            users: BTreeMap::new(),
            roles: BTreeMap::new(),
        }
    }
}

/// What an applied auth command changed, for the store to write back and
/// for the member's token table.
#[derive(Debug, Default, PartialEq)]
pub struct AuthChanges {
    /// Users whose row must be rewritten, or deleted if they are gone.
    pub users: Vec<String>,
    /// Roles likewise.
    pub roles: Vec<String>,
    /// The enabled flag or the revision moved.
    pub meta: bool,
    pub tokens: Option<TokenChange>,
}

impl AuthState {
    /// The caller an unauthenticated request is checked as.
    pub fn anonymous() -> Caller {
        Caller::default()
    }

    /// Whether `caller` may do what `required` says, by etcd's rules:
    /// anything while auth is off; a member's own commands always; root
    /// everything; others what their roles' permissions cover, checked
    /// against the auth revision they were stamped with.
    /// Whether `caller`'s requests are checked at all: auth is on, and the
    /// caller is not a member acting on its own behalf. What a request
    /// requires (every key a lease holds, for one) need not be worked out
    /// otherwise.
    pub fn checks(&self, caller: &Caller) -> bool {
        self.enabled && !caller.member
    }

    pub fn permit(&self, caller: &Caller, required: &Required) -> Result<(), Rejection> {
        if !self.checks(caller) {
            return Ok(());
        }
        match required {
            Required::Nothing => Ok(()),
            Required::Admin => self.admin(caller),
            Required::Keys(needs) => {
                if caller.auth_revision == 0 {
                    return Err(Rejection::UserEmpty);
                }
                if caller.auth_revision < self.revision {
                    return Err(Rejection::AuthOldRevision);
                }
                let user = self
                    .users
                    .get(&caller.user)
                    .ok_or(Rejection::PermissionDenied)?;
                if has_root_role(user) {
                    return Ok(());
                }
                if needs.iter().all(|need| self.granted(user, need)) {
                    Ok(())
                } else {
                    Err(Rejection::PermissionDenied)
                }
            }
        }
    }

    /// etcd's `IsAdminPermitted`: the caller has the root role.
    fn admin(&self, caller: &Caller) -> Result<(), Rejection> {
        if caller.user.is_empty() {
            return Err(Rejection::UserEmpty);
        }
        let user = self
            .users
            .get(&caller.user)
            .ok_or(Rejection::UserNotFound)?;
        if has_root_role(user) {
            Ok(())
        } else {
            Err(Rejection::PermissionDenied)
        }
    }

    /// Whether `user` may read role `role` (etcd's RoleGet rule: admins
    /// any, others those granted to them).
    pub fn may_get_role(&self, caller: &Caller, role: &str) -> Result<(), Rejection> {
        match self.permit(caller, &Required::Admin) {
            Ok(()) => Ok(()),
            Err(e) => match self.users.get(&caller.user) {
                Some(user) if user.roles.iter().any(|r| r == role) => Ok(()),
                _ => Err(e),
            },
        }
    }

    /// Whether `caller` may read user `name` (etcd's UserGet rule: admins
    /// any, others themselves).
    pub fn may_get_user(&self, caller: &Caller, name: &str) -> Result<(), Rejection> {
        match self.permit(caller, &Required::Admin) {
            Err(_) if caller.user == name => Ok(()),
            other => other,
        }
    }

    fn granted(&self, user: &User, need: &Need) -> bool {
        let granted: Vec<Interval> = user
            .roles
            .iter()
            .filter_map(|name| self.roles.get(name))
            .flat_map(|role| &role.key_permission)
            .filter(|perm| allows(perm, need.access))
            .map(|perm| {
                Interval::of(&perm.key, &perm.range_end)
                    .unwrap_or_else(|| Interval::point(&perm.key))
            })
            .collect();
        match Interval::of(&need.key, &need.range_end) {
            None => any_contains(&granted, &need.key),
            Some(wanted) => covers(&granted, &wanted),
        }
    }

    /// Every refusal an auth command can meet, found before it changes
    /// anything. `Ok` for commands that are not auth commands.
    pub fn check(&self, op: &Op) -> Result<(), Rejection> {
        let user = |name: &str| self.users.get(name).ok_or(Rejection::UserNotFound);
        let role = |name: &str| self.roles.get(name).ok_or(Rejection::RoleNotFound);
        match op {
            Op::AuthEnable(_) if !self.enabled => {
                let root = self
                    .users
                    .get(ROOT_USER)
                    .ok_or(Rejection::RootUserNotExist)?;
                if !has_root_role(root) {
                    return Err(Rejection::RootRoleNotExist);
                }
            }
            Op::Authenticate(_) if !self.enabled => return Err(Rejection::AuthNotEnabled),
            Op::Authenticate(req) => match self.users.get(&req.name) {
                Some(u) if !no_password(u) => {}
                _ => return Err(Rejection::AuthFailed),
            },
            Op::UserAdd(req) if req.name.is_empty() => return Err(Rejection::UserEmpty),
            Op::UserAdd(req) if self.users.contains_key(&req.name) => {
                return Err(Rejection::UserExists);
            }
            Op::UserDelete(req) if self.enabled && req.name == ROOT_USER => {
                return Err(Rejection::InvalidAuthMgmt);
            }
            Op::UserDelete(req) => _ = user(&req.name)?,
            Op::UserChangePassword(req) => _ = user(&req.name)?,
            Op::UserGrantRole(req) => {
                user(&req.user)?;
                if req.role != ROOT_ROLE {
                    role(&req.role)?;
                }
            }
            Op::UserRevokeRole(req)
                if self.enabled && req.name == ROOT_USER && req.role == ROOT_ROLE =>
            {
                return Err(Rejection::InvalidAuthMgmt);
            }
            Op::UserRevokeRole(req) => {
                let granted = user(&req.name)?.roles.contains(&req.role);
                granted.then_some(()).ok_or(Rejection::RoleNotGranted)?;
            }
            Op::RoleAdd(req) if req.name.is_empty() => return Err(Rejection::RoleEmpty),
            Op::RoleAdd(req) if self.roles.contains_key(&req.name) => {
                return Err(Rejection::RoleExists);
            }
            Op::RoleDelete(req) if self.enabled && req.role == ROOT_ROLE => {
                return Err(Rejection::InvalidAuthMgmt);
            }
            Op::RoleDelete(req) => _ = role(&req.role)?,
            Op::RoleGrantPermission(req) => _ = role(&req.name)?,
            Op::RoleRevokePermission(req) => {
                let granted = role(&req.role)?
                    .key_permission
                    .iter()
                    .any(|p| p.key == req.key && p.range_end == req.range_end);
                if !granted {
                    return Err(Rejection::PermissionNotGranted);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Applies an auth command that [`AuthState::check`] accepted;
    /// `index` is its log position (part of an Authenticate's token).
    pub fn apply(&mut self, op: &Op, index: u64) -> AuthChanges {
        let mut changes = AuthChanges::default();
        match op {
            Op::AuthEnable(_) if !self.enabled => {
                // etcd does not move the revision on enable.
                self.enabled = true;
                changes.meta = true;
            }
            Op::AuthDisable(_) if self.enabled => {
                self.enabled = false;
                changes.tokens = Some(TokenChange::DropAll);
                self.changed(&mut changes);
            }
            Op::Authenticate(req) => {
                changes.tokens = Some(TokenChange::Assign {
                    token: format!("{}.{index}", req.token_prefix),
                    user: req.name.clone(),
                });
            }
            Op::UserAdd(req) => {
                let options = req.options.unwrap_or(UserAddOptions { no_password: false });
                let password = if options.no_password {
                    Vec::new()
                } else {
                    req.hashed_password.clone().into_bytes()
                };
                self.users.insert(
                    req.name.clone(),
                    User {
                        name: req.name.clone().into_bytes().into(),
                        password: password.into(),
                        roles: Vec::new(),
                        options: Some(options),
                    },
                );
                changes.users.push(req.name.clone());
                self.changed(&mut changes);
            }
            Op::UserDelete(req) => {
                self.users.remove(&req.name);
                changes.users.push(req.name.clone());
                changes.tokens = Some(TokenChange::DropUser(req.name.clone()));
                self.changed(&mut changes);
            }
            Op::UserChangePassword(req) => {
                if let Some(user) = self.users.get_mut(&req.name) {
                    user.password = req.hashed_password.clone().into_bytes().into();
                }
                changes.users.push(req.name.clone());
                changes.tokens = Some(TokenChange::DropUser(req.name.clone()));
                self.changed(&mut changes);
            }
            Op::UserGrantRole(req) => {
                if let Some(user) = self.users.get_mut(&req.user)
                    && let Err(at) = user.roles.binary_search(&req.role)
                {
                    user.roles.insert(at, req.role.clone());
                    changes.users.push(req.user.clone());
                    self.changed(&mut changes);
                }
            }
            Op::UserRevokeRole(req) => {
                if let Some(user) = self.users.get_mut(&req.name) {
                    user.roles.retain(|r| *r != req.role);
                }
                changes.users.push(req.name.clone());
                self.changed(&mut changes);
            }
            Op::RoleAdd(req) => {
                self.roles.insert(
                    req.name.clone(),
                    Role {
                        name: req.name.clone().into_bytes().into(),
                        key_permission: Vec::new(),
                    },
                );
                changes.roles.push(req.name.clone());
                self.changed(&mut changes);
            }
            Op::RoleDelete(req) => {
                self.roles.remove(&req.role);
                changes.roles.push(req.role.clone());
                for (name, user) in &mut self.users {
                    if user.roles.contains(&req.role) {
                        user.roles.retain(|r| *r != req.role);
                        changes.users.push(name.clone());
                    }
                }
                self.changed(&mut changes);
            }
            Op::RoleGrantPermission(req) => {
                let perm = req.perm.clone().unwrap_or_default();
                if let Some(role) = self.roles.get_mut(&req.name) {
                    let perms = &mut role.key_permission;
                    match perms
                        .iter_mut()
                        .find(|p| p.key == perm.key && p.range_end == perm.range_end)
                    {
                        Some(existing) => existing.perm_type = perm.perm_type,
                        None => {
                            let at = perms.partition_point(|p| p.key <= perm.key);
                            perms.insert(at, perm);
                        }
                    }
                }
                changes.roles.push(req.name.clone());
                self.changed(&mut changes);
            }
            Op::RoleRevokePermission(req) => {
                if let Some(role) = self.roles.get_mut(&req.role) {
                    role.key_permission
                        .retain(|p| p.key != req.key || p.range_end != req.range_end);
                }
                changes.roles.push(req.role.clone());
                self.changed(&mut changes);
            }
            _ => {}
        }
        changes
    }

    fn changed(&mut self, changes: &mut AuthChanges) {
        self.revision += 1;
        changes.meta = true;
    }
}

fn has_root_role(user: &User) -> bool {
    user.roles.iter().any(|r| r == ROOT_ROLE)
}

fn no_password(user: &User) -> bool {
    user.options.is_some_and(|o| o.no_password)
}

/// Whether `perm` grants `access`; an unknown type (a newer format)
/// grants nothing.
fn allows(perm: &Permission, access: Access) -> bool {
    matches!(
        (PermType::try_from(perm.perm_type), access),
        (Ok(PermType::Readwrite), _)
            | (Ok(PermType::Read), Access::Read)
            | (Ok(PermType::Write), Access::Write)
    )
}

#[cfg(test)]
mod checks_tests {
    use super::*;

    #[test]
    fn only_a_client_is_checked_and_only_with_auth_on() {
        let client = Caller {
            user: "alice".into(),
            ..Caller::default()
        };
        let member = Caller {
            member: true,
            ..Caller::default()
        };
        let mut auth = AuthState::default();
        assert!(!auth.checks(&client), "auth is off");
        auth.enabled = true;
        assert!(auth.checks(&client));
        assert!(!auth.checks(&member), "a member acting on its own behalf");
    }
}
