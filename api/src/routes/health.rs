//! `/health` (is the process up) and `/ready` (can it serve: database and queue answer).

use std::time::Duration;

use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};

use super::{ApiTags, Envelope, ok};
use crate::{
    error::{ApiError, ApiResult},
    state::AppState,
};

pub struct HealthApi;

#[derive(Object)]
pub struct Health {
    /// Always `ok` when the process answers.
    pub status: String,
    pub version: String,
}

#[derive(Object)]
pub struct Readiness {
    pub status: String,
    pub database: String,
    pub queue: String,
    pub artifacts: String,
}

#[derive(ApiResponse)]
pub enum HealthResponse {
    #[oai(status = 200)]
    Ok(Json<Envelope<Health>>),
}

#[derive(ApiResponse)]
pub enum ReadyResponse {
    /// Database and queue backend answer.
    #[oai(status = 200)]
    Ready(Json<Envelope<Readiness>>),
}

/// How long a dependency may take to answer a readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::System")]
impl HealthApi {
    /// Liveness: answers without touching any dependency.
    #[oai(path = "/health", method = "get")]
    async fn health(&self) -> HealthResponse {
        HealthResponse::Ok(ok(Health {
            status: "ok".into(),
            version: mcp_shared::VERSION.into(),
        }))
    }

    /// Readiness: 200 when the database, the queue backend and the artifact store answer, else
    /// 503 naming the failure.
    #[oai(path = "/ready", method = "get")]
    async fn ready(&self, state: Data<&AppState>) -> ApiResult<ReadyResponse> {
        let db = tokio::time::timeout(PROBE_TIMEOUT, state.db.ping()).await;
        if !matches!(db, Ok(Ok(()))) {
            return Err(ApiError::unavailable("database"));
        }
        let queue = tokio::time::timeout(PROBE_TIMEOUT, state.queue.ping()).await;
        if !matches!(queue, Ok(Ok(()))) {
            return Err(ApiError::unavailable(state.queue.backend_name()));
        }
        let artifacts = tokio::time::timeout(PROBE_TIMEOUT, state.artifacts.ping()).await;
        if !matches!(artifacts, Ok(Ok(()))) {
            return Err(ApiError::unavailable("artifact store"));
        }
        Ok(ReadyResponse::Ready(ok(Readiness {
            status: "ready".into(),
            database: "ok".into(),
            queue: "ok".into(),
            artifacts: "ok".into(),
        })))
    }
}
