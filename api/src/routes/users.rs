//! User management (admin only).

use chrono::{DateTime, Utc};
use mcp_shared::auth::{Permission, Role};
use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, payload::Json};
use serde::Deserialize;
use uuid::Uuid;

use super::{ApiTags, Envelope, ok};
use crate::{
    audit, auth::Auth, error::ApiResult, payload::ApiJson, services::users as service,
    state::AppState,
};

pub struct UsersApi;

#[derive(Object, Deserialize)]
pub struct CreateUserRequest {
    /// 3–64 characters: letters, digits, `.`, `_`, `-`.
    pub username: String,
    /// At least 12 characters.
    pub password: String,
    pub role: Role,
}

/// What to change about a user; absent fields stay as they are.
#[derive(Object, Deserialize)]
pub struct UpdateUserRequest {
    /// True: the user can no longer log in, and every token they hold stops working at once.
    pub disabled: Option<bool>,
    /// `admin`, `operator` or `viewer`. A change revokes the user's tokens: they log in again
    /// to act with the new role.
    pub role: Option<Role>,
    /// True: end every login of the user (all their access and refresh tokens).
    pub revoke_tokens: Option<bool>,
}

/// A user, without any secret.
#[derive(Object)]
pub struct UserView {
    pub id: Uuid,
    pub username: String,
    pub role: Role,
    /// A disabled user cannot log in and holds no working token.
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

/// A user after a change, and whether their tokens were revoked by it.
#[derive(Object)]
pub struct UpdatedUser {
    #[oai(flatten)]
    pub user: UserView,
    /// True when every token of the user was revoked (disabling, a role change, or
    /// `revoke_tokens`).
    pub tokens_revoked: bool,
}

#[derive(ApiResponse)]
pub enum CreateUserResponse {
    #[oai(status = 201)]
    Created(Json<Envelope<UserView>>),
}

#[derive(ApiResponse)]
pub enum UpdateUserResponse {
    #[oai(status = 200)]
    Ok(Json<Envelope<UpdatedUser>>),
}

fn view(user: mcp_shared::entities::users::Model, role: Role) -> UserView {
    UserView {
        id: user.id,
        username: user.username,
        role,
        disabled: user.disabled,
        created_at: user.created_at,
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Users")]
impl UsersApi {
    /// Create a user (admin).
    #[oai(path = "/users", method = "post", operation_id = "createUser")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: ApiJson<CreateUserRequest>,
    ) -> ApiResult<CreateUserResponse> {
        auth.0.require(Permission::UserManage)?;
        let req = body.0;
        let user = service::create(&state.db, &req.username, req.password, req.role).await?;
        tracing::info!(by = %auth.0.actor(), user = %user.username, role = %user.role, "user created");
        audit::note(
            "user.create",
            Some(user.id.to_string()),
            Some(serde_json::json!({"username": user.username, "role": user.role})),
        );
        Ok(CreateUserResponse::Created(ok(view(user, req.role))))
    }

    /// Change a user (admin): disable or enable them, change their role, or end all their
    /// logins. Disabling and a role change also revoke every token the user holds. The last
    /// enabled admin can be neither disabled nor demoted (409 `conflict`).
    #[oai(path = "/users/:id", method = "patch", operation_id = "updateUser")]
    async fn update(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: ApiJson<UpdateUserRequest>,
    ) -> ApiResult<UpdateUserResponse> {
        auth.0.require(Permission::UserManage)?;
        let req = body.0;
        let change = service::Change {
            disabled: req.disabled,
            role: req.role,
            revoke_tokens: req.revoke_tokens.unwrap_or(false),
        };
        let done = service::update(&state, id.0, change).await?;
        let (before, after) = (&done.before, &done.user);
        let mut changes = serde_json::Map::new();
        changes.insert("username".into(), after.username.clone().into());
        if before.disabled != after.disabled {
            changes.insert(
                "disabled".into(),
                serde_json::json!({"from": before.disabled, "to": after.disabled}),
            );
        }
        if before.role != after.role {
            changes.insert(
                "role".into(),
                serde_json::json!({"from": before.role, "to": after.role}),
            );
        }
        changes.insert("tokens_revoked".into(), done.tokens_revoked.into());
        changes.insert("logins_revoked".into(), done.logins_revoked.into());
        let action = match (before.disabled != after.disabled, before.role != after.role) {
            (true, false) if after.disabled => "user.disable",
            (true, false) => "user.enable",
            (false, true) => "user.role_change",
            (false, false) if done.tokens_revoked => "user.revoke_tokens",
            _ => "user.update",
        };
        tracing::info!(by = %auth.0.actor(), user = %after.username, action, "user changed");
        audit::note(
            action,
            Some(after.id.to_string()),
            Some(serde_json::Value::Object(changes)),
        );
        let role = Role::parse(&after.role)
            .ok_or_else(|| crate::error::ApiError::internal("stored role is unknown"))?;
        Ok(UpdateUserResponse::Ok(ok(UpdatedUser {
            user: view(done.user, role),
            tokens_revoked: done.tokens_revoked,
        })))
    }
}
