//! Events: every state change is published on the bus and fanned out to subscribers.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::string_enum;

string_enum!(
    /// The event types of the API contract.
    EventType {
        AgentRegistered => "agent.registered",
        AgentStatusUpdated => "agent.status_updated",
        AgentDeregistered => "agent.deregistered",
        TaskCreated => "task.created",
        TaskAssigned => "task.assigned",
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

/// The `data` of agent events: who, and the status before and after.
pub fn agent_event(
    agent: &crate::entities::agents::Model,
    previous: Option<super::agent::AgentStatus>,
) -> serde_json::Value {
    serde_json::json!({
        "agent_id": agent.id,
        "name": agent.name,
        "type": agent.agent_type,
        "status": agent.status,
        "previous_status": previous,
        "last_seen": agent.last_seen,
    })
}
