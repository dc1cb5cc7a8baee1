//! The tool catalog: what each tool does (written for a model), the permission it needs, its
//! argument schema (from the REST request types), and the service call behind it.
//!
//! Arguments are parsed by the same rules as REST bodies before anything runs: a bad argument
//! answers `validation_failed` naming the field, and never reaches the engine. Every mutating
//! tool takes an `idempotency_key`; when it is omitted, one is derived from the caller and the
//! arguments, so a model repeating a call gets the first call's result instead of a second task.

use std::time::Duration;

use mcp_shared::{
    auth::Permission,
    domain::{
        agent::{AgentStatus, AgentType},
        task::{Priority, TaskStatus, TaskType},
    },
};
use poem_openapi::Object;
use rmcp::{
    ErrorData as McpError, RoleServer,
    model::{
        CallToolRequestParams, CallToolResponse, CreateTaskResult, JsonObject, Tool,
        ToolAnnotations,
    },
    service::RequestContext,
};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    durable,
    results::{error_object, execution_json, failure, success, to_json, visible_task},
    schema,
};
use crate::{
    audit,
    directory::Query,
    error::{ApiError, ErrorCode},
    payload::from_value,
    principal::Principal,
    services::{
        self, agents, monitoring, pipelines,
        queues::{self as queue_service},
        tasks::{self as task_service, Created, ListFilter, NewTask},
    },
    state::AppState,
    views::{self, CreateTaskRequest, ExecutionView, TaskView},
};

/// Longest a tool waits for a task or execution to end before answering with its state.
const MAX_WAIT_MS: u64 = pipelines::MAX_WAIT_MS;
const DEFAULT_WAIT_MS: u64 = 30_000;

