//! Events: every state change is published on the bus and fanned out to subscribers.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::{
    agent::AgentStatus,
    pipeline::Stage,
    string_enum,
    task::{Priority, TaskStatus},
};
use crate::entities::{agents::Model as Agent, tasks::Model as Task};

string_enum!(
    /// The event types of the API contract.
    EventType {
        AgentRegistered => "agent.registered",
        AgentStatusUpdated => "agent.status_updated",
        AgentDeregistered => "agent.deregistered",
        TaskCreated => "task.created",
        TaskAssigned => "task.assigned",
        TaskUnassigned => "task.unassigned",
        TaskStarted => "task.started",
        TaskProgress => "task.progress",
        TaskCompleted => "task.completed",
        TaskFailed => "task.failed",
        TaskDead => "task.dead",
        TaskCancelled => "task.cancelled",
        StageStarted => "stage.started",
        StageCompleted => "stage.completed",
        PipelineCompleted => "pipeline.completed",
        PipelineFailed => "pipeline.failed",
        PipelineCancelled => "pipeline.cancelled",
        ErrorOccurred => "error.occurred",
        SystemAlert => "system.alert",
    }
);

/// One event as it travels the bus and reaches clients (`{type, id, ts, data}`).
///
/// `id` is assigned by the bus when published (a Redis stream id, or a local sequence), so
/// subscribers can resume after it. The routing keys let the hub filter without parsing `data`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventType,
    #[serde(default)]
    pub id: String,
    pub ts: DateTime<Utc>,
    pub data: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<Uuid>,
    /// The client wire form, rendered once however many subscribers receive the event.
    #[serde(skip)]
    wire: std::sync::OnceLock<String>,
}

impl Event {
    pub fn new(kind: EventType, data: serde_json::Value) -> Self {
        Self {
            kind,
            id: String::new(),
            ts: Utc::now(),
            data,
            task_id: None,
            execution_id: None,
            agent_id: None,
            wire: std::sync::OnceLock::new(),
        }
    }

    /// `{type, id, ts, data}` as JSON text, as clients receive it. Rendered on first use: call
    /// it only once the bus has assigned the id.
    pub fn wire(&self) -> &str {
        self.wire.get_or_init(|| {
            serde_json::json!({"type": self.kind, "id": self.id, "ts": self.ts, "data": self.data})
                .to_string()
        })
    }

    pub fn for_task(mut self, task_id: Uuid) -> Self {
        self.task_id = Some(task_id);
        self
    }

    pub fn for_agent(mut self, agent_id: Option<Uuid>) -> Self {
        self.agent_id = agent_id;
        self
    }

    pub fn for_execution(mut self, execution_id: Option<Uuid>) -> Self {
        self.execution_id = execution_id;
        self
    }
}

/// The typed constructors: every event the platform publishes is built here, so each type's
/// `data` has one shape wherever it is sent from (the API, a worker, the dispatcher).
impl Event {
    /// An event about `task`, routed by task, execution and agent so subscribers can filter on each.
    fn about(kind: EventType, task: &Task, data: serde_json::Value) -> Self {
        Self::new(kind, data)
            .for_task(task.id)
            .for_execution(task.execution_id)
            .for_agent(task.agent_id)
    }

    /// `task.created` for a task created on its own.
    pub fn task_created(task: &Task) -> Self {
        Self::about(
            EventType::TaskCreated,
            task,
            json!({"task_id": task.id, "type": task.task_type, "priority": task.priority, "status": task.status}),
        )
    }

    /// `task.created` for one task of a batch (published after the batch's commit).
    pub fn task_created_in_batch(id: Uuid, task_type: &str, priority: Priority) -> Self {
        Self::new(
            EventType::TaskCreated,
            json!({"task_id": id, "type": task_type, "priority": priority, "status": "pending", "batch": true}),
        )
        .for_task(id)
    }

    /// `task.created` for a dead or cancelled task sent round again.
    pub fn task_requeued(task: &Task) -> Self {
        Self::about(
            EventType::TaskCreated,
            task,
            json!({"task_id": task.id, "type": task.task_type, "priority": task.priority, "status": "pending", "retried": true}),
        )
    }

    /// `task.assigned`: routed to one agent, which has not claimed it yet.
    pub fn task_assigned(task: &Task, agent: Uuid) -> Self {
        Self::about(
            EventType::TaskAssigned,
            task,
            json!({"task_id": task.id, "agent_id": agent, "status": "assigned"}),
        )
        .for_agent(Some(agent))
    }

