//! Resources and prompts. Resources are read-only JSON views of the records the tools return:
//! `task://{id}`, `pipeline://{id}`, `pipeline://{id}/report` and `queue://{name}`; the queues
//! are listed, the rest are reached through the templates. A client subscribes with
//! `subscriptions/listen` (protocol 2026-07-28: one streamed request, so it needs no session and
//! any replica serves it) and is sent `notifications/resources/updated` as the event bus reports
//! changes. Prompts give a model a worked plan for two common jobs.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use mcp_shared::{auth::Permission, domain::event::EventType};
use poem_openapi::types::ToJSON;
use rmcp::{
    ErrorData as McpError,
    model::{
        GetPromptRequestParams, GetPromptResult, ListResourcesResult, Prompt, PromptArgument,
        PromptMessage, ReadResourceResult, Resource, ResourceContents, ResourceTemplate, Role,
        SubscriptionFilter,
    },
    service::SubscriptionContext,
};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::results;
use crate::{
    error::ApiError,
    principal::Principal,
    services::{pipelines, queues, tasks as task_service},
    state::AppState,
};

const JSON: &str = "application/json";

pub fn templates() -> Vec<ResourceTemplate> {
    [
        (
            "task://{id}",
            "task",
            "A task: status, progress, result or error.",
        ),
        (
            "pipeline://{id}",
            "pipeline execution",
            "A pipeline execution with per-stage progress.",
        ),
        (
            "pipeline://{id}/report",
            "pipeline report",
            "The report of a completed execution.",
        ),
        (
            "queue://{name}",
            "queue",
            "A queue's waiting counts per tier, running, dead, paused.",
        ),
    ]
    .into_iter()
    .map(|(uri, name, description)| {
        ResourceTemplate::new(uri, name)
            .with_description(description)
            .with_mime_type(JSON)
    })
    .collect()
}

/// The queues, as resources (tasks and executions are too many to list: use the templates).
pub async fn list(
    state: &AppState,
    principal: &Principal,
) -> Result<ListResourcesResult, McpError> {
    if principal.require(Permission::SystemRead).is_err() {
        return Ok(ListResourcesResult::with_all_items(vec![]));
    }
    let queues = queues::list(state).await.map_err(protocol)?;
    Ok(ListResourcesResult::with_all_items(
        queues
            .into_iter()
            .map(|q| {
                Resource::new(format!("queue://{}", q.name), q.name.clone()).with_mime_type(JSON)
            })
            .collect(),
    ))
}

fn protocol(e: ApiError) -> McpError {
    let data = results::error_object(&e);
    if e.code == crate::error::ErrorCode::NotFound {
        McpError::resource_not_found(e.message, Some(data))
    } else {
        McpError::invalid_request(e.message, Some(data))
    }
}

fn id(text: &str) -> Result<Uuid, ApiError> {
    text.parse()
        .map_err(|_| ApiError::invalid_field("uri", "the id in the URI is not a UUID"))
}

pub async fn read(
    state: &AppState,
    principal: &Principal,
    uri: &str,
) -> Result<ReadResourceResult, McpError> {
    let value = async {
        if let Some(rest) = uri.strip_prefix("task://") {
            principal.require(Permission::TaskRead)?;
            let task = task_service::find(state, id(rest)?).await?;
            return results::visible_task(state, principal, task);
        }
        if let Some(rest) = uri.strip_prefix("pipeline://") {
            principal.require(Permission::PipelineRead)?;
            return match rest.strip_suffix("/report") {
                Some(execution) => {
                    let execution = id(execution)?;
                    let report = pipelines::report(state, execution).await?;
                    Ok(json!({"execution_id": execution, "report": report}))
                }
                None => results::execution_json(state, id(rest)?, principal).await,
            };
        }
        if let Some(name) = uri.strip_prefix("queue://") {
            principal.require(Permission::SystemRead)?;
            let wanted = name.strip_prefix("mcp:").unwrap_or(name);
            let queue = queues::list(state)
                .await?
                .into_iter()
                .find(|q| q.capability == wanted)
                .ok_or_else(|| ApiError::not_found("queue"))?;
            return Ok(json!({"queue": queue.to_json()}));
        }
        Err(ApiError::not_found("resource"))
    }
    .await
    .map_err(protocol)?;
    let text = serde_json::to_string_pretty(&value).unwrap_or_default();
    Ok(ReadResourceResult::new(vec![
        ResourceContents::text(text, uri).with_mime_type(JSON),
    ]))
}

/// The permission reading a resource needs, or `None` for a URI that names none of ours.
fn permission_for(uri: &str) -> Option<Permission> {
    if let Some(rest) = uri.strip_prefix("task://") {
        return rest.parse::<Uuid>().ok().map(|_| Permission::TaskRead);
    }
    if let Some(rest) = uri.strip_prefix("pipeline://") {
        let id = rest.strip_suffix("/report").unwrap_or(rest);
        return id.parse::<Uuid>().ok().map(|_| Permission::PipelineRead);
    }
    uri.strip_prefix("queue://")
        .filter(|name| !name.is_empty())
        .map(|_| Permission::SystemRead)
}

/// The subscriptions the server honours: resource updates for URIs of ours.
pub fn accepted(requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
    let uris: Vec<String> = requested
        .resource_subscriptions
        .iter()
        .flatten()
        .filter(|uri| permission_for(uri).is_some())
        .cloned()
        .collect();
    let mut filter = SubscriptionFilter::new();
    filter.resource_subscriptions = Some(uris);
    Some(filter)
}

/// The shortest gap between two updates of one queue (every task event changes some count).
const QUEUE_UPDATE_GAP: Duration = Duration::from_millis(500);