/// The schema of `submit_task`: a task request plus how to wait. Parsed in two parts (the
/// waiting fields, then the task request), so an error names the field as REST does.
#[derive(Object)]
pub struct SubmitTaskArguments {
    #[oai(flatten)]
    pub task: CreateTaskRequest,
    /// Follow the task until it ends. With the MCP tasks extension the call answers at once
    /// with a durable task handle (its id is the task's id); otherwise it waits up to
    /// `wait_timeout_ms` and answers with the task as it is then.
    pub wait: Option<bool>,
    /// 1..300000, default 30000.
    pub wait_timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
struct WaitArguments {
    wait: Option<bool>,
    wait_timeout_ms: Option<u64>,
}

#[derive(Object, Deserialize)]
pub struct SubmitBatchArguments {
    /// Up to 10,000 tasks; priority defaults to `low`. An item without `idempotency_key` gets
    /// one derived from the batch's arguments and its position.
    pub tasks: Vec<CreateTaskRequest>,
}

#[derive(Object, Deserialize)]
pub struct TaskIdArguments {
    /// The task's id (a UUID).
    pub task_id: Uuid,
}

#[derive(Object, Deserialize)]
pub struct TaskActionArguments {
    /// The task's id (a UUID).
    pub task_id: Uuid,
    /// Names this request; repeating the call is harmless either way (see the description).
    pub idempotency_key: Option<String>,
}

#[derive(Object, Deserialize)]
pub struct ListTasksArguments {
    pub status: Option<TaskStatus>,
    pub priority: Option<Priority>,
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub task_type: Option<TaskType>,
    pub agent_id: Option<Uuid>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1..1000, default 100.
    pub limit: Option<u32>,
}

#[derive(Object, Deserialize)]
pub struct ExecutionIdArguments {
    /// The execution's id (a UUID), as run_pipeline returned it.
    pub execution_id: Uuid,
}

#[derive(Object, Deserialize)]
pub struct QueueArguments {
    /// The queue: `mcp:{capability}` as list_queues names it (or the bare capability).
    pub name: String,
    /// Names this request; pausing a paused queue or resuming a running one is harmless.
    pub idempotency_key: Option<String>,
}

#[derive(Object, Deserialize)]
pub struct DiscoverAgentsArguments {
    /// Capabilities the agent must all have.
    #[serde(default)]
    pub capabilities: Option<Vec<String>>,
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub agent_type: Option<AgentType>,
    pub status: Option<AgentStatus>,
    /// 1..1000, default 100.
    pub limit: Option<u32>,
}

#[derive(Object, Deserialize)]
pub struct AgentIdArguments {
    /// The agent's id (a UUID).
    pub agent_id: Uuid,
}

#[derive(Object, Deserialize)]
pub struct NoArguments {}

/// One tool of the catalog.
struct Spec {
    name: &'static str,
    title: &'static str,
    description: &'static str,
    permission: Permission,
    schema: fn() -> JsonObject,
    /// Changes nothing.
    read_only: bool,
    /// May undo or stop work.
    destructive: bool,
}

const CATALOG: &[Spec] = &[
    Spec {
        name: "submit_task",
        title: "Submit a task",
        description: "Create one task of a `type` (pipeline_processing, bias_detection, validation, \
            analysis, export, generic) with a JSON object `payload`, at a `priority` (critical, \
            high, medium (default), low). It is queued for a worker or agent with its first \
            required capability. Idempotent: the same `idempotency_key` with the same arguments \
            returns the same task; when you omit the key, one is derived from your identity and \
            the arguments, so calling again with identical arguments returns the first task \
            instead of creating another (pass a fresh key to really submit twice). With \
            `wait: true` and the MCP tasks extension, answers with a durable task whose id is \
            the task id; poll it with tasks/get.",
        permission: Permission::TaskCreate,
        schema: schema::of::<SubmitTaskArguments>,
        read_only: false,
        destructive: false,
    },
    Spec {
        name: "submit_batch",
        title: "Submit many tasks",
        description: "Create up to 10,000 tasks in one call (priority defaults to low). Invalid \
            items come back in `rejected` with their index and error; the rest are accepted. \
            Items without `idempotency_key` get one derived from the whole call and their \
            index, so repeating the identical call creates nothing new.",
        permission: Permission::TaskCreate,
        schema: schema::of::<SubmitBatchArguments>,
        read_only: false,
        destructive: false,
    },
    Spec {
        name: "get_task",
        title: "Get a task",
        description: "One task by id: status (pending, scheduled, assigned, running, completed, \
            failed = will be retried, dead = attempts exhausted, cancelled), progress 0..100, \
            result or error, attempt and max_attempts.",
        permission: Permission::TaskRead,
        schema: schema::of::<TaskIdArguments>,
        read_only: true,
        destructive: false,
    },
    Spec {
        name: "list_tasks",
        title: "List tasks",
        description: "Tasks newest first, filtered by status, priority, type or agent_id. A full \
            page carries `next_cursor`: pass it as `cursor` for the next one.",
        permission: Permission::TaskRead,
        schema: schema::of::<ListTasksArguments>,
        read_only: true,
        destructive: false,
    },
    Spec {
        name: "cancel_task",
        title: "Cancel a task",
        description: "Cancel a task: waiting ones at once, running ones at their next progress \
            point. Idempotent: cancelling a task that is already cancelled returns it as it is; \
            a task that already completed or died answers illegal_transition.",
        permission: Permission::TaskCreate,
        schema: schema::of::<TaskActionArguments>,
        read_only: false,
        destructive: true,
    },
    Spec {
        name: "retry_task",
        title: "Retry a task",
        description: "Send a dead or cancelled task back to pending with a fresh attempt budget. \
            Idempotent: retrying a task that is already waiting or running again returns it as \
            it is instead of re-driving it twice.",
        permission: Permission::TaskCreate,
        schema: schema::of::<TaskActionArguments>,
        read_only: false,
        destructive: false,
    },
    Spec {
        name: "run_pipeline",
        title: "Run the data pipeline",
        description: "Run the six-stage pipeline (ingestion, standardization, validation with \
            PII handling and bias scoring, processing with de-duplication, quality assessment, \
            export) over an uploaded dataset (`dataset_id`) or inline `records` (chat messages, \
            ShareGPT conversations or question/answer pairs). With the MCP tasks extension it \
            answers at once with a durable task whose id is the execution id; otherwise \
            `wait: true` waits up to `wait_timeout_ms`. Idempotent: without `idempotency_key` \
            one is derived from your identity and the arguments.",
        permission: Permission::PipelineExecute,
        schema: schema::of::<pipelines::ExecuteRequest>,
        read_only: false,
        destructive: false,
    },
    Spec {
        name: "get_execution",
        title: "Get a pipeline execution",
        description: "A pipeline execution with its status (pending, running, completed, failed, \
            cancelled), overall progress 0..100, each stage's state and record counts, and the \
            results and metrics once completed.",
        permission: Permission::PipelineRead,
        schema: schema::of::<ExecutionIdArguments>,
        read_only: true,
        destructive: false,
    },
    Spec {
        name: "get_execution_report",
        title: "Get a pipeline report",
        description: "The report of a completed execution: counts per stage, PII found by kind, \
            bias scores by category, the quality histogram, rejected records with reasons and \
            per-stage timings. Answers not_ready until the execution has completed.",
        permission: Permission::PipelineRead,
        schema: schema::of::<ExecutionIdArguments>,
        read_only: true,
        destructive: false,
    },
    Spec {
        name: "list_queues",
        title: "List queues",
        description: "Every queue (`mcp:{capability}`) with waiting counts per tier (critical, \
            high, medium, low), scheduled, running and dead counts, processed and failed totals, \
            and whether it is paused.",
        permission: Permission::SystemRead,
        schema: schema::of::<NoArguments>,
        read_only: true,
        destructive: false,
    },
    Spec {
        name: "pause_queue",
        title: "Pause a queue",
        description: "Stop dispatching a queue's waiting tasks (all four tiers); running tasks \
            finish. Idempotent: pausing a paused queue changes nothing.",
        permission: Permission::TaskAssign,
        schema: schema::of::<QueueArguments>,
        read_only: false,
        destructive: true,
    },
    Spec {
        name: "resume_queue",
        title: "Resume a queue",
        description: "Resume dispatching a paused queue. Idempotent: resuming a running queue \
            changes nothing.",
        permission: Permission::TaskAssign,
        schema: schema::of::<QueueArguments>,
        read_only: false,
        destructive: false,
    },
    Spec {
        name: "discover_agents",
        title: "Discover agents",
        description: "Registered agents having all the given capabilities, optionally of a type \
            (ai_model, data_processor, validation, external_api) or status (active, busy, stale, \
            offline, paused), healthy and least loaded first.",
        permission: Permission::AgentDiscover,
        schema: schema::of::<DiscoverAgentsArguments>,
        read_only: true,
        destructive: false,
    },
    Spec {
        name: "get_agent_health",
        title: "Get an agent's health",
        description: "An agent's health: status, overall_health 0..1 (heartbeat freshness and \
            spare capacity), availability since registration in percent, last heartbeat age.",
        permission: Permission::AgentBasic,
        schema: schema::of::<AgentIdArguments>,
        read_only: true,
        destructive: false,
    },
    Spec {
        name: "system_health",
        title: "System health and alerts",
        description: "Overall health 0..1 and status (healthy, degraded, unhealthy), active \
            agents, queued tasks, response time and error rate, and the alerts raised now.",
        permission: Permission::SystemRead,
        schema: schema::of::<NoArguments>,
        read_only: true,
        destructive: false,
    },
];

fn tool(spec: &Spec) -> Tool {
    let mut tool = Tool::new(spec.name, spec.description, (spec.schema)()).with_annotations(
        ToolAnnotations::new()
            .read_only(spec.read_only)
            .destructive(spec.destructive)
            .idempotent(true),
    );
    tool.title = Some(spec.title.into());
    tool
}

/// The tools `principal` may call.
pub fn visible_to(principal: &Principal) -> Vec<Tool> {
    CATALOG
        .iter()
        .filter(|s| principal.role.allows(s.permission))
        .map(tool)
        .collect()
}

/// What a tool call runs with.
pub struct Call<'a> {
    pub state: &'a AppState,
    pub principal: &'a Principal,
    /// The client declared the tasks extension: long operations answer with a task handle.
    pub tasks_supported: bool,
    pub context: &'a RequestContext<RoleServer>,
}

