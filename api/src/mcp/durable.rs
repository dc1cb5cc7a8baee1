//! Durable MCP tasks (the `io.modelcontextprotocol/tasks` extension) over our own records: a
//! task handle's id is a task id or a pipeline execution id, and `tasks/get` and `tasks/cancel`
//! read and change the database row. Nothing is kept in the replica, so a client that
//! reconnects to another replica, or after a restart, still finds its task.
//!
//! States: a task that is pending, scheduled, assigned, running or `failed` (ours: it will be
//! retried) is `working`; completed → `completed`; dead → `failed`; cancelled → `cancelled`.
//! An execution that is pending or running is `working`; completed, failed and cancelled map
//! to the same names.

use std::time::Duration;

use mcp_shared::{
    auth::Permission,
    domain::{event::EventType, task::TaskStatus},
    entities::{pipeline_executions::Model as Execution, tasks::Model},
};
use rmcp::{
    ErrorData as McpError, RoleServer,
    model::{
        CreateTaskResult, DetailedTask, ErrorCode as RpcCode, GetTaskResult, JsonObject,
        ProgressNotificationParam, Task, TaskPayload, TaskStatus as McpStatus,
    },
    service::RequestContext,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::results::{self, error_object};
use crate::{
    audit,
    error::{ApiError, ErrorCode},
    principal::Principal,
    services::{pipelines, tasks as task_service},
    state::AppState,
};

/// How often a client should poll `tasks/get`.
const POLL_INTERVAL_MS: u64 = 500;

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn seed(id: Uuid, status: McpStatus, created: String, updated: String, message: String) -> Task {
    Task::new(id.to_string(), status, created, updated)
        .with_status_message(message)
        .with_poll_interval_ms(POLL_INTERVAL_MS)
}

fn task_message(t: &Model) -> String {
    let mut m = format!("{} ({}%)", t.status, t.progress);
    if let Some(detail) = t.message.as_ref().or(t.error.as_ref()) {
        m.push_str(": ");
        m.push_str(detail);
    }
    m
}

fn task_status(t: &Model) -> McpStatus {
    match TaskStatus::parse(&t.status) {
        Some(TaskStatus::Completed) => McpStatus::Completed,
        Some(TaskStatus::Dead) => McpStatus::Failed,
        Some(TaskStatus::Cancelled) => McpStatus::Cancelled,
        _ => McpStatus::Working,
    }
}

fn execution_status(e: &Execution) -> McpStatus {
    match e.status.as_str() {
        "completed" => McpStatus::Completed,
        "failed" => McpStatus::Failed,
        "cancelled" => McpStatus::Cancelled,
        _ => McpStatus::Working,
    }
}

fn execution_message(e: &Execution) -> String {
    match (&e.current_stage, &e.error) {
        (_, Some(error)) => format!("{}: {error}", e.status),
        (Some(stage), None) => format!("{} (stage {stage})", e.status),
        (None, None) => e.status.clone(),
    }
}

/// The handle `submit_task` answers with when it follows a task.
pub fn created_for_task(t: &Model) -> CreateTaskResult {
    CreateTaskResult::new(seed(
        t.id,
        task_status(t),
        time(t.created_at),
        time(t.updated_at),
        task_message(t),
    ))
}

/// The handle `run_pipeline` answers with.
pub fn created_for_execution(e: &Execution) -> CreateTaskResult {
    CreateTaskResult::new(seed(
        e.id,
        execution_status(e),
        time(e.created_at),
        time(e.finished_at.unwrap_or(e.created_at)),
        execution_message(e),
    ))
}

/// A tool error as the JSON-RPC error of a protocol request: the code table's entry in `data`.
fn protocol_error(e: ApiError) -> McpError {
    let code = match e.code {
        ErrorCode::NotFound | ErrorCode::ValidationFailed => RpcCode::INVALID_PARAMS,
        ErrorCode::InternalError | ErrorCode::DependencyUnavailable => RpcCode::INTERNAL_ERROR,
        _ => RpcCode::INVALID_REQUEST,
    };
    McpError::new(code, e.message.clone(), Some(error_object(&e)))
}

fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(m) => m,
        _ => JsonObject::new(),
    }
}

