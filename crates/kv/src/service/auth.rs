//! `etcdserverpb.Auth`: users, roles, permissions, enabling auth and
//! authenticating. Changes go through the log (`auth::AuthState` holds the
//! rules, applied in `mvcc/auth.rs`); reads of users and roles are served
//! from the local store after a read barrier.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{Credentials, Shared, mismatch};
use crate::auth::{Required, hash_password, password_matches, token_prefix};
use crate::consensus::Consensus;
use crate::error::KvError;
use crate::proto::command::command::Op;
use crate::proto::command::command_result::Result as Outcome;
use crate::proto::command::{Authenticate, Caller};
use crate::proto::etcdserverpb::auth_server::Auth;
use crate::proto::etcdserverpb::*;
use crate::rejection::Rejection;

/// How many times Authenticate checks the password again when users
/// changed between the check and the entry's apply (etcd retries too).
const AUTHENTICATE_ATTEMPTS_MAX: usize = 3;

pub struct AuthService<C> {
    shared: Arc<Shared<C>>,
}

impl<C> AuthService<C> {
    pub fn new(shared: Arc<Shared<C>>) -> Self {
        AuthService { shared }
    }
}

impl<C: Consensus> AuthService<C> {
    /// Proposes an auth change for the caller with `credentials`; the
    /// header of the answer, at the revision the change applied at.
    async fn change(
        &self,
        credentials: &Credentials,
        op: Op,
    ) -> Result<Option<ResponseHeader>, KvError> {
        let caller = self.shared.caller(credentials).await?;
        let (revision, outcome) = self.shared.propose(&caller, op).await?;
        match outcome {
            Outcome::Done(_) => Ok(Some(self.shared.header(revision))),
            _ => Err(mismatch("auth change")),
        }
    }

    /// The caller with `credentials`, once this member has applied
    /// everything committed, for reads of users and roles.
    async fn reader(&self, credentials: &Credentials) -> Result<Caller, KvError> {
        self.shared.consensus.read_barrier().await?;
        self.shared.caller(credentials).await
    }

    /// Hashes a password off the async threads: bcrypt is slow by design.
    async fn hash(&self, password: String) -> Result<String, KvError> {
        let cost = self.shared.config.bcrypt_cost;
        tokio::task::spawn_blocking(move || hash_password(&password, cost))
            .await
            .map_err(|_| KvError::Stopped)?
            .map_err(|e| {
                tracing::warn!(error = %e, "hashing a password failed");
                KvError::InvalidRequest("the password cannot be hashed")
            })
    }

    fn header(&self) -> Option<ResponseHeader> {
        Some(
            self.shared
                .header(self.shared.sm.store().position().revision),
        )
    }

    async fn authenticate_once(
        &self,
        req: &AuthenticateRequest,
    ) -> Result<(String, bool), KvError> {
        let checked = self.shared.sm.store().with_auth(|auth| {
            if !auth.enabled {
                return Err(KvError::AuthNotEnabled);
            }
            match auth.users.get(&req.name) {
                Some(user) if !user.options.is_some_and(|o| o.no_password) => {
                    Ok((user.password.clone(), auth.revision))
                }
                _ => Err(KvError::AuthFailed),
            }
        });
        let (hash, revision) = checked?;
        let password = req.password.clone();
        let matches = tokio::task::spawn_blocking(move || password_matches(&password, &hash))
            .await
            .map_err(|_| KvError::Stopped)?;
        if !matches {
            return Err(KvError::AuthFailed);
        }
        let op = Op::Authenticate(Authenticate {
            name: req.name.clone(),
            token_prefix: token_prefix(),
        });
        let Outcome::Authenticate(resp) = self.shared.propose(&Caller::default(), op).await?.1
        else {
            return Err(mismatch("authenticate"));
        };
        let unchanged = self.shared.sm.store().with_auth(|auth| auth.revision) == revision;
        Ok((resp.token, unchanged))
    }
}

#[tonic::async_trait]
impl<C: Consensus> Auth for AuthService<C> {
    async fn auth_enable(
        &self,
        request: Request<AuthEnableRequest>,
    ) -> Result<Response<AuthEnableResponse>, Status> {
        let header = self
            .change(
                &Credentials::of(&request),
                Op::AuthEnable(AuthEnableRequest {}),
            )
            .await?;
        Ok(Response::new(AuthEnableResponse { header }))
    }

