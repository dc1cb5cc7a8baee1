//! Queues: live counts per capability and tier, pause and resume.

use mcp_shared::auth::Permission;
use poem::web::Data;
use poem_openapi::{ApiResponse, OpenApi, param::Path, payload::Json};

use super::{ApiTags, Envelope, ListEnvelope, ok, page};
use crate::{
    audit, auth::Auth, error::ApiResult, services::queues as service, state::AppState,
    views::QueueView,
};

pub struct QueuesApi;

#[derive(ApiResponse)]
pub enum QueueList {
    #[oai(status = 200)]
    Ok(Json<ListEnvelope<QueueView>>),
}

#[derive(ApiResponse)]
pub enum QueueResponse {
    #[oai(status = 200)]
    Ok(Json<Envelope<QueueView>>),
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Tasks")]
impl QueuesApi {
    /// Every queue with live counts per tier.
    #[oai(path = "/queues", method = "get", operation_id = "listQueues")]
    async fn list(&self, state: Data<&AppState>, auth: Auth) -> ApiResult<QueueList> {
        auth.0.require(Permission::SystemRead)?;
        Ok(QueueList::Ok(page(service::list(&state).await?, None)))
    }

    /// Stop dispatching a queue's tasks (all four tiers); running ones finish.
    #[oai(
        path = "/queues/:name/pause",
        method = "post",
        operation_id = "pauseQueue"
    )]
    async fn pause(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        name: Path<String>,
    ) -> ApiResult<QueueResponse> {
        self.toggle(&state, &auth, &name.0, true).await
    }

    /// Resume a paused queue.
    #[oai(
        path = "/queues/:name/resume",
        method = "post",
        operation_id = "resumeQueue"
    )]
    async fn resume(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        name: Path<String>,
    ) -> ApiResult<QueueResponse> {
        self.toggle(&state, &auth, &name.0, false).await
    }
}

impl QueuesApi {
    async fn toggle(
        &self,
        state: &AppState,
        auth: &Auth,
        name: &str,
        paused: bool,
    ) -> ApiResult<QueueResponse> {
        auth.0.require(Permission::TaskAssign)?;
        let cap = service::set_paused_by_name(state, name, paused).await?;
        audit::note(
            if paused {
                "queue.pause"
            } else {
                "queue.resume"
            },
            Some(format!("mcp:{cap}")),
            None,
        );
        let view = service::find(state, &cap, paused).await?;
        Ok(QueueResponse::Ok(ok(view)))
    }
}