/// What a tool answers.
enum Outcome {
    Done(Value),
    Task(CreateTaskResult),
}

pub async fn call(
    call: Call<'_>,
    request: CallToolRequestParams,
) -> Result<CallToolResponse, McpError> {
    let Some(spec) = CATALOG.iter().find(|s| s.name == request.name) else {
        return Err(McpError::invalid_params(
            format!("unknown tool {:?}; tools/list names them", request.name),
            None,
        ));
    };
    let arguments = Value::Object(request.arguments.unwrap_or_default());
    let outcome = match call.principal.require(spec.permission) {
        Ok(()) => run(&call, spec.name, arguments).await,
        Err(e) => {
            audit::note_security_event("mcp.tool_denied", Some(json!({"tool": spec.name})));
            Err(e)
        }
    };
    Ok(match outcome {
        Ok(Outcome::Done(value)) => success(value).into(),
        Ok(Outcome::Task(task)) => CallToolResponse::Task(task),
        Err(e) => failure(&e).into(),
    })
}

/// A key for a mutating call that came without one: the same caller with the same arguments
/// gets the same key.
fn derived_key(state: &AppState, principal: &Principal, tool: &str, arguments: &Value) -> String {
    let canonical = json!({"caller": principal.id, "tool": tool, "arguments": arguments});
    format!(
        "mcp-{}",
        &services::keyed_fingerprint(state, &canonical)[..48]
    )
}

