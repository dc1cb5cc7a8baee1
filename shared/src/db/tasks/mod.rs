//! Task rows: creation and reads. The rest of a task's life is in the submodules:
//! - [`transitions`]: the conditional updates that move a task through its states (the decisions
//!   about which transition to make live in [`crate::lifecycle`]);
//! - [`dispatch`]: what the dispatcher and agents' claims read and mark (due tasks, pushed jobs);
//! - [`maintenance`]: retention and key rotation.

pub mod dispatch;
pub mod maintenance;
pub mod partial;
pub mod transitions;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use crate::{
    Result,
    domain::task::TaskStatus,
    entities::tasks::{self, Column, Entity},
};

/// `id IN (…)` for a batch of ids, its length rounded up to a power of two by repeating the last
/// id: a handful of statement shapes instead of one per batch size, so the databases' statement
/// and plan caches keep hitting (a repeated id matches nothing more).
pub(crate) fn id_in(ids: impl IntoIterator<Item = Uuid>) -> sea_orm::sea_query::SimpleExpr {
    let mut ids: Vec<Uuid> = ids.into_iter().collect();
    if let Some(&last) = ids.last() {
        ids.resize(ids.len().next_power_of_two(), last);
    }
    Column::Id.is_in(ids)
}

pub async fn insert(db: &impl ConnectionTrait, model: tasks::ActiveModel) -> Result<tasks::Model> {
    Ok(model.insert(db).await?)
}

pub async fn find(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<tasks::Model>> {
    Ok(Entity::find_by_id(id).one(db).await?)
}

pub async fn find_by_idempotency_key(
    db: &impl ConnectionTrait,
    key: &str,
) -> Result<Option<tasks::Model>> {
    Ok(Entity::find()
        .filter(Column::IdempotencyKey.eq(key))
        .one(db)
        .await?)
}

pub async fn find_by_idempotency_keys(
    db: &impl ConnectionTrait,
    keys: &[String],
) -> Result<Vec<tasks::Model>> {
    Ok(Entity::find()
        .filter(Column::IdempotencyKey.is_in(keys.iter().cloned()))
        .all(db)
        .await?)
}

/// Filters for listing; `after` is the last id of the previous page (ids are time-ordered v7).
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub status: Option<TaskStatus>,
    pub priority: Option<String>,
    pub task_type: Option<String>,
    pub agent_id: Option<Uuid>,
    pub after: Option<Uuid>,
    pub limit: u64,
}

/// Newest first is what people want to see, but cursors are simplest over ascending ids;
/// we page in descending id order with `id < after`.
pub async fn list(db: &impl ConnectionTrait, f: &ListFilter) -> Result<Vec<tasks::Model>> {
    let mut q = Entity::find();
    if let Some(s) = f.status {
        if s != TaskStatus::Completed {
            // Only completed tasks are outside the index by status.
            q = q.filter(partial::condition(partial::OPEN));
        }
        q = q.filter(Column::Status.eq(s.as_str()));
    }
    if let Some(p) = &f.priority {
        q = q.filter(Column::Priority.eq(p.as_str()));
    }
    if let Some(t) = &f.task_type {
        q = q.filter(Column::TaskType.eq(t.as_str()));
    }
    if let Some(a) = f.agent_id {
        q = q.filter(Column::AgentId.eq(a));
    }
    if let Some(after) = f.after {
        q = q.filter(Column::Id.lt(after));
    }
    Ok(q.order_by_desc(Column::Id).limit(f.limit).all(db).await?)
}

pub fn new_row(id: Uuid, now: DateTime<Utc>) -> tasks::ActiveModel {
    tasks::ActiveModel {
        id: Set(id),
        status: Set(TaskStatus::Pending.as_str().into()),
        progress: Set(0),
        attempt: Set(0),
        result: Set(None),
        error: Set(None),
        message: Set(None),
        agent_id: Set(None),
        execution_id: Set(None),
        stage: Set(None),
        started_at: Set(None),
        finished_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        enqueued_at: Set(None),
        lease_expires_at: Set(None),
        cancel_requested: Set(false),
        traceparent: Set(crate::otlp::current_traceparent()),
        ..Default::default()
    }
}

/// Inserts many rows in chunks (one statement per chunk).
pub async fn insert_many(db: &impl ConnectionTrait, rows: Vec<tasks::ActiveModel>) -> Result<()> {
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<_> = rows.by_ref().take(200).collect();
        Entity::insert_many(chunk).exec(db).await?;
    }
    Ok(())
}

/// How many tasks `agent` holds: assigned to it, or running on it.
pub async fn count_held_by(db: &impl ConnectionTrait, agent: Uuid) -> Result<u64> {
    use sea_orm::PaginatorTrait;
    Ok(Entity::find()
        .filter(partial::condition(partial::HELD))
        .filter(Column::AgentId.eq(agent))
        .count(db)
        .await?)
}

/// Task counts per queue and status (for `GET /queues`). Retrying tasks whose retry is not yet
/// due are reported under the pseudo-status `retry_wait`.
pub async fn counts_by_queue(db: &impl ConnectionTrait) -> Result<Vec<(String, String, i64)>> {
    #[derive(FromQueryResult)]
    struct Row {
        queue: String,
        status: String,
        n: i64,
    }
    let rows = Entity::find()
        .select_only()
        .column(Column::Queue)
        .column(Column::Status)
        .column_as(Column::Id.count(), "n")
        .group_by(Column::Queue)
        .group_by(Column::Status)
        .into_model::<Row>()
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|r| (r.queue, r.status, r.n)).collect())
}
