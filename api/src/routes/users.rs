//! User management (admin only).

use chrono::{DateTime, Utc};
use mcp_shared::{
    auth::{Permission, Role},
    crypto,
    db::users,
};
use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};
use serde::Deserialize;
use uuid::Uuid;

use super::{ApiTags, Envelope, ok};
use crate::{
    auth::Auth,
    error::{ApiError, ApiResult},
    payload::ApiJson,
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

/// A user, without any secret.
#[derive(Object)]
pub struct UserView {
    pub id: Uuid,
    pub username: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

#[derive(ApiResponse)]
pub enum CreateUserResponse {
    #[oai(status = 201)]
    Created(Json<Envelope<UserView>>),
}

pub const MIN_PASSWORD_LEN: usize = 12;
const MAX_PASSWORD_LEN: usize = 1024;

pub fn validate_username(username: &str) -> Result<(), ApiError> {
    let ok = (3..=64).contains(&username.len())
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            "username",
            "username must be 3-64 characters of letters, digits, '.', '_' or '-'",
        ))
    }
}

pub fn validate_password(password: &str) -> Result<(), ApiError> {
    if (MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&password.chars().count()) {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            "password",
            format!("password must be {MIN_PASSWORD_LEN}-{MAX_PASSWORD_LEN} characters"),
        ))
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Users")]
impl UsersApi {
    /// Create a user (admin).
    #[oai(path = "/users", method = "post")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: ApiJson<CreateUserRequest>,
    ) -> ApiResult<CreateUserResponse> {
        auth.0.require(Permission::UserManage)?;
        let req = body.0;
        validate_username(&req.username)?;
        validate_password(&req.password)?;
        let password = req.password;
        let hash = tokio::task::spawn_blocking(move || crypto::hash_password(&password))
            .await
            .map_err(ApiError::internal)??;
        let user = users::create(&state.db.conn, &req.username, hash, req.role).await?;
        tracing::info!(by = %auth.0.actor(), user = %user.username, role = %user.role, "user created");
        crate::services::audit::note(
            "user.create",
            Some(user.id.to_string()),
            Some(serde_json::json!({"username": user.username, "role": user.role})),
        );
        Ok(CreateUserResponse::Created(ok(UserView {
            id: user.id,
            username: user.username,
            role: req.role,
            created_at: user.created_at,
        })))
    }
}
