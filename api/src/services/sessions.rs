//! Credentials: resolving a presented `Bearer` token or agent key to a principal, logging in,
//! refreshing (single use, rotating) and logging out. Whoever a credential names becomes the
//! actor of the request's audit record.

use mcp_shared::{
    auth::{Role, TokenKind},
    crypto,
    db::{agents, tokens, users},
};
use uuid::Uuid;

use crate::{audit, error::ApiError, principal::Principal, state::AppState};

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
        audit::set_actor(principal.actor());
        audit::set_authenticated();
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
                audit::set_actor(principal.actor());
                audit::set_authenticated();
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

/// Why a long-lived stream (WebSocket, Server-Sent Events) must end: its close code and reason.
pub struct Ended {
    pub code: u16,
    pub reason: &'static str,
}

/// Checks the credentials a stream was opened with, now: the access token has not expired nor
/// been revoked, the user is not disabled, the agent not deregistered.
pub async fn still_valid(state: &AppState, principal: &Principal) -> Result<(), Ended> {
    let ended = |reason| Ended { code: 4401, reason };
    if principal
        .token_expires_at
        .is_some_and(|exp| exp <= chrono::Utc::now().timestamp())
    {
        return Err(ended("the token expired; reconnect with a new one"));
    }
    match state.guard.is_revoked(principal).await {
        Ok(false) => {}
        Ok(true) => return Err(ended("the token was revoked by a logout")),
        Err(e) => {
            tracing::warn!(error = %e, "stream credentials cannot be checked: closing");
            return Err(Ended {
                code: 1013,
                reason: "credentials cannot be checked now; reconnect shortly",
            });
        }
    }
    if principal.role == Role::Agent {
        if let Ok(None) = agents::find(&state.db.conn, principal.id).await {
            return Err(ended("the agent was deregistered"));
        }
    } else if let Ok(found) = users::find(&state.db.conn, principal.id).await
        && found.is_none_or(|u| u.disabled)
    {
        return Err(ended("the user is disabled"));
    }
    Ok(())
}

/// Resolves once the stream's credentials stop being valid, checking every `every`.
pub async fn credentials_end(
    state: AppState,
    principal: Principal,
    every: std::time::Duration,
) -> Ended {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tick.tick().await;
        if let Err(ended) = still_valid(&state, &principal).await {
            return ended;
        }
    }
}

/// A fresh access and refresh token of one login.
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// Same answer for an unknown user and a wrong password, so usernames cannot be probed.
fn bad_credentials() -> ApiError {
    ApiError::unauthorized("invalid username or password")
}

/// Checks a username and password (within the login limits) and starts a login.
pub async fn login(
    state: &AppState,
    client_ip: Option<std::net::IpAddr>,
    username: &str,
    password: String,
) -> Result<Tokens, ApiError> {
    let shown: String = username.chars().take(64).collect();
    audit::set_actor(format!("user:{shown}"));
    state.guard.admit_login(client_ip, username).await?;
    let user = users::find_by_username(&state.db.conn, username).await?;
    let user = user.filter(|u| !u.disabled);
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let valid = tokio::task::spawn_blocking(move || {
        // Verify against a dummy hash for unknown users: timing must not reveal who exists.
        let hash = hash.as_deref().unwrap_or_else(|| dummy_hash());
        crypto::verify_password(&password, hash)
    })
    .await
    .map_err(ApiError::internal)?;
    let Some(user) = user.filter(|_| valid) else {
        tracing::warn!("login failed");
        state.guard.login_failed(username).await?;
        return Err(bad_credentials());
    };
    state.guard.login_succeeded(username).await;
    audit::set_actor(format!("{}:{}", user.role, user.username));
    let role =
        Role::parse(&user.role).ok_or_else(|| ApiError::internal("stored role is unknown"))?;
    let tokens = issue(state, user.id, &user.username, role, Uuid::now_v7()).await?;
    tracing::info!(user = %user.username, "login succeeded");
    Ok(tokens)
}