    /// `task.unassigned`: the agent it was assigned to did not claim it within
    /// `AGENT_ASSIGNMENT_TIMEOUT`; it is back in its queue for any agent or worker.
    pub fn task_unassigned(task: &Task, agent: Option<Uuid>, reason: &str) -> Self {
        Self::about(
            EventType::TaskUnassigned,
            task,
            json!({"task_id": task.id, "agent_id": agent, "status": "pending", "reason": reason}),
        )
        .for_agent(agent)
    }

    /// `task.started`: an attempt began (the row is `running`, its lease taken).
    pub fn task_started(task: &Task) -> Self {
        Self::about(
            EventType::TaskStarted,
            task,
            json!({"task_id": task.id, "status": "running", "attempt": task.attempt,
                   "agent_id": task.agent_id, "execution_id": task.execution_id, "stage": task.stage}),
        )
    }

    /// `task.progress` as reported by whoever runs the task.
    pub fn task_progress(task: &Task, progress: i32, message: Option<&str>) -> Self {
        Self::about(
            EventType::TaskProgress,
            task,
            json!({"task_id": task.id, "progress": progress, "message": message}),
        )
    }

    /// `task.progress` of a pipeline shard, counted in records.
    pub fn shard_progress(
        task: &Task,
        stage: Stage,
        shard: u32,
        done: u64,
        total: u64,
        progress: i32,
    ) -> Self {
        Self::about(
            EventType::TaskProgress,
            task,
            json!({"task_id": task.id, "execution_id": task.execution_id, "stage": stage, "shard": shard,
                   "records_done": done, "records_total": total, "progress": progress}),
        )
    }

    /// `task.completed`. `result` is shown as reads show it: sealed values masked.
    pub fn task_completed(task: &Task, result: serde_json::Value, duration_ms: i64) -> Self {
        Self::about(
            EventType::TaskCompleted,
            task,
            json!({"task_id": task.id, "status": "completed", "result": crate::sealing::masked(result),
                   "progress": 100, "type": task.task_type, "duration_ms": duration_ms}),
        )
    }

    /// `task.failed` (`to` = failed: it will be retried) or `task.dead` (attempts exhausted).
    pub fn task_attempt_failed(task: &Task, to: TaskStatus, error: &str) -> Self {
        let kind = if to == TaskStatus::Dead {
            EventType::TaskDead
        } else {
            EventType::TaskFailed
        };
        Self::about(
            kind,
            task,
            json!({"task_id": task.id, "status": to, "error": error, "attempt": task.attempt,
                   "type": task.task_type}),
        )
    }

    /// `task.cancelled`.
    pub fn task_cancelled(task: &Task) -> Self {
        Self::about(
            EventType::TaskCancelled,
            task,
            json!({"task_id": task.id, "status": "cancelled", "execution_id": task.execution_id}),
        )
    }

    /// `stage.started`: a stage's shards were enqueued.
    pub fn stage_started(execution: Uuid, stage: Stage, shards: u32) -> Self {
        Self::new(
            EventType::StageStarted,
            json!({"execution_id": execution, "stage": stage, "shards": shards}),
        )
        .for_execution(Some(execution))
    }

    /// `stage.completed`, with the records that went in and came out.
    pub fn stage_completed(
        execution: Uuid,
        stage: Stage,
        records_in: i64,
        records_out: i64,
    ) -> Self {
        Self::new(
            EventType::StageCompleted,
            json!({"execution_id": execution, "stage": stage, "records_in": records_in, "records_out": records_out}),
        )
        .for_execution(Some(execution))
    }

    /// `pipeline.completed`, with the execution's results.
    pub fn pipeline_completed(execution: Uuid, results: &serde_json::Value) -> Self {
        Self::new(
            EventType::PipelineCompleted,
            json!({"execution_id": execution, "status": "completed", "results": results}),
        )
        .for_execution(Some(execution))
    }

    /// `pipeline.failed`: a shard of `stage` died.
    pub fn pipeline_failed(execution: Uuid, stage: Stage, shard: u32, error: &str) -> Self {
        Self::new(
            EventType::PipelineFailed,
            json!({"execution_id": execution, "status": "failed", "stage": stage, "shard": shard, "error": error}),
        )
        .for_execution(Some(execution))
    }

    /// `pipeline.cancelled`.
    pub fn pipeline_cancelled(execution: Uuid) -> Self {
        Self::new(
            EventType::PipelineCancelled,
            json!({"execution_id": execution, "status": "cancelled"}),
        )
        .for_execution(Some(execution))
    }

    /// `agent.registered`.
    pub fn agent_registered(agent: &Agent) -> Self {
        Self::new(EventType::AgentRegistered, agent_data(agent, None)).for_agent(Some(agent.id))
    }

