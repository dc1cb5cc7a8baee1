//! Login, refresh (single use, rotating) and logout.

use mcp_shared::{
    auth::{Role, TokenKind},
    crypto,
    db::{tokens, users},
};
use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;
use uuid::Uuid;

use super::{ApiTags, Envelope, ok};
use crate::{
    auth::Auth,
    error::{ApiError, ApiResult},
    payload::ApiJson,
    services::audit,
    state::AppState,
};
use poem_openapi::payload::Json;

pub struct AuthApi;

#[derive(Object, Deserialize)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Object, Deserialize)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Object, Deserialize)]
pub struct LogoutRequest {
    /// The refresh token to revoke, with every token descended from the same login.
    pub refresh_token: Option<String>,
}

#[derive(Object)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

#[derive(Object)]
pub struct LoggedOut {
    pub revoked: bool,
}

#[derive(ApiResponse)]
pub enum TokenResponse {
    #[oai(status = 200)]
    Ok(Json<Envelope<TokenPair>>),
}

#[derive(ApiResponse)]
pub enum LogoutResponse {
    #[oai(status = 200)]
    Ok(Json<Envelope<LoggedOut>>),
}

/// Same answer for an unknown user and a wrong password, so usernames cannot be probed.
fn bad_credentials() -> ApiError {
    ApiError::unauthorized("invalid username or password")
}

#[OpenApi(prefix_path = "/api/v1/auth", tag = "ApiTags::Auth")]
impl AuthApi {
    /// Exchange a username and password for an access token and a refresh token.
    #[oai(path = "/login", method = "post")]
    async fn login(
        &self,
        req: &poem::Request,
        state: Data<&AppState>,
        body: ApiJson<LoginRequest>,
    ) -> ApiResult<TokenResponse> {
        let LoginRequest { username, password } = body.0;
        let shown: String = username.chars().take(64).collect();
        audit::set_actor(format!("user:{shown}"));
        audit::note("auth.login", None, None);
        state
            .guard
            .admit_login(crate::middleware::client_ip(req), &username)
            .await?;
        let user = users::find_by_username(&state.db.conn, &username).await?;
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
            state.guard.login_failed(&username).await;
            return Err(bad_credentials());
        };
        state.guard.login_succeeded(&username).await;
        audit::set_actor(format!("{}:{}", user.role, user.username));
        let role =
            Role::parse(&user.role).ok_or_else(|| ApiError::internal("stored role is unknown"))?;
        let pair = issue_pair(&state, user.id, &user.username, role, Uuid::now_v7()).await?;
        tracing::info!(user = %user.username, "login succeeded");
        Ok(TokenResponse::Ok(ok(pair)))
    }

    /// Exchange a refresh token (once) for a new pair. Presenting a used refresh token again
    /// revokes every token from the same login.
    #[oai(path = "/refresh", method = "post")]
    async fn refresh(
        &self,
        state: Data<&AppState>,
        body: ApiJson<RefreshRequest>,
    ) -> ApiResult<TokenResponse> {
        let claims = state
            .jwt
            .verify(&body.0.refresh_token, TokenKind::Refresh)
            .map_err(ApiError::from)?;
        let family = claims
            .fam
            .ok_or_else(|| ApiError::unauthorized("refresh token is invalid"))?;
        match tokens::consume(&state.db.conn, claims.jti).await? {
            tokens::Consume::Fresh => {}
            tokens::Consume::Reused => {
                tracing::warn!(user = %claims.name, "refresh token reused; session family revoked");
                audit::set_actor(format!("{}:{}", claims.role.as_str(), claims.name));
                audit::note(
                    "auth.refresh_reused",
                    Some(family.to_string()),
                    Some(serde_json::json!({"revoked_family": true})),
                );
                return Err(ApiError::unauthorized(
                    "refresh token was already used; every session from that login is revoked, log in again",
                ));
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
        let pair = issue_pair(&state, user.id, &user.username, role, family).await?;
        Ok(TokenResponse::Ok(ok(pair)))
    }

    /// Log out: revokes the access token used for this call at once (on every replica) and, when
    /// given, the refresh token and every token descended from the same login.
    #[oai(path = "/logout", method = "post")]
    async fn logout(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: ApiJson<LogoutRequest>,
    ) -> ApiResult<LogoutResponse> {
        audit::note("auth.logout", None, None);
        let mut revoked = false;
        if let (Some(jti), Some(exp)) = (auth.0.token_id, auth.0.token_expires_at) {
            state
                .guard
                .revoke(jti, auth.0.token_family, exp, state.jwt.access_ttl)
                .await?;
            revoked = true;
        }
        if let Some(token) = body.0.refresh_token {
            let claims = state
                .jwt
                .verify(&token, TokenKind::Refresh)
                .map_err(ApiError::from)?;
            if claims.sub != auth.0.id {
                return Err(ApiError::forbidden(
                    "that refresh token belongs to another user",
                ));
            }
            if let Some(family) = claims.fam {
                tokens::revoke_family(&state.db.conn, family).await?;
                revoked = true;
            }
        }
        Ok(LogoutResponse::Ok(ok(LoggedOut { revoked })))
    }
}

async fn issue_pair(
    state: &AppState,
    user_id: Uuid,
    username: &str,
    role: Role,
    family: Uuid,
) -> ApiResult<TokenPair> {
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
    Ok(TokenPair {
        access_token: access,
        refresh_token: refresh,
        token_type: "Bearer".into(),
        expires_in: state.jwt.access_ttl.as_secs(),
    })
}

/// A valid argon2id hash of a random string, computed once.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| crypto::hash_password(&crypto::random_token(16)).unwrap_or_default())
}
