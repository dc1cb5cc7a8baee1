//! The response shapes several modules share (routes, and the services that compute them), and
//! the paging parameters every list takes. Shapes one route alone returns stay in its module.

use chrono::{DateTime, Utc};
use mcp_shared::{
    domain::{
        agent::{AgentStatus, AgentType},
        pipeline::Stage,
        task::{Priority, TaskType},
    },
    entities::{pipeline_executions::Model as Execution, tasks::Model},
};
use poem_openapi::Object;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::{error::ApiError, observability::alerts::Alerts};

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

/// Parses a list cursor: absent or empty for the first page, else the `next_cursor` a previous
/// page returned.
pub fn cursor<T: std::str::FromStr>(value: Option<&str>) -> Result<Option<T>, ApiError> {
    match value {
        None | Some("") => Ok(None),
        Some(c) => c
            .parse()
            .map(Some)
            .map_err(|_| ApiError::invalid_field("cursor", "cursor is not one this API issued")),
    }
}

/// The cursor of the page after `rows`: the last row's, when the page is full.
pub fn next_cursor<T>(rows: &[T], limit: u64, key: impl Fn(&T) -> String) -> Option<String> {
    (rows.len() as u64 == limit)
        .then(|| rows.last().map(key))
        .flatten()
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
    pub result: Option<crate::task_schemas::TaskResult>,
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
    /// When the current (or last) attempt started.
    #[oai(skip_serializing_if_is_none)]
    pub started_at: Option<DateTime<Utc>>,
    /// When the task reached its final state.
    #[oai(skip_serializing_if_is_none)]
    pub finished_at: Option<DateTime<Utc>>,
    #[oai(skip_serializing_if_is_none)]
    pub execution_id: Option<Uuid>,
    #[oai(skip_serializing_if_is_none)]
    pub stage: Option<String>,
    /// Set while the task waits on a capability no live worker or agent holds (the
    /// `queue_unserved` alert): start a worker or register an agent with it.
    #[oai(skip_serializing_if_is_none)]
    pub waiting_for: Option<String>,
}

/// What a task in `status` on `queue` waits for, when nothing live can take it.
pub fn task_waiting_for(status: &str, queue: &str, alerts: &Alerts) -> Option<String> {
    if status != mcp_shared::domain::task::TaskStatus::Pending.as_str() {
        return None;
    }
    alerts.waiting_for(&mcp_shared::queue::QueueName::parse(queue)?.capability)
}

/// What an execution waits for, when nothing live serves the stage it is at.
pub fn execution_waiting_for(e: &Execution, alerts: &Alerts) -> Option<String> {
    use mcp_shared::domain::pipeline::PipelineStatus;
    if !matches!(
        PipelineStatus::parse(&e.status),
        Some(PipelineStatus::Pending | PipelineStatus::Running)
    ) {
        return None;
    }
    let stage = e.current_stage.as_deref().and_then(Stage::parse)?;
    alerts.waiting_for(&stage.capability())
}

impl TaskView {
    /// The view for a reader: sealed payload fields show only their key id (see
    /// [`TaskView::for_runner`]), and the idempotency key only to whoever created the task and
    /// to admins. A key is often derived from the request's content, so showing it to other
    /// readers would help them probe what others submitted.
    pub fn for_reader(mut m: Model, reader: &crate::principal::Principal) -> Self {
        if m.sealed_key.is_some() {
            mcp_shared::sealing::mask(&mut m.payload);
            if let Some(result) = m.result.as_mut() {
                mcp_shared::sealing::mask(result);
            }
        }
        if !may_see_idempotency_key(m.created_by.as_deref(), reader) {
            m.idempotency_key = None;
        }
        Self::unmasked(m)
    }

    /// As [`TaskView::for_reader`], and naming what the task waits for.
    pub fn read(m: Model, reader: &crate::principal::Principal, alerts: &Alerts) -> Self {
        let waiting_for = task_waiting_for(&m.status, &m.queue, alerts);
        Self {
            waiting_for,
            ..Self::for_reader(m, reader)
        }
    }

    /// The view for the agent about to run the task: sealed fields opened.
    pub fn for_runner(mut m: Model, ring: &mcp_shared::crypto::KeyRing) -> Result<Self, ApiError> {
        if m.sealed_key.is_some() {
            mcp_shared::sealing::open(&mut m.payload, ring).map_err(ApiError::internal)?;
        }
        Ok(Self::unmasked(m))
    }

    fn unmasked(m: Model) -> Self {
        Self {
            id: m.id,
            task_type: m.task_type,
            priority: m.priority,
            status: m.status,
            required_capabilities: m.required_capabilities,
            payload: m.payload,
            result: m.result.map(crate::task_schemas::TaskResult),
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
            started_at: m.started_at,
            finished_at: m.finished_at,
            execution_id: m.execution_id,
            stage: m.stage,
            waiting_for: None,
        }
    }
}