/// What a durable task id names.
#[allow(clippy::large_enum_variant)] // one per request, matched at once
enum Record {
    Task(Model),
    Execution(Execution),
}

async fn find(state: &AppState, principal: &Principal, id: &str) -> Result<Record, ApiError> {
    let id: Uuid = id.parse().map_err(|_| {
        ApiError::invalid_field("taskId", "a task id is the UUID of a task or an execution")
    })?;
    match task_service::find(state, id).await {
        Ok(task) => {
            principal.require(Permission::TaskRead)?;
            results::visible_task(state, principal, task.clone())?;
            Ok(Record::Task(task))
        }
        Err(e) if e.code == ErrorCode::NotFound => {
            let execution = pipelines::find(state, id)
                .await
                .map_err(|_| ApiError::not_found("task"))?;
            principal.require(Permission::PipelineRead)?;
            Ok(Record::Execution(execution))
        }
        Err(e) => Err(e),
    }
}

/// `tasks/get`.
pub async fn get(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<GetTaskResult, McpError> {
    let detailed = match find(state, principal, id).await.map_err(protocol_error)? {
        Record::Task(t) => {
            let status = task_status(&t);
            let base = seed(
                t.id,
                status,
                time(t.created_at),
                time(t.updated_at),
                task_message(&t),
            );
            let payload = match status {
                McpStatus::Completed => {
                    let view =
                        results::visible_task(state, principal, t).map_err(protocol_error)?;
                    TaskPayload::Completed {
                        result: call_result(view),
                    }
                }
                McpStatus::Failed => TaskPayload::Failed {
                    error: object(json!({
                        "code": RpcCode::INTERNAL_ERROR.0,
                        "message": format!(
                            "the task is dead after {} attempts: {}",
                            t.attempt,
                            t.error.as_deref().unwrap_or("no error recorded")
                        ),
                        "data": {"task_id": t.id, "status": t.status},
                    })),
                },
                McpStatus::Cancelled => TaskPayload::Cancelled,
                _ => TaskPayload::Working,
            };
            DetailedTask::new(base, payload)
        }
        Record::Execution(e) => {
            let status = execution_status(&e);
            let base = seed(
                e.id,
                status,
                time(e.created_at),
                time(e.finished_at.unwrap_or(e.created_at)),
                execution_message(&e),
            );
            let payload = match status {
                McpStatus::Completed => TaskPayload::Completed {
                    result: call_result(
                        results::execution_json(state, e.id, principal)
                            .await
                            .map_err(protocol_error)?,
                    ),
                },
                McpStatus::Failed => TaskPayload::Failed {
                    error: object(json!({
                        "code": RpcCode::INTERNAL_ERROR.0,
                        "message": format!(
                            "the execution failed: {}",
                            e.error.as_deref().unwrap_or("no error recorded")
                        ),
                        "data": {"execution_id": e.id, "status": e.status},
                    })),
                },
                McpStatus::Cancelled => TaskPayload::Cancelled,
                _ => TaskPayload::Working,
            };
            DetailedTask::new(base, payload)
        }
    };
    Ok(GetTaskResult::new(detailed))
}

/// A completed tool call's result, as `tasks/get` carries it.
fn call_result(structured: Value) -> JsonObject {
    object(serde_json::to_value(results::success(structured)).unwrap_or(Value::Null))
}

/// `tasks/cancel`: cancels the task or execution (cancelling a cancelled one is harmless).
pub async fn cancel(state: &AppState, principal: &Principal, id: &str) -> Result<(), McpError> {
    let outcome = async {
        match find(state, principal, id).await? {
            Record::Task(t) => {
                principal.require(Permission::TaskCreate)?;
                if t.status == TaskStatus::Cancelled.as_str() {
                    return Ok(());
                }
                task_service::cancel(state, t.id).await?;
                audit::note(
                    "task.cancel",
                    Some(t.id.to_string()),
                    Some(json!({"via": "mcp"})),
                );
            }
            Record::Execution(e) => {
                principal.require(Permission::PipelineExecute)?;
                if e.status == "cancelled" {
                    return Ok(());
                }
                pipelines::cancel(state, e.id).await?;
                audit::note(
                    "pipeline.cancel",
                    Some(e.id.to_string()),
                    Some(json!({"via": "mcp"})),
                );
            }
        }
        Ok::<(), ApiError>(())
    };
    outcome.await.map_err(protocol_error)
}

/// Waits until the task ends or `timeout` passes, sending progress notifications when the
/// request asked for them; returns the task as it is then.
pub async fn wait_task(
    state: &AppState,
    id: Uuid,
    timeout: Duration,
    context: &RequestContext<RoleServer>,
) -> Result<Model, ApiError> {
    // Subscribe before reading, so an end between the read and the wait is not missed.
    let mut events = state.bus.subscribe();
    let token = context.meta.get_progress_token();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut reported = -1;
    loop {
        let task = task_service::find(state, id).await?;
        if let Some(token) = &token
            && task.progress != reported
        {
            reported = task.progress;
            let note = ProgressNotificationParam::new(token.clone(), f64::from(task.progress))
                .with_total(100.0);
            let mut note = note;
            note.message = Some(task_message(&task));
            let _ = context.peer.notify_progress(note).await;
        }
        if TaskStatus::parse(&task.status).is_some_and(TaskStatus::is_terminal) {
            return Ok(task);
        }
        loop {
            let relevant = tokio::select! {
                ev = events.recv() => match ev {
                    Ok(ev) => ev.task_id == Some(id) && !matches!(ev.kind, EventType::TaskCreated),
                    // Missed events: re-read the row rather than trust the stream.
                    Err(_) => true,
                },
                () = tokio::time::sleep_until(deadline) => return task_service::find(state, id).await,
            };
            if relevant {
                break;
            }
        }
    }
}

/// Waits until the execution ends or `timeout` passes, sending progress notifications (overall
/// progress, and the current stage with its records) when the request asked for them; returns
/// the execution as it is then.
pub async fn wait_execution(
    state: &AppState,
    id: Uuid,
    timeout: Duration,
    context: &RequestContext<RoleServer>,
) -> Result<Execution, ApiError> {
    let Some(token) = context.meta.get_progress_token() else {
        return pipelines::wait(state, id, timeout).await;
    };
    let mut events = state.bus.subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut reported = (-1, String::new());
    loop {
        let (execution, stages, progress) = pipelines::progress(state, id).await?;
        let stage = execution.current_stage.clone().unwrap_or_default();
        if (progress, stage.clone()) != reported {
            let detail = stages
                .iter()
                .find(|s| s.stage.as_str() == stage)
                .map(|s| format!(", {} of {} records", s.records_out, s.records_in))
                .unwrap_or_default();
            let mut note = ProgressNotificationParam::new(token.clone(), f64::from(progress))
                .with_total(100.0);
            note.message = Some(format!("{}: stage {stage}{detail}", execution.status));
            let _ = context.peer.notify_progress(note).await;
            reported = (progress, stage);
        }
        if results::execution_ended(&execution.status) {
            return Ok(execution);
        }
        loop {
            let relevant = tokio::select! {
                ev = events.recv() => match ev {
                    Ok(ev) => ev.execution_id == Some(id),
                    Err(_) => true,
                },
                () = tokio::time::sleep_until(deadline) => return pipelines::find(state, id).await,
            };
            if relevant {
                break;
            }
        }
    }
}
