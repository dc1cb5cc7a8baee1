//! Tasks: create, list, read, status.

use chrono::{DateTime, Utc};
use mcp_shared::{
    auth::Permission,
    db::tasks::{self, ListFilter},
    domain::task::{Priority, TaskStatus, TaskType},
    entities::tasks::Model,
};
use poem::web::Data;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::{ApiTags, Envelope, ListEnvelope, ok, page};
use crate::{
    auth::Auth,
    error::{ApiError, ApiResult},
    payload::ApiJson,
    services::tasks::{self as service, Created, NewTask},
    state::AppState,
};

pub struct TasksApi;

#[derive(Object, Deserialize)]
pub struct CreateTaskRequest {
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub task_type: TaskType,
    /// Default `medium`.
    pub priority: Option<Priority>,
    /// Capabilities a worker or agent must have; the first picks the queue. Default: the type's.
    #[serde(default)]
    pub required_capabilities: Option<Vec<String>>,
    /// Free-form input for the handler (a JSON object).
    pub payload: Value,
    /// Repeating a request with the same key and body returns the same task (200).
    pub idempotency_key: Option<String>,
    /// Run no earlier than this time (RFC 3339).
    pub run_at: Option<DateTime<Utc>>,
    /// Default `TASK_EXECUTION_TIMEOUT`.
    pub timeout_seconds: Option<u32>,
    /// 1–100, default 3.
    pub max_attempts: Option<u32>,
}

#[derive(Object)]
pub struct TaskView {
    pub id: Uuid,
    #[oai(rename = "type")]
    pub task_type: String,
    pub priority: String,
    pub status: String,
    pub required_capabilities: Value,
    pub payload: Value,
    #[oai(skip_serializing_if_is_none)]
    pub result: Option<Value>,
    #[oai(skip_serializing_if_is_none)]
    pub error: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub message: Option<String>,
    /// 0–100.
    pub progress: i32,
    #[oai(skip_serializing_if_is_none)]
    pub agent_id: Option<Uuid>,
    pub attempt: i32,
    pub max_attempts: i32,
    pub timeout_seconds: i32,
    #[oai(skip_serializing_if_is_none)]
    pub idempotency_key: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub run_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[oai(skip_serializing_if_is_none)]
    pub execution_id: Option<Uuid>,
    #[oai(skip_serializing_if_is_none)]
    pub stage: Option<String>,
}

impl From<Model> for TaskView {
    fn from(m: Model) -> Self {
        Self {
            id: m.id,
            task_type: m.task_type,
            priority: m.priority,
            status: m.status,
            required_capabilities: m.required_capabilities,
            payload: m.payload,
            result: m.result,
            error: m.error,
            message: m.message,
            progress: m.progress,
            agent_id: m.agent_id,
            attempt: m.attempt,
            max_attempts: m.max_attempts,
            timeout_seconds: m.timeout_seconds,
            idempotency_key: m.idempotency_key,
            run_at: m.run_at,
            created_at: m.created_at,
            updated_at: m.updated_at,
            execution_id: m.execution_id,
            stage: m.stage,
        }
    }
}

#[derive(Object)]
pub struct TaskStatusView {
    pub task_id: Uuid,
    pub status: String,
    pub progress: i32,
    #[oai(skip_serializing_if_is_none)]
    pub message: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub agent_id: Option<Uuid>,
    pub attempt: i32,
    pub updated_at: DateTime<Utc>,
}

#[derive(ApiResponse)]
pub enum CreateTaskResponse {
    /// A new task.
    #[oai(status = 201)]
    Created(Json<Envelope<TaskView>>),
    /// The task an earlier request with the same idempotency key and body created.
    #[oai(status = 200)]
    Existing(Json<Envelope<TaskView>>),
}

#[derive(ApiResponse)]
pub enum TaskResponse {
    #[oai(status = 200)]
    Ok(Json<Envelope<TaskView>>),
}

#[derive(ApiResponse)]
pub enum TaskListResponse {
    #[oai(status = 200)]
    Ok(Json<ListEnvelope<TaskView>>),
}

