//! Following events: which events a subscriber gets (a filter on task, execution, event types,
//! agent), who may see what, the snapshot sent before live events, and the replay of retained
//! ones. Shared by the WebSocket channels and the Server-Sent Events endpoint.

use std::sync::Arc;

use mcp_shared::{
    bus::EventId,
    db::{pipelines, tasks},
    domain::event::{Event, EventType},
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::{
    principal::Principal,
    services::pipelines::{overall_progress, stage_views},
    state::AppState,
};

/// The narrowing a subscriber asked for; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Filter {
    pub task_id: Option<Uuid>,
    pub execution_id: Option<Uuid>,
    /// Event type names (`task.progress`, …).
    pub types: Option<Vec<EventType>>,
    pub agent_id: Option<Uuid>,
}

impl Filter {
    pub fn matches(&self, e: &Event) -> bool {
        self.task_id.is_none_or(|t| e.task_id == Some(t))
            && self.execution_id.is_none_or(|x| e.execution_id == Some(x))
            && self.agent_id.is_none_or(|a| e.agent_id == Some(a))
            && self.types.as_ref().is_none_or(|ts| ts.contains(&e.kind))
    }

    /// The filter as sent back to the client in acknowledgements.
    pub fn describe(&self) -> Value {
        json!({
            "task_id": self.task_id,
            "execution_id": self.execution_id,
            "types": self.types,
            "agent_id": self.agent_id,
        })
    }
}

/// Why a subscription was refused. One message for "unknown" and "not yours", so an agent
/// cannot probe which ids exist.
pub const NOT_VISIBLE: &str = "no such task or execution, or it is not visible to you";

/// Users see every event their role may read; an agent sees the events of its own tasks.
/// `authorized` is true for a subscription already checked against the task it names: its
/// events without an agent (created, cancelled while waiting) are visible too, but once a retry
/// hands the task to another agent, that agent's events are not.
pub fn visible_to(principal: &Principal, event: &Event, authorized: bool) -> bool {
    match principal.agent_id() {
        Some(me) => event.agent_id == Some(me) || (authorized && event.agent_id.is_none()),
        None => true,
    }
}

/// Live events from now on, every one: filter them with [`Filter::matches`] and [`visible_to`].
pub fn subscribe(state: &AppState) -> broadcast::Receiver<Arc<Event>> {
    state.bus.subscribe()
}

/// Checks that `principal` may follow what `filter` names, and returns its current state (the
/// snapshot sent before live events). `Ok(None)`: nothing specific is named.
pub async fn snapshot(
    state: &AppState,
    principal: &Principal,
    filter: &Filter,
) -> Result<Option<Value>, &'static str> {
    if let Some(id) = filter.task_id {
        let task = tasks::find(&state.db.conn, id)
            .await
            .map_err(|_| "temporarily unavailable")?
            .ok_or(NOT_VISIBLE)?;
        if principal.agent_id().is_some() && task.agent_id != principal.agent_id() {
            return Err(NOT_VISIBLE);
        }
        // Exactly as REST reads show it: a sealed value only names its key.
        let result = if task.sealed_key.is_some() {
            task.result.map(mcp_shared::sealing::masked)
        } else {
            task.result
        };
        return Ok(Some(json!({
            "task_id": task.id, "status": task.status, "progress": task.progress,
            "result": result, "error": task.error, "agent_id": task.agent_id,
            "execution_id": task.execution_id, "stage": task.stage, "updated_at": task.updated_at,
        })));
    }
    if let Some(id) = filter.execution_id {
        // Agents follow tasks, not executions.
        if principal.agent_id().is_some() {
            return Err(NOT_VISIBLE);
        }
        let e = pipelines::find(&state.db.conn, id)
            .await
            .map_err(|_| "temporarily unavailable")?
            .ok_or(NOT_VISIBLE)?;
        let runs = pipelines::stage_runs(&state.db.conn, id)
            .await
            .map_err(|_| "temporarily unavailable")?;
        let stages = stage_views(&runs);
        let progress = overall_progress(&e, &stages);
        return Ok(Some(json!({
            "execution_id": e.id, "status": e.status, "progress": progress,
            "current_stage": e.current_stage, "error": e.error,
            "stages": stages.iter().map(|s| json!({"stage": s.stage, "status": s.status, "progress": s.progress})).collect::<Vec<_>>(),
        })));
    }
    Ok(None)
}

/// What a replay found.
pub struct Replay {
    /// The retained events after `since` that pass the filter and are visible, oldest first.
    pub events: Vec<Event>,
    /// Set when more events remain than one replay returns: resume after this id (the last
    /// event read, whether or not it passed the filter), or there would be a gap.
    pub truncated_at: Option<EventId>,
}

/// The retained events after `since` that `principal` may see and `filter` passes.
pub async fn replay(
    state: &AppState,
    principal: &Principal,
    filter: &Filter,
    authorized: bool,
    since: EventId,
) -> mcp_shared::Result<Replay> {
    let raw = state.bus.replay(since).await?;
    let truncated_at = (raw.len() >= mcp_shared::bus::MAX_REPLAY)
        .then(|| raw.last().and_then(|e| EventId::parse(&e.id)))
        .flatten();
    Ok(Replay {
        events: raw
            .into_iter()
            .filter(|e| filter.matches(e) && visible_to(principal, e, authorized))
            .collect(),
        truncated_at,
    })
}