    /// `agent.status_updated`, with the status before.
    pub fn agent_status_updated(agent: &Agent, previous: AgentStatus) -> Self {
        Self::new(
            EventType::AgentStatusUpdated,
            agent_data(agent, Some(previous)),
        )
        .for_agent(Some(agent.id))
    }

    /// `agent.deregistered`; `data` says why and what it let go of.
    pub fn agent_deregistered(agent: Uuid, mut data: serde_json::Value) -> Self {
        data["agent_id"] = json!(agent);
        Self::new(EventType::AgentDeregistered, data).for_agent(Some(agent))
    }

    /// `system.alert`: an alert raised or cleared.
    pub fn system_alert(data: serde_json::Value) -> Self {
        Self::new(EventType::SystemAlert, data)
    }

    /// `error.occurred` for a server-side failure another event reported: a task that went
    /// `dead` (`code: "task_dead"`) or a pipeline stage whose shard died (`code: "stage_failed"`).
    /// `None` for every other event. Routed like the event it reports, so a follower of that
    /// task or execution sees it too.
    pub fn error_reported_by(event: &Event) -> Option<Self> {
        let d = &event.data;
        let data = match event.kind {
            EventType::TaskDead => json!({
                "code": "task_dead",
                "source": "task",
                "message": format!("task {} ({}) is dead after {} attempt(s): {}",
                    d["task_id"].as_str().unwrap_or("?"), d["type"].as_str().unwrap_or("?"),
                    d["attempt"], d["error"].as_str().unwrap_or("")),
                "task_id": d["task_id"], "type": d["type"], "attempt": d["attempt"], "error": d["error"],
            }),
            EventType::PipelineFailed => json!({
                "code": "stage_failed",
                "source": "pipeline",
                "message": format!("pipeline {} failed in stage {} (shard {}): {}",
                    d["execution_id"].as_str().unwrap_or("?"), d["stage"].as_str().unwrap_or("?"),
                    d["shard"], d["error"].as_str().unwrap_or("")),
                "execution_id": d["execution_id"], "stage": d["stage"], "shard": d["shard"], "error": d["error"],
            }),
            _ => return None,
        };
        let mut out = Self::new(EventType::ErrorOccurred, data)
            .for_execution(event.execution_id)
            .for_agent(event.agent_id);
        out.task_id = event.task_id;
        Some(out)
    }

    /// `error.occurred`: `replica` cannot reach `dependency` (`database`, `redis`, `artifact store`).
    pub fn dependency_unavailable(dependency: &str, replica: &str, error: &str) -> Self {
        Self::new(
            EventType::ErrorOccurred,
            json!({"code": "dependency_unavailable", "source": "dependency", "state": "raised",
                   "dependency": dependency, "replica": replica, "error": error,
                   "message": format!("{dependency} is unreachable from replica {replica}: {error}")}),
        )
    }

    /// `error.occurred`: `replica` reaches `dependency` again after `down_ms` without it.
    pub fn dependency_recovered(dependency: &str, replica: &str, down_ms: u64) -> Self {
        Self::new(
            EventType::ErrorOccurred,
            json!({"code": "dependency_recovered", "source": "dependency", "state": "cleared",
                   "dependency": dependency, "replica": replica, "down_ms": down_ms,
                   "message": format!("{dependency} is reachable again from replica {replica} after {:.1} s",
                       down_ms as f64 / 1000.0)}),
        )
    }

    /// `error.occurred` summing up the errors of `kind` (a `code` above) that the rate limit
    /// held back and no later error of that kind has reported yet.
    pub fn errors_suppressed(kind: &str, suppressed: u64) -> Self {
        Self::new(
            EventType::ErrorOccurred,
            json!({"code": "errors_suppressed", "source": "rate_limit", "kind": kind,
                   "suppressed": suppressed,
                   "message": format!("{suppressed} further {kind} error(s) were not sent one by one")}),
        )
    }

    /// Notes on an `error.occurred` how many errors of its kind the rate limit held back
    /// since the last one sent.
    pub fn with_suppressed(mut self, suppressed: u64) -> Self {
        if self.kind == EventType::ErrorOccurred {
            self.data["suppressed"] = json!(suppressed);
        }
        self
    }
}

/// The `data` of agent events: who, and the status before and after.
fn agent_data(agent: &Agent, previous: Option<AgentStatus>) -> serde_json::Value {
    json!({
        "agent_id": agent.id,
        "name": agent.name,
        "type": agent.agent_type,
        "status": agent.status,
        "previous_status": previous,
        "last_seen": agent.last_seen,
    })
}
