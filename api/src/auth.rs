//! Who is calling, and may they. One security scheme reads `Authorization` and accepts
//! `Bearer <jwt>` (users) or `Agent <key>` (agents); every operation then names the permission it
//! needs with [`Principal::require`].

use mcp_shared::auth::{Permission, Role, TokenKind};
use poem::Request;
use poem_openapi::{SecurityScheme, auth::ApiKey};
use uuid::Uuid;

use crate::{error::ApiError, state::AppState};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
}

impl Principal {
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.role.allows(permission) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "role {} lacks the permission {}",
                self.role.as_str(),
                permission.as_str()
            )))
        }
    }

    /// How the caller appears in audit records and `created_by`.
    pub fn actor(&self) -> String {
        format!("{}:{}", self.role.as_str(), self.name)
    }
}

/// `Authorization: Bearer <access token>` for users, `Authorization: Agent <agent key>` for agents.
#[derive(SecurityScheme)]
#[oai(
    ty = "api_key",
    key_name = "Authorization",
    key_in = "header",
    checker = "authenticate"
)]
pub struct Auth(pub Principal);

async fn authenticate(req: &Request, key: ApiKey) -> poem::Result<Principal> {
    let state = req
        .data::<AppState>()
        .ok_or_else(|| ApiError::internal("application state missing"))?;
    let value = key.key.trim();
    let (scheme, credential) = value.split_once(' ').unwrap_or((value, ""));
    let credential = credential.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty() {
        let claims = state
            .jwt
            .verify(credential, TokenKind::Access)
            .map_err(ApiError::from)?;
        return Ok(Principal {
            id: claims.sub,
            name: claims.name,
            role: claims.role,
        });
    }
    if scheme.eq_ignore_ascii_case("agent") && !credential.is_empty() {
        return Err(ApiError::unauthorized("invalid agent key").into());
    }
    Err(ApiError::unauthorized(
        "malformed Authorization header: use `Bearer <token>` or `Agent <key>`",
    )
    .into())
}
