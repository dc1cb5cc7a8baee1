//! Assignments that are not claimed in time: `POST /tasks/{id}/assign` routes a task to one
//! agent, which takes it with its next claim. An agent that does not claim it within
//! `AGENT_ASSIGNMENT_TIMEOUT` (a crashed client, a stuck poll loop) would otherwise hold it
//! forever, so the dispatching replica releases it to its queue, where any agent or worker with
//! the capabilities takes it: with a `task.unassigned` event (which also feeds the
//! `mcp_task_assignments_expired_total` metric) and an audit record.

use std::time::Duration;

use mcp_shared::shutdown::spawn_every;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use mcp_shared::db::audit;

use crate::state::AppState;

/// Releases the assignments older than the timeout; returns how many.
pub async fn release_once(state: &AppState) -> mcp_shared::Result<usize> {
    let timeout = state.settings.agent_assignment_timeout;
    let released = state.lifecycle.release_unclaimed(timeout).await?;
    for task in &released {
        state
            .audit
            .record(audit::AuditEntry {
                actor: "system:assignments".into(),
                action: "task.assignment_expired".into(),
                target: Some(task.id.to_string()),
                outcome: "success".into(),
                request_id: None,
                details: Some(json!({
                    "agent_id": task.agent_id,
                    "timeout_seconds": timeout.as_secs_f64(),
                })),
            })
            .await;
    }
    if !released.is_empty() {
        state.dispatcher.wake();
    }
    Ok(released.len())
}

/// Checks a few times per timeout (at most every second), on the dispatching replica only.
pub fn spawn(state: AppState, shutdown: CancellationToken) {
    let period = (state.settings.agent_assignment_timeout / 4)
        .clamp(Duration::from_millis(100), Duration::from_secs(1));
    spawn_every(period, shutdown, move || {
        let state = state.clone();
        async move {
            if !state.dispatcher.is_leader() {
                return;
            }
            if let Err(e) = release_once(&state).await {
                tracing::warn!(error = %e, "releasing unclaimed assignments failed; retrying");
            }
        }
    });
}
