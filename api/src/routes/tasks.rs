//! Tasks: create (one or a batch), list, read, status, cancel, retry, assign; and the agent's
//! reports on a task it runs (progress, complete, fail).

use chrono::{DateTime, Utc};
use mcp_shared::{
    auth::Permission,
    domain::task::{Priority, TaskStatus, TaskType},
    entities::tasks::Model,
};
use poem::web::Data;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::{Binary, Json},
};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::{ApiTags, Envelope, ListEnvelope, ok, page};
use crate::{
    audit,
    auth::Auth,
    error::{ApiError, ApiResult, ErrorCode},
    payload::{ApiJson, from_value},
    services::{
        runs, shards,
        tasks::{self as service, Created, ListFilter, NewTask},
    },
    state::AppState,
    views::{self, CreateTaskRequest, TaskView},
};

pub struct TasksApi;

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
    /// Set while the task waits on a capability no live worker or agent holds.
    #[oai(skip_serializing_if_is_none)]
    pub waiting_for: Option<String>,
}

#[derive(Object, Deserialize)]
pub struct BatchRequest {
    /// Up to 10,000 task requests (priority defaults to `low`).
    pub tasks: Vec<Value>,
}

#[derive(Object)]
pub struct BatchItemError {
    pub code: String,
    pub message: String,
    #[oai(skip_serializing_if_is_none)]
    pub field: Option<String>,
}

#[derive(Object)]
pub struct BatchRejection {
    /// Position in the submitted `tasks` array.
    pub index: u64,
    pub error: BatchItemError,
}

#[derive(Object)]
pub struct BatchResult {
    pub accepted: u64,
    /// Ids of the accepted tasks, in submission order.
    pub task_ids: Vec<Uuid>,
    pub rejected: Vec<BatchRejection>,
}

#[derive(Object, Deserialize, Default)]
pub struct AssignCriteria {
    pub capabilities: Option<Vec<String>>,
    pub agent_type: Option<mcp_shared::domain::agent::AgentType>,
    pub agent_id: Option<Uuid>,
    /// 0..1: the least spare capacity the agent must have.
    pub min_health: Option<f64>,
}

#[derive(Object, Deserialize)]
pub struct AssignRequest {
    #[serde(default)]
    pub criteria: Option<AssignCriteria>,
}

#[derive(Object)]
pub struct Assignment {
    pub task_id: Uuid,
    pub agent_id: Uuid,
    pub assigned_at: DateTime<Utc>,
    pub status: String,
}

#[derive(Object, Deserialize)]
pub struct ProgressRequest {
    /// 0–100.
    pub progress: i32,
    pub message: Option<String>,
    /// Records done so far, for a pipeline shard (shown in the execution's progress).
    pub records_done: Option<u64>,
}

#[derive(Object, Deserialize)]
pub struct CompleteRequest {
    pub result: Value,
}

#[derive(Object, Deserialize)]
pub struct FailRequest {
    pub error: String,
    /// False sends the task straight to `dead`.
    pub retryable: bool,
}

#[derive(ApiResponse)]
pub enum BatchResponse {
    #[oai(status = 202)]
    Accepted(Json<Envelope<BatchResult>>),
}

#[derive(ApiResponse)]
pub enum AssignResponse {
    #[oai(status = 200)]
    Ok(Json<Envelope<Assignment>>),
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

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Tasks")]
impl TasksApi {
    /// Create a task. It is queued on `mcp:{capability}:{priority}` and run by a worker or agent
    /// with that capability.
    #[oai(path = "/tasks", method = "post", operation_id = "createTask")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: ApiJson<CreateTaskRequest>,
    ) -> ApiResult<CreateTaskResponse> {
        auth.0.require(Permission::TaskCreate)?;
        let new = NewTask::from_request(body.0, Priority::Medium);
        Ok(match service::create(&state, new, &auth.0.actor()).await? {
            Created::New(t) => {
                audit::note(
                    "task.create",
                    Some(t.id.to_string()),
                    Some(serde_json::json!({"type": t.task_type, "priority": t.priority})),
                );
                CreateTaskResponse::Created(ok(TaskView::for_reader(t, &auth.0)))
            }
            Created::Existing(t) => {
                CreateTaskResponse::Existing(ok(TaskView::for_reader(t, &auth.0)))
            }
        })
    }