    async fn auth_disable(
        &self,
        request: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        let header = self
            .change(
                &Credentials::of(&request),
                Op::AuthDisable(AuthDisableRequest {}),
            )
            .await?;
        Ok(Response::new(AuthDisableResponse { header }))
    }

    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let req = request.into_inner();
        self.shared.consensus.read_barrier().await?;
        // A password checked against users that changed before the token
        // was issued (a password change, say) is checked again.
        for _ in 0..AUTHENTICATE_ATTEMPTS_MAX {
            let (token, unchanged) = self.authenticate_once(&req).await?;
            if unchanged {
                return Ok(Response::new(AuthenticateResponse {
                    header: self.header(),
                    token,
                }));
            }
        }
        Err(KvError::AuthOldRevision.into())
    }

    async fn user_add(
        &self,
        request: Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
        let credentials = Credentials::of(&request);
        let mut req = request.into_inner();
        let caller = self.shared.caller(&credentials).await?;
        // Refused callers cost no hashing.
        self.shared.authorize(&caller, &Required::Admin)?;
        if !req.options.is_some_and(|o| o.no_password) {
            req.hashed_password = self.hash(std::mem::take(&mut req.password)).await?;
        }
        req.password.clear();
        let header = self.change(&credentials, Op::UserAdd(req)).await?;
        Ok(Response::new(AuthUserAddResponse { header }))
    }

    async fn user_get(
        &self,
        request: Request<AuthUserGetRequest>,
    ) -> Result<Response<AuthUserGetResponse>, Status> {
        let caller = self.reader(&Credentials::of(&request)).await?;
        let name = &request.get_ref().name;
        let roles = self.shared.sm.store().with_auth(|auth| {
            auth.may_get_user(&caller, name)?;
            auth.users
                .get(name)
                .map(|user| user.roles.clone())
                .ok_or(Rejection::UserNotFound)
        });
        Ok(Response::new(AuthUserGetResponse {
            header: self.header(),
            roles: roles.map_err(KvError::from)?,
        }))
    }

    async fn user_list(
        &self,
        request: Request<AuthUserListRequest>,
    ) -> Result<Response<AuthUserListResponse>, Status> {
        let caller = self.reader(&Credentials::of(&request)).await?;
        let users = self.shared.sm.store().with_auth(|auth| {
            auth.permit(&caller, &Required::Admin)
                .map(|()| auth.users.keys().cloned().collect())
        });
        Ok(Response::new(AuthUserListResponse {
            header: self.header(),
            users: users.map_err(KvError::from)?,
        }))
    }

    async fn user_delete(
        &self,
        request: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        let credentials = Credentials::of(&request);
        let req = request.into_inner();
        let header = self.change(&credentials, Op::UserDelete(req)).await?;
        Ok(Response::new(AuthUserDeleteResponse { header }))
    }

    async fn user_change_password(
        &self,
        request: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        let credentials = Credentials::of(&request);
        let mut req = request.into_inner();
        let caller = self.shared.caller(&credentials).await?;
        self.shared.authorize(&caller, &Required::Admin)?;
        req.hashed_password = self.hash(std::mem::take(&mut req.password)).await?;
        let header = self
            .change(&credentials, Op::UserChangePassword(req))
            .await?;
        Ok(Response::new(AuthUserChangePasswordResponse { header }))
    }

    async fn user_grant_role(
        &self,
        request: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        let credentials = Credentials::of(&request);
        let req = request.into_inner();
        let header = self.change(&credentials, Op::UserGrantRole(req)).await?;
        Ok(Response::new(AuthUserGrantRoleResponse { header }))
    }

    async fn user_revoke_role(
        &self,
        request: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        let credentials = Credentials::of(&request);
        let req = request.into_inner();
        let header = self.change(&credentials, Op::UserRevokeRole(req)).await?;
        Ok(Response::new(AuthUserRevokeRoleResponse { header }))
    }

    async fn role_add(
        &self,
        request: Request<AuthRoleAddRequest>,
    ) -> Result<Response<AuthRoleAddResponse>, Status> {
        let credentials = Credentials::of(&request);
        let req = request.into_inner();
        let header = self.change(&credentials, Op::RoleAdd(req)).await?;
        Ok(Response::new(AuthRoleAddResponse { header }))
    }

    async fn role_get(
        &self,
        request: Request<AuthRoleGetRequest>,
    ) -> Result<Response<AuthRoleGetResponse>, Status> {
        let caller = self.reader(&Credentials::of(&request)).await?;
        let name = &request.get_ref().role;
        let perm = self.shared.sm.store().with_auth(|auth| {
            auth.may_get_role(&caller, name)?;
            auth.roles
                .get(name)
                .map(|role| role.key_permission.clone())
                .ok_or(Rejection::RoleNotFound)
        });
        Ok(Response::new(AuthRoleGetResponse {
            header: self.header(),
            perm: perm.map_err(KvError::from)?,
        }))
    }

    async fn role_list(
        &self,
        request: Request<AuthRoleListRequest>,
    ) -> Result<Response<AuthRoleListResponse>, Status> {
        let caller = self.reader(&Credentials::of(&request)).await?;
        let roles = self.shared.sm.store().with_auth(|auth| {
            auth.permit(&caller, &Required::Admin)
                .map(|()| auth.roles.keys().cloned().collect())
        });
        Ok(Response::new(AuthRoleListResponse {
            header: self.header(),
            roles: roles.map_err(KvError::from)?,
        }))
    }

    async fn role_delete(
        &self,
        request: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        let credentials = Credentials::of(&request);
        let req = request.into_inner();
        let header = self.change(&credentials, Op::RoleDelete(req)).await?;
        Ok(Response::new(AuthRoleDeleteResponse { header }))
    }

    async fn role_grant_permission(
        &self,
        request: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        let credentials = Credentials::of(&request);
        let req = request.into_inner();
        let header = self
            .change(&credentials, Op::RoleGrantPermission(req))
            .await?;
        Ok(Response::new(AuthRoleGrantPermissionResponse { header }))
    }

    async fn role_revoke_permission(
        &self,
        request: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        let credentials = Credentials::of(&request);
        let req = request.into_inner();
        let header = self
            .change(&credentials, Op::RoleRevokePermission(req))
            .await?;
        Ok(Response::new(AuthRoleRevokePermissionResponse { header }))
    }
}
