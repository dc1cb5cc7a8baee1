//! The security scheme of every operation but the open ones: it reads `Authorization` and accepts
//! `Bearer <jwt>` (users) or `Agent <key>` (agents). Each operation then names the permission it
//! needs with [`Principal::require`].

use poem::Request;
use poem_openapi::{SecurityScheme, auth::ApiKey};

use crate::{audit, error::ApiError, principal::Principal, services::sessions, state::AppState};

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
    let principal = sessions::resolve(state, &key.key).await?;
    audit::set_actor(principal.actor());
    Ok(principal)
}