#[derive(Object, Default, Clone)]
pub struct TierCounts {
    pub critical: i64,
    pub high: i64,
    pub medium: i64,
    pub low: i64,
}

impl TierCounts {
    pub fn add(&mut self, tier: Priority, n: i64) {
        match tier {
            Priority::Critical => self.critical += n,
            Priority::High => self.high += n,
            Priority::Medium => self.medium += n,
            Priority::Low => self.low += n,
        }
    }
}

#[derive(Object, Clone)]
pub struct QueueView {
    /// `mcp:{capability}`; its tiers are `mcp:{capability}:{critical|high|medium|low}`.
    pub name: String,
    pub capability: String,
    /// Waiting to run, per tier (including tasks waiting for a retry).
    pub pending: TierCounts,
    /// Scheduled for later.
    pub scheduled: i64,
    /// Assigned or running.
    pub running: i64,
    pub dead: i64,
    pub paused: bool,
    pub processed_total: i64,
    pub failed_total: i64,
}

impl QueueView {
    /// The queue of capability key `cap` with nothing in it.
    pub fn empty(cap: &str, paused: bool) -> Self {
        Self {
            name: format!("mcp:{cap}"),
            capability: cap.to_string(),
            pending: TierCounts::default(),
            scheduled: 0,
            running: 0,
            dead: 0,
            paused,
            processed_total: 0,
            failed_total: 0,
        }
    }
}

/// Per-stage state, from the stage runs (as `agent-progress` returns it).
#[derive(Debug, poem_openapi::Object)]
pub struct StageView {
    pub stage: Stage,
    /// `pending`, `running`, `completed` or `failed`.
    pub status: String,
    /// The task of the stage's first shard.
    #[oai(skip_serializing_if_is_none)]
    pub task_id: Option<Uuid>,
    /// The agent that ran the stage's first shard.
    #[oai(skip_serializing_if_is_none)]
    pub agent_id: Option<Uuid>,
    /// Every agent that ran a shard of this stage.
    pub agent_ids: Vec<Uuid>,
    pub shards: u32,
    #[oai(skip_serializing_if_is_none)]
    pub started_at: Option<chrono::DateTime<Utc>>,
    #[oai(skip_serializing_if_is_none)]
    pub finished_at: Option<chrono::DateTime<Utc>>,
    pub records_in: i64,
    pub records_out: i64,
    /// 0–100.
    pub progress: i32,
    #[oai(skip_serializing_if_is_none)]
    pub error: Option<String>,
}

#[derive(Object, Clone)]
pub struct CapabilityView {
    pub name: String,
    #[oai(skip_serializing_if_is_none)]
    pub version: Option<String>,
}

