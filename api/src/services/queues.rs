//! Queues: live counts per capability and tier (read from the task rows), pausing and resuming.

use std::collections::BTreeMap;

use chrono::Utc;
use mcp_shared::{
    db::tasks, domain::agent::valid_capability, domain::task::Priority, entities::queue_states,
    queue::QueueName,
};
use sea_orm::{EntityTrait, Set, sea_query::OnConflict};

use crate::{error::ApiError, state::AppState, views::QueueView};

/// Accepts `generic`, `mcp:generic`, `mcp:generic:low` or a combined `mcp:a+b`; returns the
/// capability key.
fn capability_of(name: &str) -> Result<String, ApiError> {
    let cap = name.strip_prefix("mcp:").unwrap_or(name);
    let cap = cap.split(':').next().unwrap_or_default();
    if cap.split('+').all(valid_capability) {
        Ok(cap.to_string())
    } else {
        Err(ApiError::not_found("queue"))
    }
}

/// Every queue with live counts per tier.
pub async fn list(state: &AppState) -> Result<Vec<QueueView>, ApiError> {
    let counts = tasks::counts_by_queue(&state.db.conn).await?;
    Ok(views_from_counts(state, &counts).await)
}

/// Tasks waiting to run, all queues and tiers.
pub async fn waiting(state: &AppState) -> Result<i64, ApiError> {
    Ok(list(state)
        .await?
        .iter()
        .map(|q| q.pending.critical + q.pending.high + q.pending.medium + q.pending.low)
        .sum())
}

/// The queues from the task counts per queue and status (as `/metrics` reads them too).
pub async fn views_from_counts(
    state: &AppState,
    counts: &[(String, String, i64)],
) -> Vec<QueueView> {
    let mut by_cap: BTreeMap<String, QueueView> = BTreeMap::new();
    let blank = |cap: &str| QueueView::empty(cap, false);
    by_cap.insert("generic".into(), blank("generic"));
    for (queue, status, n) in counts {
        let n = *n;
        let mut parts = queue.splitn(3, ':').skip(1);
        let (Some(cap), Some(tier)) = (parts.next(), parts.next().and_then(Priority::parse)) else {
            continue;
        };
        let v = by_cap.entry(cap.to_string()).or_insert_with(|| blank(cap));
        match status.as_str() {
            "pending" | "failed" => v.pending.add(tier, n),
            "scheduled" => v.scheduled += n,
            "assigned" | "running" => v.running += n,
            "dead" => {
                v.dead += n;
                v.failed_total += n;
            }
            "completed" => v.processed_total += n,
            _ => {}
        }
    }
    for v in by_cap.values_mut() {
        v.paused = state
            .dispatcher
            .is_paused(&QueueName::new(v.capability.clone(), Priority::Low).to_string())
            .await;
    }
    by_cap.into_values().collect()
}

async fn set_paused(state: &AppState, capability: &str, paused: bool) -> Result<(), ApiError> {
    let rows: Vec<queue_states::ActiveModel> = QueueName::tiers(capability)
        .map(|q| queue_states::ActiveModel {
            name: Set(q.to_string()),
            paused: Set(paused),
            updated_at: Set(Utc::now()),
        })
        .collect();
    queue_states::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::column(queue_states::Column::Name)
                .update_columns([
                    queue_states::Column::Paused,
                    queue_states::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec(&state.db.conn)
        .await
        .map_err(mcp_shared::Error::from)?;
    state.dispatcher.wake();
    Ok(())
}

/// Pauses (stops dispatching its tasks, all four tiers; running ones finish) or resumes the
/// queue `name` names (`generic`, `mcp:generic`, `mcp:generic:low`, `mcp:a+b`); returns its
/// capability key once the dispatcher sees the change.
pub async fn set_paused_by_name(
    state: &AppState,
    name: &str,
    paused: bool,
) -> Result<String, ApiError> {
    let cap = capability_of(name)?;
    set_paused(state, &cap, paused).await?;
    // Wait for the dispatcher to see it, so the answer is true when it is given.
    state.dispatcher.refresh().await?;
    Ok(cap)
}

/// The queue of capability key `cap` (blank when it has never held a task).
pub async fn find(state: &AppState, cap: &str, paused: bool) -> Result<QueueView, ApiError> {
    Ok(list(state)
        .await?
        .into_iter()
        .find(|v| v.capability == cap)
        .unwrap_or_else(|| QueueView::empty(cap, paused)))
}
