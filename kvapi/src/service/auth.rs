//! The Auth service, answering as etcd does while authentication is disabled and no user or
//! role exists.
//!
//! etcd lets users and roles be managed while auth is disabled (the root user is created before
//! auth is enabled). Cairn has no auth store yet, so its store is always empty and cannot be
//! written: reads answer as etcd does for an empty store, creations answer "not capable", and
//! everything that names a user or role answers that it does not exist.
//!
//! | call | answer |
//! |------|--------|
//! | AuthStatus | enabled: false |
//! | AuthDisable | success (already disabled) |
//! | AuthEnable | FailedPrecondition "etcdserver: root user does not exist" |
//! | Authenticate | FailedPrecondition "etcdserver: authentication is not enabled" |
//! | UserList / RoleList | empty lists |
//! | UserAdd / RoleAdd, empty name | InvalidArgument "etcdserver: user/role name is empty" |
//! | UserAdd / RoleAdd | FailedPrecondition "etcdserver: not capable" |
//! | other user calls | FailedPrecondition "etcdserver: user name not found" |
//! | other role calls | FailedPrecondition "etcdserver: role name not found" |

use tonic::{Request, Response, Status};

use crate::context::Ctx;
use crate::pb::etcdserverpb::{self as pb, auth_server::Auth};
use crate::status::EtcdError;

pub struct AuthService {
    ctx: Ctx,
}

impl AuthService {
    pub fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }

    fn header(&self) -> pb::ResponseHeader {
        self.ctx.header_without_revision()
    }
}

type AuthResult<T> = Result<Response<T>, Status>;

fn fail<T>(err: EtcdError) -> AuthResult<T> {
    Err(err.into())
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        _r: Request<pb::AuthEnableRequest>,
    ) -> AuthResult<pb::AuthEnableResponse> {
        fail(EtcdError::RootUserNotExist)
    }

    async fn auth_disable(
        &self,
        _r: Request<pb::AuthDisableRequest>,
    ) -> AuthResult<pb::AuthDisableResponse> {
        Ok(Response::new(pb::AuthDisableResponse {
            header: Some(self.header()),
        }))
    }

    async fn auth_status(
        &self,
        _r: Request<pb::AuthStatusRequest>,
    ) -> AuthResult<pb::AuthStatusResponse> {
        Ok(Response::new(pb::AuthStatusResponse {
            header: Some(self.header()),
            enabled: false,
            auth_revision: 0,
        }))
    }

    async fn authenticate(
        &self,
        _r: Request<pb::AuthenticateRequest>,
    ) -> AuthResult<pb::AuthenticateResponse> {
        fail(EtcdError::AuthNotEnabled)
    }

    async fn user_add(
        &self,
        r: Request<pb::AuthUserAddRequest>,
    ) -> AuthResult<pb::AuthUserAddResponse> {
        if r.get_ref().name.is_empty() {
            return fail(EtcdError::UserEmpty);
        }
        fail(EtcdError::NotCapable)
    }

    async fn user_get(
        &self,
        _r: Request<pb::AuthUserGetRequest>,
    ) -> AuthResult<pb::AuthUserGetResponse> {
        fail(EtcdError::UserNotFound)
    }

    async fn user_list(
        &self,
        _r: Request<pb::AuthUserListRequest>,
    ) -> AuthResult<pb::AuthUserListResponse> {
        Ok(Response::new(pb::AuthUserListResponse {
            header: Some(self.header()),
            users: Vec::new(),
        }))
    }

    async fn user_delete(
        &self,
        _r: Request<pb::AuthUserDeleteRequest>,
    ) -> AuthResult<pb::AuthUserDeleteResponse> {
        fail(EtcdError::UserNotFound)
    }

    async fn user_change_password(
        &self,
        _r: Request<pb::AuthUserChangePasswordRequest>,
    ) -> AuthResult<pb::AuthUserChangePasswordResponse> {
        fail(EtcdError::UserNotFound)
    }

    async fn user_grant_role(
        &self,
        _r: Request<pb::AuthUserGrantRoleRequest>,
    ) -> AuthResult<pb::AuthUserGrantRoleResponse> {
        fail(EtcdError::UserNotFound)
    }

    async fn user_revoke_role(
        &self,
        _r: Request<pb::AuthUserRevokeRoleRequest>,
    ) -> AuthResult<pb::AuthUserRevokeRoleResponse> {
        fail(EtcdError::UserNotFound)
    }

    async fn role_add(
        &self,
        r: Request<pb::AuthRoleAddRequest>,
    ) -> AuthResult<pb::AuthRoleAddResponse> {
        if r.get_ref().name.is_empty() {
            return fail(EtcdError::RoleEmpty);
        }
        fail(EtcdError::NotCapable)
    }

    async fn role_get(
        &self,
        _r: Request<pb::AuthRoleGetRequest>,
    ) -> AuthResult<pb::AuthRoleGetResponse> {
        fail(EtcdError::RoleNotFound)
    }

    async fn role_list(
        &self,
        _r: Request<pb::AuthRoleListRequest>,
    ) -> AuthResult<pb::AuthRoleListResponse> {
        Ok(Response::new(pb::AuthRoleListResponse {
            header: Some(self.header()),
            roles: Vec::new(),
        }))
    }

    async fn role_delete(
        &self,
        _r: Request<pb::AuthRoleDeleteRequest>,
    ) -> AuthResult<pb::AuthRoleDeleteResponse> {
        fail(EtcdError::RoleNotFound)
    }

    async fn role_grant_permission(
        &self,
        _r: Request<pb::AuthRoleGrantPermissionRequest>,
    ) -> AuthResult<pb::AuthRoleGrantPermissionResponse> {
        fail(EtcdError::RoleNotFound)
    }

    async fn role_revoke_permission(
        &self,
        _r: Request<pb::AuthRoleRevokePermissionRequest>,
    ) -> AuthResult<pb::AuthRoleRevokePermissionResponse> {
        fail(EtcdError::RoleNotFound)
    }
}
