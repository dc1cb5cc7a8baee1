//! Schedule rows and their occurrences' history. An occurrence is claimed by moving the
//! schedule's `next_run_at` on with a compare-and-set and recording the occurrence's run row in
//! the same transaction: of any number of replicas that find it due, exactly one commits.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait, sea_query::Expr,
};
use uuid::Uuid;

use crate::{
    Result,
    domain::schedule::Outcome,
    entities::{schedule_runs as runs, schedules},
};

pub async fn insert(db: &impl ConnectionTrait, row: schedules::Model) -> Result<schedules::Model> {
    Ok(schedules::ActiveModel::from(row).insert(db).await?)
}

pub async fn find(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<schedules::Model>> {
    Ok(schedules::Entity::find_by_id(id).one(db).await?)
}

/// A page of schedules, newest first, after the cursor `after`.
pub async fn list(
    db: &impl ConnectionTrait,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<schedules::Model>> {
    let mut q = schedules::Entity::find();
    if let Some(after) = after {
        q = q.filter(schedules::Column::Id.lt(after));
    }
    Ok(q.order_by_desc(schedules::Column::Id)
        .limit(limit)
        .all(db)
        .await?)
}

/// Writes a changed schedule back whole (its id unchanged).
pub async fn update(db: &impl ConnectionTrait, row: schedules::Model) -> Result<schedules::Model> {
    let mut active = schedules::ActiveModel::from(row);
    for column in [
        schedules::Column::Name,
        schedules::Column::Cron,
        schedules::Column::IntervalSeconds,
        schedules::Column::StartAt,
        schedules::Column::TimeZone,
        schedules::Column::OverlapPolicy,
        schedules::Column::CatchUpPolicy,
        schedules::Column::Paused,
        schedules::Column::NextRunAt,
        schedules::Column::UpdatedAt,
    ] {
        sea_orm::ActiveModelTrait::reset(&mut active, column);
    }
    Ok(active.update(db).await?)
}

/// Deletes a schedule and its history; false when it did not exist.
pub async fn delete(db: &sea_orm::DatabaseConnection, id: Uuid) -> Result<bool> {
    let txn = db.begin().await?;
    runs::Entity::delete_many()
        .filter(runs::Column::ScheduleId.eq(id))
        .exec(&txn)
        .await?;
    let gone = schedules::Entity::delete_by_id(id).exec(&txn).await?;
    txn.commit().await?;
    Ok(gone.rows_affected == 1)
}

/// Active schedules whose next occurrence is due by `now`, the most overdue first.
pub async fn due(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<schedules::Model>> {
    Ok(schedules::Entity::find()
        .filter(schedules::Column::Paused.eq(false))
        .filter(schedules::Column::NextRunAt.lte(now))
        .order_by_asc(schedules::Column::NextRunAt)
        .limit(limit)
        .all(db)
        .await?)
}

/// One occurrence to record when claiming.
pub struct Occurrence {
    pub at: DateTime<Utc>,
    pub outcome: Outcome,
}

/// Claims the occurrences due from `expected` on: moves `next_run_at` from `expected` to `next`
/// only if no one else has (and the schedule is still active), and records `occurrences` in the
/// same transaction. Returns the run rows recorded, or `None` when another replica (or a PATCH)
/// got there first.
pub async fn claim(
    db: &sea_orm::DatabaseConnection,
    schedule_id: Uuid,
    expected: DateTime<Utc>,
    next: Option<DateTime<Utc>>,
    occurrences: &[Occurrence],
    now: DateTime<Utc>,
) -> Result<Option<Vec<runs::Model>>> {
    let txn = db.begin().await?;
    let moved = schedules::Entity::update_many()
        .col_expr(schedules::Column::NextRunAt, Expr::value(next))
        .filter(schedules::Column::Id.eq(schedule_id))
        .filter(schedules::Column::NextRunAt.eq(expected))
        .filter(schedules::Column::Paused.eq(false))
        .exec(&txn)
        .await?;
    if moved.rows_affected != 1 {
        txn.rollback().await?;
        return Ok(None);
    }
    let mut recorded = Vec::with_capacity(occurrences.len());
    for o in occurrences {
        let row = runs::Model {
            id: Uuid::now_v7(),
            schedule_id,
            occurrence_at: o.at,
            outcome: o.outcome.as_str().to_string(),
            task_id: None,
            execution_id: None,
            error: None,
            fired_at: now,
        };
        recorded.push(runs::ActiveModel::from(row).insert(&txn).await?);
    }
    txn.commit().await?;
    Ok(Some(recorded))
}

/// Settles a `firing` run: what it started, or why it did not. A run already settled (by
/// another replica re-driving it) is left as it is.
pub async fn settle(
    db: &impl ConnectionTrait,
    run_id: Uuid,
    outcome: Outcome,
    task_id: Option<Uuid>,
    execution_id: Option<Uuid>,
    error: Option<String>,
) -> Result<bool> {
    let res = runs::Entity::update_many()
        .col_expr(runs::Column::Outcome, Expr::value(outcome.as_str()))
        .col_expr(runs::Column::TaskId, Expr::value(task_id))
        .col_expr(runs::Column::ExecutionId, Expr::value(execution_id))
        .col_expr(runs::Column::Error, Expr::value(error))
        .filter(runs::Column::Id.eq(run_id))
        .filter(runs::Column::Outcome.eq(Outcome::Firing.as_str()))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Runs claimed before `before` and still `firing`: their replica stopped between the claim
/// and creating the task or execution.
pub async fn stalled(
    db: &impl ConnectionTrait,
    before: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<runs::Model>> {
    Ok(runs::Entity::find()
        .filter(runs::Column::Outcome.eq(Outcome::Firing.as_str()))
        .filter(runs::Column::FiredAt.lt(before))
        .order_by_asc(runs::Column::FiredAt)
        .limit(limit)
        .all(db)
        .await?)
}

/// A schedule's occurrences, latest first.
pub async fn runs(
    db: &impl ConnectionTrait,
    schedule_id: Uuid,
    before: Option<DateTime<Utc>>,
    limit: u64,
) -> Result<Vec<runs::Model>> {
    let mut q = runs::Entity::find().filter(runs::Column::ScheduleId.eq(schedule_id));
    if let Some(before) = before {
        q = q.filter(runs::Column::OccurrenceAt.lt(before));
    }
    Ok(q.order_by_desc(runs::Column::OccurrenceAt)
        .limit(limit)
        .all(db)
        .await?)
}

/// The latest occurrence that started a task or execution (for the overlap policy).
pub async fn last_fired(
    db: &impl ConnectionTrait,
    schedule_id: Uuid,
    before: DateTime<Utc>,
) -> Result<Option<runs::Model>> {
    Ok(runs::Entity::find()
        .filter(runs::Column::ScheduleId.eq(schedule_id))
        .filter(runs::Column::Outcome.eq(Outcome::Fired.as_str()))
        .filter(runs::Column::OccurrenceAt.lt(before))
        .order_by_desc(runs::Column::OccurrenceAt)
        .one(db)
        .await?)
}

/// Deletes settled occurrences recorded before `cutoff` (retention); returns how many.
pub async fn purge_runs_before(db: &impl ConnectionTrait, cutoff: DateTime<Utc>) -> Result<u64> {
    let res = runs::Entity::delete_many()
        .filter(runs::Column::FiredAt.lt(cutoff))
        .filter(runs::Column::Outcome.ne(Outcome::Firing.as_str()))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}
