//! Login, refresh (single use, rotating) and logout.

use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};
use serde::Deserialize;

use super::{ApiTags, Envelope, ok};
use crate::{
    audit,
    auth::Auth,
    error::{ApiError, ApiResult},
    middleware::client_ip,
    payload::ApiJson,
    services::sessions::{self as service, Refresh, Tokens},
    state::AppState,
};

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

#[OpenApi(prefix_path = "/api/v1/auth", tag = "ApiTags::Auth")]
impl AuthApi {
    /// Exchange a username and password for an access token and a refresh token.
    #[oai(path = "/login", method = "post", operation_id = "login")]
    async fn login(
        &self,
        req: &poem::Request,
        state: Data<&AppState>,
        body: ApiJson<LoginRequest>,
    ) -> ApiResult<TokenResponse> {
        let LoginRequest { username, password } = body.0;
        audit::note("auth.login", None, None);
        let tokens = service::login(&state, client_ip(req), &username, password).await?;
        Ok(TokenResponse::Ok(ok(tokens.into())))
    }

    /// Exchange a refresh token (once) for a new pair. Presenting a used refresh token again
    /// revokes every token from the same login.
    #[oai(path = "/refresh", method = "post", operation_id = "refreshToken")]
    async fn refresh(
        &self,
        state: Data<&AppState>,
        body: ApiJson<RefreshRequest>,
    ) -> ApiResult<TokenResponse> {
        match service::refresh(&state, &body.0.refresh_token).await? {
            Refresh::Issued(tokens) => Ok(TokenResponse::Ok(ok(tokens.into()))),
            Refresh::Reused { family } => {
                audit::note(
                    "auth.refresh_reused",
                    Some(family.to_string()),
                    Some(serde_json::json!({"revoked_family": true})),
                );
                Err(ApiError::unauthorized(
                    "refresh token was already used; every session from that login is revoked, log in again",
                ))
            }
        }
    }

    /// Log out: revokes the access token used for this call at once (on every replica), and every
    /// access and refresh token of the same login, with or without `refresh_token` in the body.
    #[oai(path = "/logout", method = "post", operation_id = "logout")]
    async fn logout(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: ApiJson<LogoutRequest>,
    ) -> ApiResult<LogoutResponse> {
        audit::note("auth.logout", None, None);
        let revoked = service::logout(&state, &auth.0, body.0.refresh_token).await?;
        Ok(LogoutResponse::Ok(ok(LoggedOut { revoked })))
    }
}

impl From<Tokens> for TokenPair {
    fn from(t: Tokens) -> Self {
        Self {
            access_token: t.access_token,
            refresh_token: t.refresh_token,
            token_type: "Bearer".into(),
            expires_in: t.expires_in,
        }
    }
}
