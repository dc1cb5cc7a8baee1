//! `/system/health`: how this replica and the cluster are doing, with the alerts raised now.

use mcp_shared::auth::Permission;
use poem::web::Data;
use poem_openapi::{ApiResponse, OpenApi, payload::Json};

use super::{ApiTags, Envelope, ok};
use crate::{
    auth::Auth,
    error::ApiResult,
    services::monitoring::{self, SystemHealth},
    state::AppState,
};

pub struct SystemApi;

#[derive(ApiResponse)]
pub enum SystemHealthResponse {
    #[oai(status = 200)]
    Ok(Json<Envelope<SystemHealth>>),
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::System")]
impl SystemApi {
    /// Live health from this replica's recent requests, the agent directory, the queues and
    /// the alerts raised now.
    #[oai(
        path = "/system/health",
        method = "get",
        operation_id = "getSystemHealth"
    )]
    async fn health(&self, state: Data<&AppState>, auth: Auth) -> ApiResult<SystemHealthResponse> {
        auth.0.require(Permission::SystemRead)?;
        Ok(SystemHealthResponse::Ok(ok(monitoring::system_health(
            &state,
        )
        .await?)))
    }
}
