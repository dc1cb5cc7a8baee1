//! Roles, permissions and JWT claims.
//!
//! Permission names come from the original design. Each route names the one permission it needs;
//! [`Role::allows`] is the single table that says who has it.

use std::time::Duration;

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Error, Result, config::Secret};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", oai(rename_all = "snake_case"))]
pub enum Role {
    Admin,
    Operator,
    Viewer,
    Agent,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Viewer, Role::Agent];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Agent => "agent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The permission table of the API contract.
    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Operator => !matches!(permission, UserManage | AuditRead),
            Role::Viewer => matches!(
                permission,
                AgentBasic | AgentDiscover | TaskRead | PipelineRead | SystemRead | ScheduleRead
            ),
            Role::Agent => matches!(permission, AgentBasic | TaskRead | TaskReport),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    AgentRegister,
    AgentDiscover,
    AgentBasic,
    TaskCreate,
    TaskAssign,
    TaskRead,
    TaskReport,
    PipelineExecute,
    PipelineRead,
    SystemRead,
    AuditRead,
    UserManage,
    ScheduleRead,
    ScheduleManage,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        use Permission::*;
        match self {
            AgentRegister => "agent.register",
            AgentDiscover => "agent.discover",
            AgentBasic => "agent.basic",
            TaskCreate => "task.create",
            TaskAssign => "task.assign",
            TaskRead => "task.read",
            TaskReport => "task.report",
            PipelineExecute => "pipeline.execute",
            PipelineRead => "pipeline.read",
            SystemRead => "system.read",
            AuditRead => "audit.read",
            UserManage => "user.manage",
            ScheduleRead => "schedule.read",
            ScheduleManage => "schedule.manage",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    Access,
    Refresh,
}

/// What a signed token says. `fam` groups the refresh tokens descended from one login.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub name: String,
    pub role: Role,
    pub typ: TokenKind,
    pub jti: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fam: Option<Uuid>,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
}

pub const ISSUER: &str = "techdeck-mcp";
pub const AUDIENCE: &str = "mcp-api";

/// Signs and checks tokens. HS256 only: the validation pins the algorithm, so `alg: none` and
/// algorithm-confusion tokens fail.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys").finish_non_exhaustive()
    }
}

impl JwtKeys {
    pub fn new(secret: &Secret, access_ttl: Duration, refresh_ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
            access_ttl,
            refresh_ttl,
        }
    }

    /// Issues a token; returns it with its claims (the caller records refresh `jti`s).
    pub fn issue(
        &self,
        user_id: Uuid,
        username: &str,
        role: Role,
        kind: TokenKind,
        family: Option<Uuid>,
    ) -> Result<(String, Claims)> {
        let now = Utc::now().timestamp();
        let ttl = match kind {
            TokenKind::Access => self.access_ttl,
            TokenKind::Refresh => self.refresh_ttl,
        };
        let claims = Claims {
            sub: user_id,
            name: username.to_string(),
            role,
            typ: kind,
            jti: Uuid::now_v7(),
            fam: family,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now,
            nbf: now,
            exp: now + ttl.as_secs() as i64,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| Error::Crypto(format!("signing token: {e}")))?;
        Ok((token, claims))
    }

    /// Verifies signature, algorithm, issuer, audience and time window, and the token kind.
    pub fn verify(&self, token: &str, kind: TokenKind) -> Result<Claims> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                Error::Unauthorized(
                    match e.kind() {
                        ErrorKind::ExpiredSignature => "token has expired",
                        ErrorKind::ImmatureSignature => "token is not valid yet",
                        ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => {
                            "token was not issued for this service"
                        }
                        _ => "token is invalid",
                    }
                    .into(),
                )
            })?;
        if data.claims.typ != kind {
            return Err(Error::Unauthorized(format!(
                "expected an {} token",
                match kind {
                    TokenKind::Access => "access",
                    TokenKind::Refresh => "refresh",
                }
            )));
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(
            &Secret::new("test-secret"),
            Duration::from_secs(60),
            Duration::from_secs(120),
        )
    }

    #[test]
    fn permission_table() {
        assert!(Role::Admin.allows(Permission::UserManage));
        assert!(!Role::Operator.allows(Permission::UserManage));
        assert!(!Role::Operator.allows(Permission::AuditRead));
        assert!(Role::Operator.allows(Permission::TaskCreate));
        assert!(Role::Viewer.allows(Permission::TaskRead));
        assert!(!Role::Viewer.allows(Permission::TaskCreate));
        assert!(Role::Agent.allows(Permission::TaskReport));
        assert!(!Role::Agent.allows(Permission::TaskCreate));
    }

    #[test]
    fn tokens_round_trip_and_kinds_do_not_mix() {
        let k = keys();
        let id = Uuid::now_v7();
        let (access, _) = k
            .issue(id, "ann", Role::Operator, TokenKind::Access, None)
            .unwrap();
        let claims = k.verify(&access, TokenKind::Access).unwrap();
        assert_eq!(claims.sub, id);
        assert_eq!(claims.role, Role::Operator);
        assert!(k.verify(&access, TokenKind::Refresh).is_err());
    }

    #[test]
    fn foreign_and_unsigned_tokens_fail() {
        let k = keys();
        let other = JwtKeys::new(
            &Secret::new("other"),
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        let (token, _) = other
            .issue(Uuid::now_v7(), "x", Role::Admin, TokenKind::Access, None)
            .unwrap();
        assert!(k.verify(&token, TokenKind::Access).is_err());
        // alg: none with the same claims
        let body = token.split('.').nth(1).unwrap();
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{body}.");
        assert!(k.verify(&none, TokenKind::Access).is_err());
    }
}