    /// List tasks, newest first, filtered; page with `cursor`.
    #[oai(path = "/tasks", method = "get", operation_id = "listTasks")]
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
        let after = views::cursor(cursor.0.as_deref())?;
        let limit = views::limit(limit.0)?;
        let filter = ListFilter {
            status: status.0,
            priority: priority.0.map(|p| p.as_str().to_string()),
            task_type: task_type.0.map(|t| t.as_str().to_string()),
            agent_id: auth.0.agent_id().or(agent_id.0),
            after,
            limit,
        };
        let rows = service::list(&state, &filter).await?;
        let next = views::next_cursor(&rows, limit, |t| t.id.to_string());
        Ok(TaskListResponse::Ok(page(
            rows.into_iter()
                .map(|t| TaskView::read(t, &auth.0, &state.observability.alerts))
                .collect(),
            next,
        )))
    }

    /// One task.
    #[oai(path = "/tasks/:id", method = "get", operation_id = "getTask")]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> ApiResult<TaskResponse> {
        auth.0.require(Permission::TaskRead)?;
        let task = service::find(&state, id.0).await?;
        visible(&auth, &task)?;
        Ok(TaskResponse::Ok(ok(TaskView::read(
            task,
            &auth.0,
            &state.observability.alerts,
        ))))
    }

    /// A task's status and progress.
    #[oai(
        path = "/tasks/:id/status",
        method = "get",
        operation_id = "getTaskStatus"
    )]
    async fn status(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> ApiResult<TaskStatusResponse> {
        auth.0.require(Permission::TaskRead)?;
        let t = service::find(&state, id.0).await?;
        visible(&auth, &t)?;
        let waiting_for = views::task_waiting_for(&t.status, &t.queue, &state.observability.alerts);
        Ok(TaskStatusResponse::Ok(ok(TaskStatusView {
            waiting_for,
            task_id: t.id,
            status: t.status,
            progress: t.progress,
            message: t.message.or(t.error),
            agent_id: t.agent_id,
            attempt: t.attempt,
            updated_at: t.updated_at,
        })))
    }

    /// Create up to 10,000 tasks at once (priority defaults to `low`). Invalid items are rejected
    /// by index; the rest are accepted and queued as their queues have room.
    #[oai(
        path = "/tasks/batch",
        method = "post",
        operation_id = "createTaskBatch"
    )]
    async fn batch(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: ApiJson<BatchRequest>,
    ) -> ApiResult<BatchResponse> {
        auth.0.require(Permission::TaskCreate)?;
        let items = body.0.tasks;
        if items.len() > service::MAX_BATCH {
            return Err(ApiError::new(
                ErrorCode::BatchTooLarge,
                format!(
                    "a batch holds at most {} tasks; split it",
                    service::MAX_BATCH
                ),
            ));
        }
        let parsed = items
            .into_iter()
            .map(|v| {
                from_value::<CreateTaskRequest>(v).map(|r| NewTask::from_request(r, Priority::Low))
            })
            .collect();
        let (ids, rejected) = service::create_batch(&state, parsed, &auth.0.actor()).await?;
        audit::note(
            "task.batch",
            None,
            Some(serde_json::json!({"accepted": ids.len(), "rejected": rejected.len()})),
        );
        Ok(BatchResponse::Accepted(ok(BatchResult {
            accepted: ids.len() as u64,
            task_ids: ids,
            rejected: rejected
                .into_iter()
                .map(|r| BatchRejection {
                    index: r.index as u64,
                    error: BatchItemError {
                        code: r.error.code.to_string(),
                        message: r.error.message.clone(),
                        field: r
                            .error
                            .details
                            .as_ref()
                            .and_then(|d| d["field"].as_str())
                            .map(String::from),
                    },
                })
                .collect(),
        })))
    }

    /// Cancel: pending tasks at once; running ones at the worker's or agent's next progress report.
    #[oai(
        path = "/tasks/:id/cancel",
        method = "post",
        operation_id = "cancelTask"
    )]
    async fn cancel(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> ApiResult<TaskResponse> {
        auth.0.require(Permission::TaskCreate)?;
        let t = service::cancel(&state, id.0).await?;
        audit::note("task.cancel", Some(id.0.to_string()), None);
        Ok(TaskResponse::Ok(ok(TaskView::for_reader(t, &auth.0))))
    }

    /// Re-drive a dead or cancelled task (back to pending, with a fresh attempt budget).
    #[oai(path = "/tasks/:id/retry", method = "post", operation_id = "retryTask")]
    async fn retry(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> ApiResult<TaskResponse> {
        auth.0.require(Permission::TaskCreate)?;
        let t = service::retry(&state, id.0).await?;
        audit::note("task.retry", Some(id.0.to_string()), None);
        Ok(TaskResponse::Ok(ok(TaskView::for_reader(t, &auth.0))))
    }

    /// Route a task to the healthiest, least-loaded agent matching the criteria.
    #[oai(
        path = "/tasks/:id/assign",
        method = "post",
        operation_id = "assignTask"
    )]
    async fn assign(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: ApiJson<AssignRequest>,
    ) -> ApiResult<AssignResponse> {
        auth.0.require(Permission::TaskAssign)?;
        let c = body.0.criteria.unwrap_or_default();
        if let Some(h) = c.min_health
            && !(0.0..=1.0).contains(&h)
        {
            return Err(ApiError::invalid_field(
                "criteria.min_health",
                "min_health is between 0 and 1",
            ));
        }
        let criteria = service::Criteria {
            capabilities: c.capabilities,
            agent_type: c.agent_type,
            agent_id: c.agent_id,
            min_health: c.min_health,
        };
        let (task, agent_id) = service::assign(&state, id.0, criteria).await?;
        audit::note(
            "task.assign",
            Some(id.0.to_string()),
            Some(serde_json::json!({"agent_id": agent_id})),
        );
        Ok(AssignResponse::Ok(ok(Assignment {
            task_id: task.id,
            agent_id,
            assigned_at: task.updated_at,
            status: task.status,
        })))
    }

    /// The agent reports progress. Answers 409 `task_cancelled` when the task was cancelled.
    #[oai(
        path = "/tasks/:id/progress",
        method = "post",
        operation_id = "reportTaskProgress"
    )]
    async fn progress(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: ApiJson<ProgressRequest>,
    ) -> ApiResult<TaskResponse> {
        let agent = reporting_agent(&auth)?;
        let r = body.0;
        if !(0..=100).contains(&r.progress) {
            return Err(ApiError::invalid_field(
                "progress",
                "progress is between 0 and 100",
            ));
        }
        let t = runs::report_progress(&state, agent, id.0, r.progress, r.message, r.records_done)
            .await?;
        Ok(TaskResponse::Ok(ok(TaskView::for_reader(t, &auth.0))))
    }

    /// The agent completes the task. Repeating the same completion is harmless.
    #[oai(
        path = "/tasks/:id/complete",
        method = "post",
        operation_id = "completeTask"
    )]
    async fn complete(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: ApiJson<CompleteRequest>,
    ) -> ApiResult<TaskResponse> {
        let agent = reporting_agent(&auth)?;
        let t = runs::report_complete(&state, agent, id.0, body.0.result).await?;
        Ok(TaskResponse::Ok(ok(TaskView::for_reader(t, &auth.0))))
    }

    /// The agent fails the attempt; retried with backoff while attempts remain and it is retryable.
    #[oai(path = "/tasks/:id/fail", method = "post", operation_id = "failTask")]
    async fn fail(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: ApiJson<FailRequest>,
    ) -> ApiResult<TaskResponse> {
        let agent = reporting_agent(&auth)?;
        let r = body.0;
        let t = runs::report_fail(&state, agent, id.0, &r.error, r.retryable).await?;
        Ok(TaskResponse::Ok(ok(TaskView::for_reader(t, &auth.0))))
    }

    /// The input of a pipeline shard the agent runs, streamed as NDJSON in clear: raw records
    /// (`{"line", "raw"}`) for standardization, canonical records for validation, processing
    /// and quality assessment. Marks the shard started.
    #[oai(
        path = "/tasks/:id/shard/input",
        method = "get",
        operation_id = "getShardInput"
    )]
    async fn shard_input(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> ApiResult<ShardInputResponse> {
        let agent = reporting_agent(&auth)?;
        let (_, reader, records) = shards::input(&state, agent, id.0).await?;
        Ok(ShardInputResponse::Ok(
            Binary(poem::Body::from_async_read(reader)),
            records,
        ))
    }

    /// The output of a pipeline shard the agent runs: canonical records as NDJSON, streamed
    /// (up to `MCP_MAX_DATASET_BYTES`). Every line is checked; a bad one refuses the upload with
    /// 422 naming the line, and nothing is stored. Writing again replaces the earlier output.
    #[oai(
        path = "/tasks/:id/shard/output",
        method = "put",
        operation_id = "putShardOutput"
    )]
    async fn shard_output(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: ShardOutputBody,
    ) -> ApiResult<ShardOutputResponse> {
        let agent = reporting_agent(&auth)?;
        let stored = shards::output(&state, agent, id.0, body.0).await?;
        Ok(ShardOutputResponse::Ok(ok(ShardOutputView {
            task_id: id.0,
            records: stored.records,
            bytes: stored.bytes,
        })))
    }
}