fn wait_timeout(ms: Option<u64>) -> Result<Duration, ApiError> {
    match ms.unwrap_or(DEFAULT_WAIT_MS) {
        ms @ 1..=MAX_WAIT_MS => Ok(Duration::from_millis(ms)),
        _ => Err(ApiError::invalid_field(
            "wait_timeout_ms",
            format!("wait_timeout_ms must be between 1 and {MAX_WAIT_MS}"),
        )),
    }
}

async fn run(call: &Call<'_>, name: &str, arguments: Value) -> Result<Outcome, ApiError> {
    let (state, principal) = (call.state, call.principal);
    let done = |v: Value| Ok(Outcome::Done(v));
    match name {
        "submit_task" => {
            let (for_key, waiting) = split(arguments, &["wait", "wait_timeout_ms"]);
            let waiting: WaitArguments = from_value(waiting)?;
            let timeout = wait_timeout(waiting.wait_timeout_ms)?;
            let mut task: CreateTaskRequest = from_value(for_key.clone())?;
            if task.idempotency_key.is_none() {
                task.idempotency_key = Some(derived_key(state, principal, name, &for_key));
            }
            let new = NewTask::from_request(task, Priority::Medium);
            let task = match task_service::create(state, new, &principal.actor()).await? {
                Created::New(t) => {
                    audit::note(
                        "task.create",
                        Some(t.id.to_string()),
                        Some(json!({"type": t.task_type, "priority": t.priority, "via": "mcp"})),
                    );
                    t
                }
                Created::Existing(t) => t,
            };
            if !waiting.wait.unwrap_or(false) {
                return done(json!({ "task": to_json(TaskView::for_reader(task, principal)) }));
            }
            if call.tasks_supported {
                return Ok(Outcome::Task(durable::created_for_task(&task)));
            }
            let task = durable::wait_task(state, task.id, timeout, call.context).await?;
            done(json!({ "task": to_json(TaskView::for_reader(task, principal)) }))
        }
        "submit_batch" => {
            let for_key = arguments.clone();
            let args: SubmitBatchArguments = from_value(arguments)?;
            if args.tasks.len() > task_service::MAX_BATCH {
                return Err(ApiError::new(
                    ErrorCode::BatchTooLarge,
                    format!(
                        "a batch holds at most {} tasks; split it",
                        task_service::MAX_BATCH
                    ),
                ));
            }
            let base = derived_key(state, principal, name, &for_key);
            let items = args
                .tasks
                .into_iter()
                .enumerate()
                .map(|(i, mut r)| {
                    if r.idempotency_key.is_none() {
                        r.idempotency_key = Some(format!("{base}-{i}"));
                    }
                    Ok(NewTask::from_request(r, Priority::Low))
                })
                .collect();
            let (ids, rejected) =
                task_service::create_batch(state, items, &principal.actor()).await?;
            audit::note(
                "task.batch",
                None,
                Some(json!({"accepted": ids.len(), "rejected": rejected.len(), "via": "mcp"})),
            );
            done(json!({
                "accepted": ids.len(),
                "task_ids": ids,
                "rejected": rejected
                    .iter()
                    .map(|r| json!({"index": r.index, "error": error_object(&r.error)}))
                    .collect::<Vec<_>>(),
            }))
        }
        "get_task" => {
            let args: TaskIdArguments = from_value(arguments)?;
            let task = task_service::find(state, args.task_id).await?;
            done(visible_task(state, principal, task)?)
        }
        "list_tasks" => {
            let args: ListTasksArguments = from_value(arguments)?;
            let after = views::cursor(args.cursor.as_deref())?;
            let limit = views::limit(args.limit)?;
            let filter = ListFilter {
                status: args.status,
                priority: args.priority.map(|p| p.as_str().to_string()),
                task_type: args.task_type.map(|t| t.as_str().to_string()),
                agent_id: principal.agent_id().or(args.agent_id),
                after,
                limit,
            };
            let rows = task_service::list(state, &filter).await?;
            let next = views::next_cursor(&rows, limit, |t| t.id.to_string());
            let tasks: Vec<Value> = rows
                .into_iter()
                .map(|t| to_json(TaskView::for_reader(t, principal)))
                .collect();
            done(json!({"count": tasks.len(), "tasks": tasks, "next_cursor": next}))
        }
        "cancel_task" => {
            let args: TaskActionArguments = from_value(arguments)?;
            let task = match task_service::cancel(state, args.task_id).await {
                Ok(t) => t,
                Err(e) if e.code == ErrorCode::IllegalTransition => {
                    let current = task_service::find(state, args.task_id).await?;
                    if current.status != TaskStatus::Cancelled.as_str() {
                        return Err(e);
                    }
                    current
                }
                Err(e) => return Err(e),
            };
            audit::note("task.cancel", Some(args.task_id.to_string()), None);
            done(json!({ "task": to_json(TaskView::for_reader(task, principal)) }))
        }
        "retry_task" => {
            let args: TaskActionArguments = from_value(arguments)?;
            let task = match task_service::retry(state, args.task_id).await {
                Ok(t) => t,
                Err(e) if e.code == ErrorCode::IllegalTransition => {
                    let current = task_service::find(state, args.task_id).await?;
                    let waiting_or_running =
                        TaskStatus::parse(&current.status).is_some_and(|s| !s.is_terminal());
                    if !waiting_or_running {
                        return Err(e);
                    }
                    current
                }
                Err(e) => return Err(e),
            };
            audit::note("task.retry", Some(args.task_id.to_string()), None);
            done(json!({ "task": to_json(TaskView::for_reader(task, principal)) }))
        }
        "run_pipeline" => {
            let (for_key, _) = split(arguments.clone(), &["wait", "wait_timeout_ms"]);
            let mut req: pipelines::ExecuteRequest = from_value(arguments)?;
            if req.idempotency_key.is_none() {
                req.idempotency_key = Some(derived_key(state, principal, name, &for_key));
            }
            let timeout = wait_timeout(req.wait_timeout_ms)?;
            let started =
                pipelines::submit(state, &req, Priority::High, &principal.actor()).await?;
            let execution = match started {
                pipelines::Started::New(e) => {
                    audit::note(
                        "pipeline.execute",
                        Some(e.id.to_string()),
                        Some(json!({"via": "mcp"})),
                    );
                    e
                }
                pipelines::Started::Existing(e) => e,
            };
            if call.tasks_supported {
                return Ok(Outcome::Task(durable::created_for_execution(&execution)));
            }
            let execution = if req.wait.unwrap_or(false) {
                durable::wait_execution(state, execution.id, timeout, call.context).await?
            } else {
                execution
            };
            done(json!({ "execution": to_json(ExecutionView::for_reader(execution, principal)) }))
        }
        "get_execution" => {
            let args: ExecutionIdArguments = from_value(arguments)?;
            done(execution_json(state, args.execution_id, principal).await?)
        }
        "get_execution_report" => {
            let args: ExecutionIdArguments = from_value(arguments)?;
            let report = pipelines::report(state, args.execution_id).await?;
            done(json!({"execution_id": args.execution_id, "report": report}))
        }
        "list_queues" => {
            let _: NoArguments = from_value(arguments)?;
            let queues: Vec<Value> = queue_service::list(state)
                .await?
                .into_iter()
                .map(to_json)
                .collect();
            done(json!({"count": queues.len(), "queues": queues}))
        }
        "pause_queue" | "resume_queue" => {
            let args: QueueArguments = from_value(arguments)?;
            let paused = name == "pause_queue";
            let cap = queue_service::set_paused_by_name(state, &args.name, paused).await?;
            audit::note(
                if paused {
                    "queue.pause"
                } else {
                    "queue.resume"
                },
                Some(format!("mcp:{cap}")),
                None,
            );
            let queue = queue_service::find(state, &cap, paused).await?;
            done(json!({ "queue": to_json(queue) }))
        }
        "discover_agents" => {
            let args: DiscoverAgentsArguments = from_value(arguments)?;
            let limit = views::limit(args.limit)? as usize;
            let found = agents::discover(
                state,
                &Query {
                    capabilities: args.capabilities.unwrap_or_default(),
                    agent_type: args.agent_type,
                    status: args.status,
                    healthy_only: false,
                    limit,
                },
            )
            .await;
            let agents: Vec<Value> = found
                .iter()
                .map(|e| to_json(views::AgentView::of(e, &state.cipher)))
                .collect();
            done(json!({"count": agents.len(), "agents": agents}))
        }
        "get_agent_health" => {
            let args: AgentIdArguments = from_value(arguments)?;
            principal.require_self_if_agent(args.agent_id)?;
            let health = agents::health(state, args.agent_id).await?;
            done(json!({ "health": to_json(health) }))
        }
        "system_health" => {
            let _: NoArguments = from_value(arguments)?;
            done(json!({ "health": to_json(monitoring::system_health(state).await?) }))
        }
        other => Err(ApiError::not_found(&format!("tool {other:?}"))),
    }
}

/// The arguments without `fields`, and those fields apart (they do not change what is asked
/// for, only how the caller waits).
fn split(arguments: Value, fields: &[&str]) -> (Value, Value) {
    let mut rest = arguments;
    let mut taken = serde_json::Map::new();
    if let Value::Object(m) = &mut rest {
        for f in fields {
            if let Some(v) = m.remove(*f) {
                taken.insert((*f).to_string(), v);
            }
        }
    }
    (rest, Value::Object(taken))
}
