//! `GET /metrics`: Prometheus text format, beside the OpenAPI service.

use mcp_shared::auth::Permission;
use poem::{
    IntoResponse, Request, Response, handler,
    http::{StatusCode, header},
    web::Data,
};

use crate::{
    error::ApiError,
    services::{monitoring, sessions},
    state::AppState,
};

/// True for `Authorization: Bearer <MCP_METRICS_TOKEN>`, compared in constant time.
fn is_metrics_token(state: &AppState, header: &str) -> bool {
    let Some(token) = &state.settings.metrics_token else {
        return false;
    };
    let Some(given) = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
    else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.expose().as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `GET /metrics`: Prometheus text format. Not open like `/health`: the contract opens only the
/// probes and login, and queue names and volumes are operational detail. Scrape with
/// `MCP_METRICS_TOKEN` as a bearer token, or a user token with `system.read`.
#[handler]
pub async fn metrics(req: &Request, state: Data<&AppState>) -> Response {
    let header = req.header("authorization").unwrap_or_default();
    if !is_metrics_token(&state, header) {
        let allowed = if header.is_empty() {
            Err(ApiError::unauthorized(
                "missing credentials: send `Authorization: Bearer <MCP_METRICS_TOKEN or a token with system.read>`",
            ))
        } else {
            sessions::resolve(&state, header)
                .await
                .and_then(|p| p.require(Permission::SystemRead))
        };
        if let Err(e) = allowed {
            return e.into_response();
        }
    }
    match monitoring::metrics_text(&state).await {
        Ok(body) => Response::builder()
            .status(StatusCode::OK)
            .header(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )
            .body(body),
        Err(e) => e.into_response(),
    }
}