#[derive(ApiResponse)]
pub enum ShardInputResponse {
    /// The shard's input records, one JSON object per line; `x-records-total` counts them.
    #[oai(status = 200, content_type = "application/x-ndjson")]
    Ok(Binary<poem::Body>, #[oai(header = "x-records-total")] u64),
}

/// A shard's output, one canonical record per line.
pub struct ShardOutputBody(pub poem::Body);

impl<'a> poem_openapi::ApiExtractor<'a> for ShardOutputBody {
    const TYPES: &'static [poem_openapi::ApiExtractorType] =
        &[poem_openapi::ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn request_meta() -> Option<poem_openapi::registry::MetaRequest> {
        use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchema, MetaSchemaRef};
        Some(MetaRequest {
            description: Some(
                "Canonical records, one per line: `{id, source, messages: [{role, content}], metadata}`.",
            ),
            content: vec![MetaMediaType {
                content_type: "application/x-ndjson",
                schema: MetaSchemaRef::Inline(Box::new(MetaSchema {
                    format: Some("binary"),
                    ..MetaSchema::new("string")
                })),
            }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a poem::Request,
        body: &mut poem::RequestBody,
        _param_opts: poem_openapi::ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        let content_type = request.content_type().unwrap_or_default();
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if !matches!(essence, "application/x-ndjson" | "application/jsonl") {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "send the shard's output as application/x-ndjson",
            )
            .into());
        }
        Ok(Self(body.take()?))
    }
}

#[derive(Object)]
pub struct ShardOutputView {
    pub task_id: Uuid,
    /// Records stored.
    pub records: u64,
    /// Bytes received.
    pub bytes: u64,
}

#[derive(ApiResponse)]
pub enum ShardOutputResponse {
    #[oai(status = 200)]
    Ok(Json<Envelope<ShardOutputView>>),
}

/// An agent may see only tasks routed to it.
fn visible(auth: &Auth, task: &Model) -> ApiResult<()> {
    match auth.0.agent_id() {
        Some(me) if task.agent_id != Some(me) => {
            Err(ApiError::forbidden("this task is not routed to you"))
        }
        _ => Ok(()),
    }
}

/// The agent id of the caller, or 403 for users (only agents report on their tasks).
fn reporting_agent(auth: &Auth) -> ApiResult<Uuid> {
    auth.0.require(Permission::TaskReport)?;
    auth.0
        .agent_id()
        .ok_or_else(|| ApiError::forbidden("only the agent a task is routed to reports on it"))
}
