//! User management (admin only).

use chrono::{DateTime, Utc};
use mcp_shared::auth::{Permission, Role};
use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};
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
        Ok(CreateUserResponse::Created(ok(UserView {
            id: user.id,
            username: user.username,
            role: req.role,
            created_at: user.created_at,
        })))
    }
}