#[derive(Object)]
pub struct AgentView {
    pub id: Uuid,
    pub name: String,
    #[oai(rename = "type")]
    pub agent_type: AgentType,
    pub capabilities: Vec<CapabilityView>,
    pub status: AgentStatus,
    pub max_concurrency: i32,
    /// Running tasks plus reserved slots.
    pub current_load: i64,
    pub metadata: Value,
    pub registered_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

#[derive(Object)]
pub struct AgentHealth {
    pub agent_id: Uuid,
    pub status: AgentStatus,
    /// 0..1: 1 when beating on time with spare capacity.
    pub overall_health: f64,
    /// Heartbeats received over heartbeats expected since registration, in percent.
    pub availability_percentage: f64,
    pub last_seen: DateTime<Utc>,
    pub last_health_check: DateTime<Utc>,
    pub heartbeat_age_ms: i64,
    /// 0..1: `0.5 × success_rate + 0.25 × latency + 0.25 × heartbeat_regularity`, where latency
    /// is 1 at or under the agent's own baseline and `1 / latency_ratio` above it.
    pub performance_score: f64,
    /// Tasks completed over tasks finished in the health window (1 when none finished).
    pub success_rate: f64,
    /// The window's median task time over the agent's baseline (the median of its last 200
    /// completions before the window); absent until there are 3 completions in the window and 5
    /// before it.
    #[oai(skip_serializing_if_is_none)]
    pub latency_ratio: Option<f64>,
    /// 0..1: heartbeats received over heartbeats expected since registration (capped at 1),
    /// times the freshness of the last one against the stale limit.
    pub heartbeat_regularity: f64,
    /// Busy time on tasks that completed over busy time on every task it finished in the health
    /// window; absent when it finished none. Below `ALERT_THRESHOLD_EFFICIENCY` (over at least
    /// 5 tasks) it raises the `agent_efficiency` alert.
    #[oai(skip_serializing_if_is_none)]
    pub efficiency: Option<f64>,
    /// Tasks the agent finished (completed or dead) in the health window.
    pub tasks_in_window: u64,
    /// The health window's length (`MCP_HEALTH_WINDOW_MS`).
    pub window_ms: i64,
    /// What is unusual now: `flapping`, `error_burst`, `latency_spike`; empty when nothing is.
    pub anomalies: Vec<AgentAnomaly>,
}

/// Something unusual about an agent.
#[derive(Object)]
pub struct AgentAnomaly {
    /// `flapping` (at least `MCP_ALERT_AGENT_FLAPS` status changes in the window),
    /// `error_burst` (more than `MCP_ALERT_AGENT_FAILURE_RATE` of at least 5 tasks finished in
    /// the window failed) or `latency_spike` (the window's median task time over 3× the
    /// baseline).
    pub kind: String,
    pub message: String,
    /// The measured figure and the threshold it crossed.
    pub value: f64,
    pub threshold: f64,
}

// A request to create one task: the body of `POST /tasks`, an item of `POST /tasks/batch`, and
// the arguments of the MCP `submit_task` tool, and a schedule's task template.
#[derive(Object, Deserialize, Serialize, Clone)]
pub struct CreateTaskRequest {
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub task_type: TaskType,
    /// Default `medium`.
    pub priority: Option<Priority>,
    /// Capabilities a worker or agent must have; the first picks the queue. Default: the type's.
    #[serde(default)]
    pub required_capabilities: Option<Vec<String>>,
    /// Input for the handler (a JSON object); its schema depends on `type`.
    pub payload: crate::task_schemas::TaskPayload,
    /// Repeating a request with the same key and body returns the same task (200).
    pub idempotency_key: Option<String>,
    /// Run no earlier than this time (RFC 3339).
    pub run_at: Option<DateTime<Utc>>,
    /// Default `TASK_EXECUTION_TIMEOUT`.
    pub timeout_seconds: Option<u32>,
    /// 1–100, default 3.
    pub max_attempts: Option<u32>,
    /// JSON Pointers (`/credentials/token`) to payload values that are secret or personal: they
    /// are encrypted at rest (AES-256-GCM), shown as `{"$sealed": "<key id>"}` when the task is
    /// read, and handed in clear only to the worker or agent that runs the task. At most 32.
    #[serde(default)]
    pub sensitive_fields: Option<Vec<String>>,
}

/// Whether `reader` may see the idempotency key of something `created_by` made.
pub fn may_see_idempotency_key(
    created_by: Option<&str>,
    reader: &crate::principal::Principal,
) -> bool {
    reader.role == mcp_shared::auth::Role::Admin || created_by == Some(reader.actor().as_str())
}

#[derive(Object)]
pub struct ExecutionView {
    pub execution_id: Uuid,
    pub status: String,
    pub priority: String,
    pub created_at: DateTime<Utc>,
    #[oai(skip_serializing_if_is_none)]
    pub finished_at: Option<DateTime<Utc>>,
    #[oai(skip_serializing_if_is_none)]
    pub results: Option<Value>,
    #[oai(skip_serializing_if_is_none)]
    pub metrics: Option<Value>,
    /// Why a failed execution failed: the stage, shard and reason.
    #[oai(skip_serializing_if_is_none)]
    pub error: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub dataset_id: Option<Uuid>,
    #[oai(skip_serializing_if_is_none)]
    pub current_stage: Option<String>,
    pub options: Value,
    /// The key the execution was started with, if any.
    #[oai(skip_serializing_if_is_none)]
    pub idempotency_key: Option<String>,
    /// Set while the execution waits on a stage no live worker or agent serves (the
    /// `queue_unserved` alert), e.g. `stage_ingestion`.
    #[oai(skip_serializing_if_is_none)]
    pub waiting_for: Option<String>,
}

impl ExecutionView {
    /// As [`ExecutionView::for_reader`], and naming what the execution waits for.
    pub fn read(e: Execution, reader: &crate::principal::Principal, alerts: &Alerts) -> Self {
        let waiting_for = execution_waiting_for(&e, alerts);
        Self {
            waiting_for,
            ..Self::for_reader(e, reader)
        }
    }
}

impl ExecutionView {
    /// The view for a reader: the idempotency key only for whoever started the execution and
    /// for admins (as for tasks).
    pub fn for_reader(e: Execution, reader: &crate::principal::Principal) -> Self {
        let idempotency_key = e
            .idempotency_key
            .filter(|_| may_see_idempotency_key(e.created_by.as_deref(), reader));
        Self {
            execution_id: e.id,
            status: e.status,
            priority: e.priority,
            created_at: e.created_at,
            finished_at: e.finished_at,
            results: e.results,
            metrics: e.metrics,
            error: e.error,
            dataset_id: e.dataset_id,
            current_stage: e.current_stage,
            options: e.options,
            idempotency_key,
            waiting_for: None,
        }
    }
}

#[derive(Object)]
pub struct ExecutionProgress {
    pub execution_id: Uuid,
    pub status: String,
    /// 0–100 over all six stages.
    pub progress: i32,
    #[oai(skip_serializing_if_is_none)]
    pub current_stage: Option<String>,
    /// As on the execution: the stage capability nothing live serves.
    #[oai(skip_serializing_if_is_none)]
    pub waiting_for: Option<String>,
    pub stages: Vec<StageView>,
}
