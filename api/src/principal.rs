//! Who is calling: the principal a credential resolved to (the sessions service resolves them),
//! and the permission checks every operation makes on it.

use mcp_shared::auth::{Permission, Role};
use uuid::Uuid;

use crate::error::ApiError;

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
