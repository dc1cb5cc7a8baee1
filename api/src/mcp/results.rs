//! What tool calls and durable tasks answer: a tool's result or its error (the REST envelope's
//! `{code, message, details}`), and the task and execution views they carry.

use mcp_shared::{domain::pipeline::PipelineStatus, entities::tasks::Model};
use poem_openapi::types::ToJSON;
use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    error::ApiError,
    principal::Principal,
    services::pipelines,
    state::AppState,
    views::{ExecutionProgress, ExecutionView, TaskView},
};

pub fn success(value: Value) -> CallToolResult {
    let text = serde_json::to_string_pretty(&value).unwrap_or_default();
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(value);
    result
}

/// The error as an MCP tool error: the REST envelope's `{code, message, details}`.
pub fn failure(e: &ApiError) -> CallToolResult {
    let error = error_object(e);
    let mut result = CallToolResult::error(vec![ContentBlock::text(format!(
        "{}: {}",
        e.code, e.message
    ))]);
    result.structured_content = Some(json!({ "error": error }));
    result
}

pub fn error_object(e: &ApiError) -> Value {
    let mut error = json!({"code": e.code.as_str(), "message": e.message});
    if let Some(details) = &e.details {
        error["details"] = details.clone();
    }
    error
}

pub fn to_json<T: ToJSON>(view: T) -> Value {
    view.to_json().unwrap_or(Value::Null)
}

/// The task view, or 403 for an agent asking about a task not routed to it.
pub fn visible_task(
    state: &AppState,
    principal: &Principal,
    task: Model,
) -> Result<Value, ApiError> {
    match principal.agent_id() {
        Some(me) if task.agent_id != Some(me) => {
            Err(ApiError::forbidden("this task is not routed to you"))
        }
        _ => Ok(json!({
            "task": to_json(TaskView::read(task, principal, &state.observability.alerts))
        })),
    }
}

/// An execution with its per-stage progress.
pub async fn execution_json(
    state: &AppState,
    id: Uuid,
    reader: &Principal,
) -> Result<Value, ApiError> {
    let (e, stages, progress) = pipelines::progress(state, id).await?;
    let alerts = &state.observability.alerts;
    let progress = to_json(ExecutionProgress {
        waiting_for: crate::views::execution_waiting_for(&e, alerts),
        execution_id: e.id,
        status: e.status.clone(),
        progress,
        current_stage: e.current_stage.clone(),
        stages,
    });
    Ok(json!({
        "execution": to_json(ExecutionView::read(e, reader, alerts)),
        "progress": progress,
    }))
}

/// Whether an execution's status is final.
pub fn execution_ended(status: &str) -> bool {
    PipelineStatus::parse(status).is_some_and(PipelineStatus::is_terminal)
}
