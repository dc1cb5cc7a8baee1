//! Task rows: creation, reads, and the conditional updates that move a task through its states.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
    sea_query::{Expr, ExprTrait},
};
use serde_json::Value;
use uuid::Uuid;

use crate::{
    Result,
    domain::task::TaskStatus,
    entities::tasks::{self, Column, Entity},
};

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

/// Moves a startable task to `running` and counts the attempt. Returns the updated row, or
/// `None` when the task is not startable (already running elsewhere, finished, cancelled):
/// the caller then drops the delivery as a duplicate.
pub async fn start(
    db: &impl ConnectionTrait,
    id: Uuid,
    agent_id: Option<Uuid>,
) -> Result<Option<tasks::Model>> {
    let now = Utc::now();
    let res = Entity::update_many()
        .col_expr(Column::Status, Expr::value(TaskStatus::Running.as_str()))
        .col_expr(Column::Attempt, Expr::col(Column::Attempt).add(1))
        .col_expr(Column::StartedAt, Expr::value(now))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .col_expr(Column::AgentId, Expr::value(agent_id))
        .filter(Column::Id.eq(id))
        .filter(Column::Status.is_in(TaskStatus::STARTABLE.iter().map(|s| s.as_str())))
        .exec(db)
        .await?;
    if res.rows_affected == 0 {
        return Ok(None);
    }
    find(db, id).await
}

/// `running → completed` with the result. Returns false when the task was not running (a
/// repeated completion, or the task was cancelled meanwhile): nothing changes then.
pub async fn complete(db: &impl ConnectionTrait, id: Uuid, result: Value) -> Result<bool> {
    let now = Utc::now();
    let res = Entity::update_many()
        .col_expr(Column::Status, Expr::value(TaskStatus::Completed.as_str()))
        .col_expr(Column::Result, Expr::value(result))
        .col_expr(Column::Progress, Expr::value(100))
        .col_expr(Column::Error, Expr::value(Option::<String>::None))
        .col_expr(Column::FinishedAt, Expr::value(now))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.eq(id))
        .filter(Column::Status.eq(TaskStatus::Running.as_str()))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// `running → failed` (will be retried) or `running → dead` (attempts exhausted).
pub async fn fail(
    db: &impl ConnectionTrait,
    id: Uuid,
    error: &str,
    to: TaskStatus,
    retry_at: Option<DateTime<Utc>>,
) -> Result<bool> {
    let now = Utc::now();
    let finished = to.is_terminal().then_some(now);
    let res = Entity::update_many()
        .col_expr(Column::Status, Expr::value(to.as_str()))
        .col_expr(Column::Error, Expr::value(error))
        .col_expr(Column::RunAt, Expr::value(retry_at))
        .col_expr(Column::FinishedAt, Expr::value(finished))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.eq(id))
        .filter(Column::Status.eq(TaskStatus::Running.as_str()))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
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
        ..Default::default()
    }
}
