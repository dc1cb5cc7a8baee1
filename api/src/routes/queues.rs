//! Queues: live counts per capability and tier, pause and resume.

use std::collections::BTreeMap;

use chrono::Utc;
use mcp_shared::{
    auth::Permission, db::tasks, domain::task::Priority, entities::queue_states, queue::QueueName,
};
use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, payload::Json};
use sea_orm::{EntityTrait, Set, sea_query::OnConflict};

use super::{ApiTags, Envelope, ListEnvelope, ok, page};
use crate::{
    auth::Auth,
    error::{ApiError, ApiResult},
    services::{audit, tasks::valid_capability},
    state::AppState,
};

pub struct QueuesApi;

#[derive(Object, Default, Clone)]
pub struct TierCounts {
    pub critical: i64,
    pub high: i64,
    pub medium: i64,
    pub low: i64,
}

impl TierCounts {
    fn add(&mut self, tier: Priority, n: i64) {
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

#[derive(ApiResponse)]
pub enum QueueList {
    #[oai(status = 200)]
    Ok(Json<ListEnvelope<QueueView>>),
}

#[derive(ApiResponse)]
pub enum QueueResponse {
    #[oai(status = 200)]
    Ok(Json<Envelope<QueueView>>),
}

/// Accepts `generic`, `mcp:generic`, `mcp:generic:low` or a combined `mcp:a+b`; returns the
/// capability key.
fn capability_of(name: &str) -> ApiResult<String> {
    let cap = name.strip_prefix("mcp:").unwrap_or(name);
    let cap = cap.split(':').next().unwrap_or_default();
    if cap.split('+').all(valid_capability) {
        Ok(cap.to_string())
    } else {
        Err(ApiError::not_found("queue"))
    }
}

async fn views(state: &AppState) -> ApiResult<Vec<QueueView>> {
    let counts = tasks::counts_by_queue(&state.db.conn).await?;
    Ok(views_from_counts(state, &counts).await)
}

/// The queues from the task counts per queue and status (also read by `/metrics`).
pub(crate) async fn views_from_counts(
    state: &AppState,
    counts: &[(String, String, i64)],
) -> Vec<QueueView> {
    let mut by_cap: BTreeMap<String, QueueView> = BTreeMap::new();
    let blank = |cap: &str| QueueView {
        name: format!("mcp:{cap}"),
        capability: cap.to_string(),
        pending: TierCounts::default(),
        scheduled: 0,
        running: 0,
        dead: 0,
        paused: false,
        processed_total: 0,
        failed_total: 0,
    };
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

async fn set_paused(state: &AppState, capability: &str, paused: bool) -> ApiResult<()> {
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

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Tasks")]
impl QueuesApi {
    /// Every queue with live counts per tier.
    #[oai(path = "/queues", method = "get")]
    async fn list(&self, state: Data<&AppState>, auth: Auth) -> ApiResult<QueueList> {
        auth.0.require(Permission::SystemRead)?;
        Ok(QueueList::Ok(page(views(&state).await?, None)))
    }

    /// Stop dispatching a queue's tasks (all four tiers); running ones finish.
    #[oai(path = "/queues/:name/pause", method = "post")]
    async fn pause(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        name: Path<String>,
    ) -> ApiResult<QueueResponse> {
        self.toggle(&state, &auth, &name.0, true).await
    }

    /// Resume a paused queue.
    #[oai(path = "/queues/:name/resume", method = "post")]
    async fn resume(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        name: Path<String>,
    ) -> ApiResult<QueueResponse> {
        self.toggle(&state, &auth, &name.0, false).await
    }
}

impl QueuesApi {
    async fn toggle(
        &self,
        state: &AppState,
        auth: &Auth,
        name: &str,
        paused: bool,
    ) -> ApiResult<QueueResponse> {
        auth.0.require(Permission::TaskAssign)?;
        let cap = capability_of(name)?;
        set_paused(state, &cap, paused).await?;
        // Wait for the dispatcher to see it, so the answer is true when it is given.
        state.dispatcher.refresh(state).await?;
        audit::note(
            if paused {
                "queue.pause"
            } else {
                "queue.resume"
            },
            Some(format!("mcp:{cap}")),
            None,
        );
        let view = views(state)
            .await?
            .into_iter()
            .find(|v| v.capability == cap)
            .unwrap_or(QueueView {
                name: format!("mcp:{cap}"),
                capability: cap.clone(),
                pending: TierCounts::default(),
                scheduled: 0,
                running: 0,
                dead: 0,
                paused,
                processed_total: 0,
                failed_total: 0,
            });
        Ok(QueueResponse::Ok(ok(view)))
    }
}