#[derive(ApiResponse)]
pub enum TaskStatusResponse {
    #[oai(status = 200)]
    Ok(Json<Envelope<TaskStatusView>>),
}

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

/// Parses a list limit (1–1000, default 100).
pub fn limit(value: Option<u32>) -> Result<u64, ApiError> {
    match value.unwrap_or(DEFAULT_LIMIT) {
        l @ 1..=MAX_LIMIT => Ok(l as u64),
        _ => Err(ApiError::invalid_field(
            "limit",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        )),
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Tasks")]
impl TasksApi {
    /// Create a task. It is queued on `mcp:{capability}:{priority}` and run by a worker or agent
    /// with that capability.
    #[oai(path = "/tasks", method = "post")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: ApiJson<CreateTaskRequest>,
    ) -> ApiResult<CreateTaskResponse> {
        auth.0.require(Permission::TaskCreate)?;
        let r = body.0;
        let new = NewTask {
            task_type: r.task_type,
            priority: r.priority.unwrap_or(Priority::Medium),
            required_capabilities: r.required_capabilities.unwrap_or_default(),
            payload: r.payload,
            idempotency_key: r.idempotency_key,
            run_at: r.run_at,
            timeout_seconds: r.timeout_seconds,
            max_attempts: r.max_attempts,
        };
        Ok(match service::create(&state, new, &auth.0.actor()).await? {
            Created::New(t) => {
                crate::services::audit::record(
                    &state,
                    &auth.0,
                    "task.create",
                    Some(t.id.to_string()),
                    "success",
                    Some(serde_json::json!({"type": t.task_type, "priority": t.priority})),
                )
                .await;
                CreateTaskResponse::Created(ok(t.into()))
            }
            Created::Existing(t) => CreateTaskResponse::Existing(ok(t.into())),
        })
    }

    /// List tasks, newest first, filtered; page with `cursor`.
    #[oai(path = "/tasks", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        status: Query<Option<TaskStatus>>,
        priority: Query<Option<Priority>>,
        #[oai(name = "type")] task_type: Query<Option<TaskType>>,
        agent_id: Query<Option<Uuid>>,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> ApiResult<TaskListResponse> {
        auth.0.require(Permission::TaskRead)?;
        let after = match cursor.0.as_deref() {
            None | Some("") => None,
            Some(c) => Some(Uuid::parse_str(c).map_err(|_| {
                ApiError::invalid_field("cursor", "cursor is not one this API issued")
            })?),
        };
        let limit = self::limit(limit.0)?;
        let filter = ListFilter {
            status: status.0,
            priority: priority.0.map(|p| p.as_str().to_string()),
            task_type: task_type.0.map(|t| t.as_str().to_string()),
            agent_id: agent_id.0,
            after,
            limit,
        };
        let rows = tasks::list(&state.db.conn, &filter).await?;
        let next = (rows.len() as u64 == limit)
            .then(|| rows.last().map(|t| t.id.to_string()))
            .flatten();
        Ok(TaskListResponse::Ok(page(
            rows.into_iter().map(TaskView::from).collect(),
            next,
        )))
    }

    /// One task.
    #[oai(path = "/tasks/:id", method = "get")]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> ApiResult<TaskResponse> {
        auth.0.require(Permission::TaskRead)?;
        let task = find(&state, id.0).await?;
        Ok(TaskResponse::Ok(ok(task.into())))
    }

    /// A task's status and progress.
    #[oai(path = "/tasks/:id/status", method = "get")]
    async fn status(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> ApiResult<TaskStatusResponse> {
        auth.0.require(Permission::TaskRead)?;
        let t = find(&state, id.0).await?;
        Ok(TaskStatusResponse::Ok(ok(TaskStatusView {
            task_id: t.id,
            status: t.status,
            progress: t.progress,
            message: t.message.or(t.error),
            agent_id: t.agent_id,
            attempt: t.attempt,
            updated_at: t.updated_at,
        })))
    }
}

async fn find(state: &AppState, id: Uuid) -> ApiResult<Model> {
    tasks::find(&state.db.conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found("task"))
}
