//! The agent run protocol: an agent claims its next task (waiting for one to be routed to it),
//! reports progress on it, and completes or fails it. Every transition is the lifecycle's
//! ([`mcp_shared::lifecycle`]); this module checks that the caller holds the task.

use std::time::Duration;

use mcp_shared::{
    db::tasks::{self, transitions::Holder},
    domain::{
        event::EventType,
        task::{Priority, TaskStatus},
    },
    entities::tasks::Model,
    lifecycle::Progress,
    queue::{QueueName, served_keys},
};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::{
    directory::AgentEntry,
    error::{ApiError, ErrorCode},
    services::{
        agents, shards,
        tasks::{find, illegal},
    },
    state::AppState,
};

/// The agent takes its next task, waiting up to `wait` for one to be routed to it; `None` when
/// nothing arrived in time.
pub async fn claim_waiting(
    state: &AppState,
    agent_id: Uuid,
    wait: Duration,
) -> Result<Option<Model>, ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    // Subscribe first, so a task routed between the check and the wait still wakes us.
    let mut events = state.bus.subscribe();
    loop {
        let me = agents::find(state, agent_id).await?;
        if let Some(task) = claim(state, &me).await? {
            return Ok(Some(task));
        }
        // Wait for something that could make a task claimable: a creation, a stage's shards
        // enqueued, an assignment to us, a retry coming due. Bursts are coalesced into one
        // more look.
        let woke = tokio::time::timeout_at(deadline, async {
            loop {
                match events.recv().await {
                    Ok(e)
                        if matches!(
                            e.kind,
                            EventType::TaskCreated
                                | EventType::TaskFailed
                                | EventType::StageStarted
                        ) || (e.kind == EventType::TaskAssigned
                            && e.agent_id == Some(agent_id)) =>
                    {
                        return true;
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => return true,
                    Err(RecvError::Closed) => return false,
                }
            }
        })
        .await;
        match woke {
            Ok(true) => while events.try_recv().is_ok() {},
            _ => return Ok(None),
        }
    }
}

/// Gives the agent its next task: one assigned to it, else the oldest due task in its
/// capabilities' queues (most urgent tier first) whose required capabilities it all has.
async fn claim(state: &AppState, agent: &AgentEntry) -> Result<Option<Model>, ApiError> {
    let me = agent.model.id;
    if let Some(t) = tasks::transitions::next_assigned(&state.db.conn, me).await?
        && let Some(started) = state.lifecycle.start_assigned(t.id, me).await?
    {
        return Ok(Some(started));
    }
    let mine: Vec<&str> = agent.capabilities.iter().map(|c| c.name.as_str()).collect();
    let owned: Vec<String> = mine.iter().map(|c| c.to_string()).collect();
    let keys = served_keys(&owned);
    for tier in Priority::ALL {
        let queues: Vec<String> = keys
            .iter()
            .map(|k| QueueName::new(k.clone(), *tier).to_string())
            .collect();
        for t in tasks::dispatch::claimable(&state.db.conn, &queues, 20).await? {
            let needs: Vec<String> =
                serde_json::from_value(t.required_capabilities.clone()).unwrap_or_default();
            if !needs.iter().all(|n| mine.contains(&n.as_str())) {
                continue;
            }
            if let Some(started) = state.lifecycle.start(t.id, Some(me)).await? {
                return Ok(Some(started));
            }
        }
    }
    Ok(None)
}

/// The task, if it is running on `agent`, and the agent's hold on this attempt of it; 403 when
/// it is routed elsewhere, 409 when not running.
async fn held_by(
    state: &AppState,
    id: Uuid,
    agent: Uuid,
    action: &str,
) -> Result<(Model, Holder), ApiError> {
    let t = find(state, id).await?;
    if t.agent_id != Some(agent) {
        return Err(ApiError::forbidden("this task is not routed to you"));
    }
    if t.status != TaskStatus::Running.as_str() {
        return Err(illegal(&t, action));
    }
    let holder = Holder {
        agent: Some(agent),
        attempt: Some(t.attempt),
    };
    Ok((t, holder))
}

/// Records progress. A cancel request is answered here: the task becomes cancelled and the
/// agent is told to stop (409 `task_cancelled`).
pub async fn report_progress(
    state: &AppState,
    agent: Uuid,
    id: Uuid,
    progress: i32,
    message: Option<String>,
    records_done: Option<u64>,
) -> Result<Model, ApiError> {
    let (t, holder) = held_by(state, id, agent, "report progress on").await?;
    match state
        .lifecycle
        .progress(&t, holder, progress, message)
        .await?
    {
        Progress::Recorded => {
            shards::progress(state, &t, records_done, progress).await;
            find(state, id).await
        }
        Progress::Cancelled => Err(ApiError::new(
            ErrorCode::TaskCancelled,
            "the task was cancelled; stop working on it",
        )
        .with_details(json!({"current_status": "cancelled"}))),
        Progress::NotRunning => Err(illegal(&find(state, id).await?, "report progress on")),
    }
}

/// Completes; repeating the same completion returns the task unchanged.
pub async fn report_complete(
    state: &AppState,
    agent: Uuid,
    id: Uuid,
    mut result: Value,
) -> Result<Model, ApiError> {
    let stored = find(state, id).await?;
    if stored.sealed_key.is_some() {
        // An agent echoing a sensitive input must not get it stored in clear.
        let mut opened = stored.payload.clone();
        if mcp_shared::sealing::open(&mut opened, &state.cipher).is_ok() {
            mcp_shared::sealing::keep_sealed(&mut result, &stored.payload, &opened);
        }
    }
    // A pipeline shard is recorded, and its execution moved on, before the task completes,
    // as a built-in worker does.
    shards::before_complete(state, agent, &stored, &result).await?;
    let holder = Holder {
        agent: Some(agent),
        attempt: None,
    };
    state.lifecycle.complete(&stored, holder, result).await?;
    let t = find(state, id).await?;
    if t.agent_id != Some(agent) {
        return Err(ApiError::forbidden("this task is not routed to you"));
    }
    if t.status == TaskStatus::Completed.as_str() {
        return Ok(t);
    }
    Err(illegal(&t, "complete"))
}

/// The longest error an agent may report; the rest is cut off.
const MAX_ERROR_CHARS: usize = 4000;

/// Fails the attempt: retried after a backoff while attempts remain and the error is retryable.
pub async fn report_fail(
    state: &AppState,
    agent: Uuid,
    id: Uuid,
    error: &str,
    retryable: bool,
) -> Result<Model, ApiError> {
    let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
    let (t, holder) = held_by(state, id, agent, "fail").await?;
    if state
        .lifecycle
        .fail(&t, holder, &error, retryable)
        .await?
        .is_none()
    {
        return Err(illegal(&find(state, id).await?, "fail"));
    }
    let t = find(state, id).await?;
    // A retry comes due after its backoff: the dispatcher pushes it.
    state.dispatcher.wake();
    Ok(t)
}
