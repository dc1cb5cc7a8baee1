//! `/health` (is the process up) and `/ready` (can it serve: database and queue answer).

use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};

use super::{ApiTags, Envelope, ok};
use crate::{error::ApiResult, services::monitoring, state::AppState};

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

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::System")]
impl HealthApi {
    /// Liveness: answers without touching any dependency.
    #[oai(path = "/health", method = "get", operation_id = "getHealth")]
    async fn health(&self) -> HealthResponse {
        HealthResponse::Ok(ok(Health {
            status: "ok".into(),
            version: mcp_shared::VERSION.into(),
        }))
    }

    /// Readiness: 200 when the database, the queue backend and the artifact store answer, else
    /// 503 naming the failure.
    #[oai(path = "/ready", method = "get", operation_id = "getReadiness")]
    async fn ready(&self, state: Data<&AppState>) -> ApiResult<ReadyResponse> {
        monitoring::readiness(&state).await?;
        Ok(ReadyResponse::Ready(ok(Readiness {
            status: "ready".into(),
            database: "ok".into(),
            queue: "ok".into(),
            artifacts: "ok".into(),
        })))
    }
}