/// Streams `notifications/resources/updated` for the subscribed URIs the caller may read, from
/// the event bus, until the client cancels the request or goes away.
pub async fn listen(
    state: &AppState,
    principal: &Principal,
    subscription: SubscriptionContext,
) -> Result<(), McpError> {
    let uris: Vec<String> = subscription
        .accepted()
        .resource_subscriptions
        .iter()
        .flatten()
        .filter(|uri| permission_for(uri).is_some_and(|p| principal.role.allows(p)))
        .cloned()
        .collect();
    let mut events = state.bus.subscribe();
    let mut queue_sent: HashMap<String, Instant> = HashMap::new();
    loop {
        let event = tokio::select! {
            () = subscription.cancelled() => return Ok(()),
            ev = events.recv() => ev,
        };
        let changed: Vec<&String> = match &event {
            Ok(ev) => uris
                .iter()
                .filter(|uri| {
                    let task = ev.task_id.map(|id| format!("task://{id}"));
                    let execution = ev.execution_id.map(|id| format!("pipeline://{id}"));
                    let report_ready = matches!(ev.kind, EventType::PipelineCompleted);
                    Some(uri.as_str()) == task.as_deref()
                        || Some(uri.as_str()) == execution.as_deref()
                        || (report_ready
                            && execution
                                .as_deref()
                                .is_some_and(|e| uri.strip_suffix("/report") == Some(e)))
                        || (uri.starts_with("queue://") && ev.task_id.is_some())
                })
                .collect(),
            // Missed events: everything may have changed.
            Err(RecvError::Lagged(_)) => uris.iter().collect(),
            Err(RecvError::Closed) => return Ok(()),
        };
        for uri in changed {
            if uri.starts_with("queue://") {
                let now = Instant::now();
                if queue_sent
                    .get(uri)
                    .is_some_and(|at| now.duration_since(*at) < QUEUE_UPDATE_GAP)
                {
                    continue;
                }
                queue_sent.insert(uri.clone(), now);
            }
            if subscription
                .sink()
                .notify_resource_updated(uri.clone())
                .await
                .is_err()
            {
                return Ok(());
            }
        }
    }
}

pub fn prompts() -> Vec<Prompt> {
    vec![
        Prompt::new(
            "triage_dead_tasks",
            Some(
                "Find tasks whose attempts ran out, group them by cause and decide what to retry.",
            ),
            Some(vec![PromptArgument::new("limit").with_description(
                "How many dead tasks to look at (default 50).",
            )]),
        ),
        Prompt::new(
            "run_dataset_and_summarise",
            Some("Run a dataset through the six-stage pipeline and summarise its quality."),
            Some(vec![
                PromptArgument::new("dataset_id")
                    .with_description("The id of an uploaded dataset.")
                    .with_required(true),
                PromptArgument::new("quality_threshold")
                    .with_description("0..1: records scoring lower are dropped (default 0.5)."),
            ]),
        ),
    ]
}

fn argument<'a>(request: &'a GetPromptRequestParams, name: &str) -> Option<&'a Value> {
    request.arguments.as_ref().and_then(|a| a.get(name))
}

pub fn prompt(request: &GetPromptRequestParams) -> Result<GetPromptResult, McpError> {
    let text = match request.name.as_str() {
        "triage_dead_tasks" => {
            let limit = argument(request, "limit")
                .and_then(|v| v.as_str().and_then(|s| s.parse().ok()).or(v.as_u64()))
                .unwrap_or(50);
            format!(
                "Triage the dead tasks of TechDeck MCP.\n\
                 1. Call list_tasks with status \"dead\" and limit {limit}.\n\
                 2. Group the tasks by their `error` (the cause) and by `type`.\n\
                 3. For each group say whether the cause is transient (a timeout, a lost worker, \
                 a dependency that was down) or permanent (a malformed payload, a bug).\n\
                 4. For transient groups, call retry_task on each task (the call is idempotent); \
                 for permanent ones, do not retry and say what must change in the payload.\n\
                 5. Check list_queues for paused queues or a growing dead count, and \
                 system_health for alerts that explain the failures.\n\
                 Answer with a table: cause, count, task ids, action taken."
            )
        }
        "run_dataset_and_summarise" => {
            let Some(dataset) = argument(request, "dataset_id").and_then(Value::as_str) else {
                return Err(McpError::invalid_params(
                    "the argument dataset_id is required",
                    Some(json!({"code": "validation_failed", "details": {"field": "dataset_id"}})),
                ));
            };
            let threshold = argument(request, "quality_threshold")
                .and_then(|v| {
                    v.as_str()
                        .and_then(|s| s.parse::<f64>().ok())
                        .or(v.as_f64())
                })
                .unwrap_or(0.5);
            format!(
                "Run dataset {dataset} through the TechDeck MCP pipeline and summarise its \
                 quality.\n\
                 1. Call run_pipeline with dataset_id \"{dataset}\" and options \
                 {{\"quality_threshold\": {threshold}}}. It answers with a durable task (or, \
                 without the tasks extension, call it with wait: true).\n\
                 2. Follow it with get_execution until its status is completed, failed or \
                 cancelled; report each stage's records in and out as it goes.\n\
                 3. When completed, call get_execution_report.\n\
                 4. Summarise: records in and out per stage, PII found by kind, bias scores \
                 over the threshold by category, the quality histogram, the most common reject \
                 reasons, and whether the dataset is fit for training."
            )
        }
        other => {
            return Err(McpError::invalid_params(
                format!("unknown prompt {other:?}; prompts/list names them"),
                None,
            ));
        }
    };
    Ok(
        GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)]).with_description(
            prompts()
                .into_iter()
                .find(|p| p.name == request.name)
                .and_then(|p| p.description)
                .unwrap_or_default(),
        ),
    )
}
