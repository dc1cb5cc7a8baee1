//! Who is calling, and may they. One security scheme reads `Authorization` and accepts
//! `Bearer <jwt>` (users) or `Agent <key>` (agents); every operation then names the permission it
//! needs with [`Principal::require`].

use mcp_shared::{
    auth::{Permission, Role, TokenKind},
    crypto,
    db::agents,
};
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
    /// The access token's id and expiry (users), so a logout can revoke it.
    pub token_id: Option<Uuid>,
    pub token_expires_at: Option<i64>,
    /// The login the access token descends from (revoked together at logout).
    pub token_family: Option<Uuid>,
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

    /// The caller's agent id, when the caller is an agent.
    pub fn agent_id(&self) -> Option<Uuid> {
        (self.role == Role::Agent).then_some(self.id)
    }

    /// An agent may act only on its own record; users pass (their permission is checked apart).
    pub fn require_self_if_agent(&self, agent_id: Uuid) -> Result<(), ApiError> {
        match self.agent_id() {
            Some(me) if me != agent_id => Err(ApiError::forbidden(
                "an agent may act only on its own record",
            )),
            _ => Ok(()),
        }
    }
}

/// Resolves an `Authorization` header value (`Bearer …` or `Agent …`) to a principal.
pub async fn resolve(state: &AppState, header: &str) -> Result<Principal, ApiError> {
    let value = header.trim();
    let (scheme, credential) = value.split_once(' ').unwrap_or((value, ""));
    let credential = credential.trim();
    if credential.is_empty() {
        return Err(ApiError::unauthorized(
            "malformed Authorization header: use `Bearer <token>` or `Agent <key>`",
        ));
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        let claims = state.jwt.verify(credential, TokenKind::Access)?;
        let principal = Principal {
            id: claims.sub,
            name: claims.name,
            role: claims.role,
            token_id: Some(claims.jti),
            token_expires_at: Some(claims.exp),
            token_family: claims.fam,
        };
        crate::services::audit::set_actor(principal.actor());
        state.guard.admit(&principal).await?;
        return Ok(principal);
    }
    if scheme.eq_ignore_ascii_case("agent") {
        let hash = crypto::agent_key_hash(state.settings.secret_key.expose(), credential);
        // Looked up on every request, so a deregistered agent's key fails at once on every replica.
        return match agents::find_by_key_hash(&state.db.conn, &hash).await? {
            Some(agent) => {
                let principal = Principal {
                    id: agent.id,
                    name: agent.name,
                    role: Role::Agent,
                    token_id: None,
                    token_expires_at: None,
                    token_family: None,
                };
                crate::services::audit::set_actor(principal.actor());
                state.guard.admit(&principal).await?;
                Ok(principal)
            }
            None => Err(ApiError::unauthorized("invalid or revoked agent key")),
        };
    }
    Err(ApiError::unauthorized(
        "malformed Authorization header: use `Bearer <token>` or `Agent <key>`",
    ))
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
    let principal = resolve(state, &key.key).await?;
    crate::services::audit::set_actor(principal.actor());
    Ok(principal)
}