/// What presenting a refresh token did.
pub enum Refresh {
    /// A new pair from the same login.
    Issued(Tokens),
    /// The token had been used before: every token of its login (`family`) is now revoked.
    Reused { family: Uuid },
}

/// Exchanges a refresh token, once, for a new pair.
pub async fn refresh(state: &AppState, refresh_token: &str) -> Result<Refresh, ApiError> {
    let claims = state
        .jwt
        .verify(refresh_token, TokenKind::Refresh)
        .map_err(ApiError::from)?;
    let family = claims
        .fam
        .ok_or_else(|| ApiError::unauthorized("refresh token is invalid"))?;
    match tokens::consume(&state.db.conn, claims.jti).await? {
        tokens::Consume::Fresh => {}
        tokens::Consume::Reused => {
            tracing::warn!(user = %claims.name, "refresh token reused; session family revoked");
            audit::set_actor(format!("{}:{}", claims.role.as_str(), claims.name));
            // The thief may already hold an access token of the login: those go too.
            state
                .guard
                .revoke_family(family, state.jwt.access_ttl)
                .await?;
            return Ok(Refresh::Reused { family });
        }
        tokens::Consume::Invalid => {
            return Err(ApiError::unauthorized(
                "refresh token is revoked or unknown",
            ));
        }
    }
    let user = users::find(&state.db.conn, claims.sub)
        .await?
        .filter(|u| !u.disabled)
        .ok_or_else(|| ApiError::unauthorized("the user no longer exists"))?;
    let role =
        Role::parse(&user.role).ok_or_else(|| ApiError::internal("stored role is unknown"))?;
    let tokens = issue(state, user.id, &user.username, role, family).await?;
    Ok(Refresh::Issued(tokens))
}

/// Revokes the access token `principal` called with (on every replica), every access and refresh
/// token of the same login (with or without a refresh token in the body) and, when given, the
/// refresh token's own login. True when anything was revoked.
pub async fn logout(
    state: &AppState,
    principal: &Principal,
    refresh_token: Option<String>,
) -> Result<bool, ApiError> {
    let mut revoked = false;
    if let (Some(jti), Some(exp)) = (principal.token_id, principal.token_expires_at) {
        state
            .guard
            .revoke(jti, principal.token_family, exp, state.jwt.access_ttl)
            .await?;
        revoked = true;
    }
    if let Some(family) = principal.token_family {
        tokens::revoke_family(&state.db.conn, family).await?;
    }
    if let Some(token) = refresh_token {
        let claims = state
            .jwt
            .verify(&token, TokenKind::Refresh)
            .map_err(ApiError::from)?;
        if claims.sub != principal.id {
            return Err(ApiError::forbidden(
                "that refresh token belongs to another user",
            ));
        }
        if let Some(family) = claims.fam {
            tokens::revoke_family(&state.db.conn, family).await?;
            revoked = true;
        }
    }
    Ok(revoked)
}

async fn issue(
    state: &AppState,
    user_id: Uuid,
    username: &str,
    role: Role,
    family: Uuid,
) -> Result<Tokens, ApiError> {
    let (access, _) = state
        .jwt
        .issue(user_id, username, role, TokenKind::Access, Some(family))
        .map_err(ApiError::internal)?;
    let (refresh, claims) = state
        .jwt
        .issue(user_id, username, role, TokenKind::Refresh, Some(family))
        .map_err(ApiError::internal)?;
    let expires_at = chrono::DateTime::from_timestamp(claims.exp, 0).unwrap_or_default();
    tokens::record(&state.db.conn, claims.jti, user_id, family, expires_at).await?;
    Ok(Tokens {
        access_token: access,
        refresh_token: refresh,
        expires_in: state.jwt.access_ttl.as_secs(),
    })
}

/// A valid argon2id hash of a random string, computed once.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| crypto::hash_password(&crypto::random_token(16)).unwrap_or_default())
}
