//! Task rows: creation, reads, and the conditional updates that move a task through its states.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, QuerySelect, Set,
    sea_query::{Expr, ExprTrait},
};
use serde_json::Value;
use uuid::Uuid;

use crate::{
    Result,
    domain::task::TaskStatus,
    entities::tasks::{self, Column, Entity},
};

/// Who may finish a running attempt: an attempt that was released and restarted elsewhere must
/// not be finished by its old holder.
#[derive(Debug, Clone, Copy, Default)]
pub struct Holder {
    /// The agent running it (`None`: any).
    pub agent: Option<Uuid>,
    /// The attempt number it started as (`None`: any).
    pub attempt: Option<i32>,
}

impl Holder {
    fn restrict(self, mut update: sea_orm::UpdateMany<Entity>) -> sea_orm::UpdateMany<Entity> {
        if let Some(a) = self.agent {
            update = update.filter(Column::AgentId.eq(a));
        }
        if let Some(n) = self.attempt {
            update = update.filter(Column::Attempt.eq(n));
        }
        update
    }
}

/// The status after a failed or lost attempt: `to`, or `cancelled` when a cancel was requested
/// meanwhile (a cancelled task is never retried).
fn unless_cancel_requested(to: TaskStatus) -> Expr {
    Expr::case(
        Column::CancelRequested.eq(true),
        Expr::value(TaskStatus::Cancelled.as_str()),
    )
    .finally(Expr::value(to.as_str()))
    .into()
}

fn finished_unless_cancel_requested(finished: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Expr {
    Expr::case(Column::CancelRequested.eq(true), Expr::value(now))
        .finally(Expr::value(finished))
        .into()
}

/// Extra time a running attempt is held beyond its timeout before it counts as lost.
pub const LEASE_GRACE: chrono::Duration = chrono::Duration::seconds(30);

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
    start_where(db, id, agent_id, startable(Utc::now())).await
}

/// Startable: waiting states, or a running attempt whose lease ran out (its worker died); never
/// a task asked to cancel, nor one scheduled for later.
fn startable(now: DateTime<Utc>) -> Condition {
    Condition::all()
        .add(
            Condition::any()
                .add(Column::Status.is_in(TaskStatus::STARTABLE.iter().map(|s| s.as_str())))
                .add(
                    Condition::all()
                        .add(Column::Status.eq(TaskStatus::Running.as_str()))
                        .add(Column::LeaseExpiresAt.lt(now)),
                ),
        )
        .add(Column::CancelRequested.eq(false))
        .add(Column::RunAt.is_null().or(Column::RunAt.lte(now)))
}

/// `condition` as one `CASE`, which no index can serve, for updates that name their rows by id:
/// with an `id IN (…)` list, PostgreSQL otherwise ANDs the primary key with the status or agent
/// index, and before statistics exist (a fresh batch) reads every pending row of the status
/// index, or every task the agent ever ran, on every statement.
fn unindexed(condition: Condition) -> sea_orm::sea_query::SimpleExpr {
    let checked: Expr = Expr::case(condition, Expr::val(true))
        .finally(Expr::val(false))
        .into();
    checked.eq(true)
}

/// Whether [`start_many`] and [`complete_many`] can work in one statement per batch: they need
/// the updated rows back (PostgreSQL, SQLite ≥ 3.35).
pub fn batches(db: &impl ConnectionTrait) -> bool {
    db.support_returning()
}

/// [`start`] for many tasks at once: one read of their timeouts, then one conditional update
/// per distinct timeout (the lease depends on it), usually one for the whole batch. Returns the
/// rows that started; an id left out was not startable. An id given twice starts once.
/// Needs [`batches`].
pub async fn start_many(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
    agent_id: Option<Uuid>,
) -> Result<Vec<tasks::Model>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let now = Utc::now();
    let timeouts: Vec<(Uuid, i32)> = Entity::find()
        .select_only()
        .column(Column::Id)
        .column(Column::TimeoutSeconds)
        .filter(Column::Id.is_in(ids.iter().copied()))
        .into_tuple()
        .all(db)
        .await?;
    let mut by_timeout: std::collections::BTreeMap<i32, Vec<Uuid>> = Default::default();
    for (id, timeout) in timeouts {
        by_timeout.entry(timeout).or_default().push(id);
    }
    let mut started = Vec::with_capacity(ids.len());
    for (timeout, group) in by_timeout {
        let lease = now + chrono::Duration::seconds(timeout as i64) + LEASE_GRACE;
        let rows = Entity::update_many()
            .col_expr(Column::Status, Expr::value(TaskStatus::Running.as_str()))
            .col_expr(Column::Attempt, Expr::col(Column::Attempt).add(1))
            .col_expr(Column::StartedAt, Expr::value(now))
            .col_expr(Column::UpdatedAt, Expr::value(now))
            .col_expr(Column::LeaseExpiresAt, Expr::value(lease))
            .col_expr(Column::AgentId, Expr::value(agent_id))
            .filter(Column::Id.is_in(group))
            .filter(unindexed(startable(now)))
            .exec_with_returning(db)
            .await?;
        started.extend(rows);
    }
    Ok(started)
}

/// One completion for [`complete_many`].
#[derive(Debug, Clone)]
pub struct Completion {
    pub id: Uuid,
    pub holder: Holder,
    pub result: Value,
}

/// [`complete`] for many tasks at once: one conditional update per distinct holder (usually one
/// for the whole batch), each row getting its own result. Returns the ids completed; an id left
/// out was not running under its holder (nothing changed for it). Needs [`batches`].
pub async fn complete_many(db: &impl ConnectionTrait, items: &[Completion]) -> Result<Vec<Uuid>> {
    let mut by_holder: std::collections::BTreeMap<(Option<Uuid>, Option<i32>), Vec<&Completion>> =
        Default::default();
    for item in items {
        by_holder
            .entry((item.holder.agent, item.holder.attempt))
            .or_default()
            .push(item);
    }
    let now = Utc::now();
    let mut done = Vec::with_capacity(items.len());
    for ((agent, attempt), group) in by_holder {
        let first = &group[0].result;
        // Most batches carry one result shape (no-op and echo handlers); otherwise each row
        // picks its own result by id.
        let result: Expr = if group.iter().all(|c| c.result == *first) {
            Expr::value(first.clone())
        } else {
            let mut case = sea_orm::sea_query::CaseStatement::new();
            for c in &group {
                case = case.case(Column::Id.eq(c.id), Expr::value(c.result.clone()));
            }
            case.finally(Expr::col(Column::Result)).into()
        };
        let mut running = Condition::all().add(Column::Status.eq(TaskStatus::Running.as_str()));
        if let Some(a) = agent {
            running = running.add(Column::AgentId.eq(a));
        }
        if let Some(n) = attempt {
            running = running.add(Column::Attempt.eq(n));
        }
        let rows = Entity::update_many()
            .col_expr(Column::Status, Expr::value(TaskStatus::Completed.as_str()))
            .col_expr(Column::Result, result)
            .col_expr(Column::Progress, Expr::value(100))
            .col_expr(Column::Error, Expr::value(Option::<String>::None))
            .col_expr(
                Column::LeaseExpiresAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(Column::FinishedAt, Expr::value(now))
            .col_expr(Column::UpdatedAt, Expr::value(now))
            .filter(Column::Id.is_in(group.iter().map(|c| c.id)))
            .filter(unindexed(running))
            .exec_with_returning(db)
            .await?;
        done.extend(rows.into_iter().map(|r| r.id));
    }
    Ok(done)
}

/// Moves the task to `running` if `condition` holds: counts the attempt, takes the lease
/// (`timeout_seconds` + [`LEASE_GRACE`]) and records the holder.
async fn start_where(
    db: &impl ConnectionTrait,
    id: Uuid,
    agent_id: Option<Uuid>,
    condition: Condition,
) -> Result<Option<tasks::Model>> {
    let now = Utc::now();
    let Some(current) = find(db, id).await? else {
        return Ok(None);
    };
    let lease = now + chrono::Duration::seconds(current.timeout_seconds as i64) + LEASE_GRACE;
    let update = Entity::update_many()
        .col_expr(Column::Status, Expr::value(TaskStatus::Running.as_str()))
        .col_expr(Column::Attempt, Expr::col(Column::Attempt).add(1))
        .col_expr(Column::StartedAt, Expr::value(now))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .col_expr(Column::LeaseExpiresAt, Expr::value(lease))
        .col_expr(Column::AgentId, Expr::value(agent_id))
        .filter(Column::Id.eq(id))
        .filter(condition);
    // One round trip where the database returns the updated row (PostgreSQL, SQLite ≥ 3.35).
    if db.support_returning() {
        return Ok(update.exec_with_returning(db).await?.into_iter().next());
    }
    if update.exec(db).await?.rows_affected == 0 {
        return Ok(None);
    }
    find(db, id).await
}

/// `running → completed` with the result. Returns false when the task was not running (a
/// repeated completion, or the task was cancelled meanwhile): nothing changes then.
pub async fn complete(
    db: &impl ConnectionTrait,
    id: Uuid,
    holder: Holder,
    result: Value,
) -> Result<bool> {
    let now = Utc::now();
    let update = holder.restrict(Entity::update_many());
    let res = update
        .col_expr(Column::Status, Expr::value(TaskStatus::Completed.as_str()))
        .col_expr(Column::Result, Expr::value(result))
        .col_expr(Column::Progress, Expr::value(100))
        .col_expr(Column::Error, Expr::value(Option::<String>::None))
        .col_expr(
            Column::LeaseExpiresAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
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
    holder: Holder,
    error: &str,
    to: TaskStatus,
    retry_at: Option<DateTime<Utc>>,
) -> Result<bool> {
    let now = Utc::now();
    let finished = to.is_terminal().then_some(now);
    let update = holder.restrict(Entity::update_many());
    let res = update
        .col_expr(Column::Status, unless_cancel_requested(to))
        .col_expr(Column::Error, Expr::value(error))
        .col_expr(Column::RunAt, Expr::value(retry_at))
        .col_expr(
            Column::FinishedAt,
            finished_unless_cancel_requested(finished, now),
        )
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .col_expr(
            Column::EnqueuedAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            Column::LeaseExpiresAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
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
        enqueued_at: Set(None),
        lease_expires_at: Set(None),
        cancel_requested: Set(false),
        traceparent: Set(crate::otlp::current_traceparent()),
        ..Default::default()
    }
}

fn due_unenqueued_filter(q: sea_orm::Select<Entity>) -> sea_orm::Select<Entity> {
    q.filter(Column::EnqueuedAt.is_null())
        .filter(Column::Status.is_in([
            TaskStatus::Pending.as_str(),
            TaskStatus::Scheduled.as_str(),
            TaskStatus::Failed.as_str(),
        ]))
        .filter(Column::RunAt.is_null().or(Column::RunAt.lte(Utc::now())))
}

/// Queues that have due tasks whose job the dispatcher still owes (waiting, scheduled or
/// retrying tasks with no `run_at` in the future), leaving out `skip` (paused queues).
pub async fn queues_with_due(db: &impl ConnectionTrait, skip: &[String]) -> Result<Vec<String>> {
    #[derive(FromQueryResult)]
    struct Row {
        queue: String,
    }
    let mut q = due_unenqueued_filter(Entity::find());
    if !skip.is_empty() {
        q = q.filter(Column::Queue.is_not_in(skip.iter().cloned()));
    }
    let rows = q
        .select_only()
        .column(Column::Queue)
        .group_by(Column::Queue)
        .into_model::<Row>()
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|r| r.queue).collect())
}

/// The oldest due tasks of one queue whose job the dispatcher still owes.
pub async fn due_in_queue(db: &impl ConnectionTrait, queue: &str, limit: u64) -> Result<Vec<Uuid>> {
    #[derive(FromQueryResult)]
    struct Row {
        id: Uuid,
    }
    let rows = due_unenqueued_filter(Entity::find())
        .filter(Column::Queue.eq(queue))
        .select_only()
        .column(Column::Id)
        .order_by_asc(Column::Id)
        .limit(limit)
        .into_model::<Row>()
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// Records that these tasks' jobs were (or are about to be) pushed.
pub async fn mark_enqueued(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
    at: Option<DateTime<Utc>>,
) -> Result<()> {
    for chunk in ids.chunks(500) {
        Entity::update_many()
            .col_expr(Column::EnqueuedAt, Expr::value(at))
            .filter(Column::Id.is_in(chunk.iter().copied()))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Pushed but not yet started, per queue: what waits in the queue backend right now.
pub async fn outstanding_by_queue(
    db: &impl ConnectionTrait,
) -> Result<std::collections::HashMap<String, i64>> {
    #[derive(FromQueryResult)]
    struct Row {
        queue: String,
        n: i64,
    }
    let rows = Entity::find()
        .select_only()
        .column(Column::Queue)
        .column_as(Column::Id.count(), "n")
        .filter(Column::EnqueuedAt.is_not_null())
        .filter(Column::Status.is_in([
            TaskStatus::Pending.as_str(),
            TaskStatus::Scheduled.as_str(),
            TaskStatus::Failed.as_str(),
        ]))
        .group_by(Column::Queue)
        .into_model::<Row>()
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|r| (r.queue, r.n)).collect())
}

/// Pushed long ago and never started: the job may have been lost (a worker killed after
/// fetching it, a queue backend restarted without persistence, a crash between marking and
/// pushing). Owes the push again for at most `limit` of them, oldest first; a duplicate delivery
/// is harmless.
pub async fn forget_stale_pushes(
    db: &impl ConnectionTrait,
    queue: &str,
    pushed_before: DateTime<Utc>,
    limit: u64,
) -> Result<u64> {
    let stale: Vec<Uuid> = Entity::find()
        .filter(Column::Queue.eq(queue))
        .filter(Column::EnqueuedAt.lt(pushed_before))
        .filter(Column::Status.is_in([
            TaskStatus::Pending.as_str(),
            TaskStatus::Scheduled.as_str(),
            TaskStatus::Failed.as_str(),
        ]))
        .order_by_asc(Column::EnqueuedAt)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(|t| t.id)
        .collect();
    let mut owed = 0;
    for chunk in stale.chunks(500) {
        let res = Entity::update_many()
            .col_expr(
                Column::EnqueuedAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(Column::Id.is_in(chunk.iter().copied()))
            .filter(Column::EnqueuedAt.lt(pushed_before))
            .exec(db)
            .await?;
        owed += res.rows_affected;
    }
    Ok(owed)
}

/// Which running attempts count as lost.
#[derive(Debug, Clone, Copy)]
pub enum Lost {
    /// Leases past their expiry.
    ExpiredLeases,
    /// Every attempt held by this agent.
    HeldBy(Uuid),
    /// Every attempt held by an agent that is stale, offline or deregistered.
    HeldBySilentAgents,
}

/// Releases lost running attempts. Each becomes `failed` (due again after `backoff`) or `dead`
/// when it was the last attempt. Returns the rows that moved, with their new status.
pub async fn release_lost(
    db: &impl ConnectionTrait,
    which: Lost,
    reason: &str,
    backoff: impl Fn(i32) -> chrono::Duration,
) -> Result<Vec<(tasks::Model, TaskStatus)>> {
    use crate::entities::agents;
    let now = Utc::now();
    let mut q = Entity::find().filter(Column::Status.eq(TaskStatus::Running.as_str()));
    q = match which {
        Lost::HeldBy(a) => q.filter(Column::AgentId.eq(a)),
        Lost::ExpiredLeases => q.filter(Column::LeaseExpiresAt.lt(now)),
        Lost::HeldBySilentAgents => q.filter(
            Column::AgentId.in_subquery(
                sea_orm::sea_query::Query::select()
                    .column(agents::Column::Id)
                    .from(agents::Entity)
                    .cond_where(
                        Condition::any()
                            .add(agents::Column::Status.is_in(["stale", "offline"]))
                            .add(agents::Column::DeletedAt.is_not_null()),
                    )
                    .to_owned(),
            ),
        ),
    };
    let mut moved = Vec::new();
    for t in q.limit(1000).all(db).await? {
        let to = if t.attempt >= t.max_attempts {
            TaskStatus::Dead
        } else {
            TaskStatus::Failed
        };
        let retry_at = (to == TaskStatus::Failed).then(|| now + backoff(t.attempt));
        let res = Entity::update_many()
            .col_expr(Column::Status, unless_cancel_requested(to))
            .col_expr(Column::Error, Expr::value(reason))
            .col_expr(Column::RunAt, Expr::value(retry_at))
            .col_expr(
                Column::EnqueuedAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(
                Column::LeaseExpiresAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(
                Column::FinishedAt,
                finished_unless_cancel_requested(to.is_terminal().then_some(now), now),
            )
            .col_expr(Column::UpdatedAt, Expr::value(now))
            .filter(Column::Id.eq(t.id))
            .filter(Column::Status.eq(TaskStatus::Running.as_str()))
            .filter(Column::Attempt.eq(t.attempt))
            .exec(db)
            .await?;
        if res.rows_affected == 1 {
            moved.push((t, to));
        }
    }
    Ok(moved)
}

/// Tasks assigned to an agent that went silent (stale, offline, deregistered) before claiming
/// them go back to pending, to be routed again. No attempt was made, so none is counted.
pub async fn unassign_from_silent_agents(db: &impl ConnectionTrait) -> Result<Vec<Uuid>> {
    use crate::entities::agents;
    let silent = sea_orm::sea_query::Query::select()
        .column(agents::Column::Id)
        .from(agents::Entity)
        .cond_where(
            Condition::any()
                .add(agents::Column::Status.is_in(["stale", "offline"]))
                .add(agents::Column::DeletedAt.is_not_null()),
        )
        .to_owned();
    let held: Vec<Uuid> = Entity::find()
        .filter(Column::Status.eq(TaskStatus::Assigned.as_str()))
        .filter(Column::AgentId.in_subquery(silent))
        .limit(1000)
        .all(db)
        .await?
        .into_iter()
        .map(|t| t.id)
        .collect();
    let mut moved = Vec::new();
    for id in held {
        let res = Entity::update_many()
            .col_expr(Column::Status, Expr::value(TaskStatus::Pending.as_str()))
            .col_expr(Column::AgentId, Expr::value(Option::<Uuid>::None))
            .col_expr(
                Column::EnqueuedAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(Column::Id.eq(id))
            .filter(Column::Status.eq(TaskStatus::Assigned.as_str()))
            .exec(db)
            .await?;
        if res.rows_affected == 1 {
            moved.push(id);
        }
    }
    Ok(moved)
}

/// Cancels a task that is not running: pending, scheduled, assigned or failed → cancelled.
/// A running task gets `cancel_requested` instead. Returns the row after the change.
pub async fn cancel(db: &impl ConnectionTrait, id: Uuid) -> Result<tasks::Model> {
    // A task can move between waiting and running while we look; try again a few times rather
    // than drop the cancel.
    for _ in 0..3 {
        let now = Utc::now();
        let res = Entity::update_many()
            .col_expr(Column::Status, Expr::value(TaskStatus::Cancelled.as_str()))
            .col_expr(Column::FinishedAt, Expr::value(now))
            .col_expr(Column::UpdatedAt, Expr::value(now))
            .filter(Column::Id.eq(id))
            .filter(Column::Status.is_in([
                TaskStatus::Pending.as_str(),
                TaskStatus::Scheduled.as_str(),
                TaskStatus::Assigned.as_str(),
                TaskStatus::Failed.as_str(),
            ]))
            .exec(db)
            .await?;
        if res.rows_affected == 0 {
            let res = Entity::update_many()
                .col_expr(Column::CancelRequested, Expr::value(true))
                .col_expr(Column::UpdatedAt, Expr::value(now))
                .filter(Column::Id.eq(id))
                .filter(Column::Status.eq(TaskStatus::Running.as_str()))
                .exec(db)
                .await?;
            if res.rows_affected == 0 {
                let current = find(db, id).await?.ok_or(crate::Error::NotFound("task"))?;
                let status = TaskStatus::parse(&current.status).unwrap_or(TaskStatus::Pending);
                if !status.is_terminal() {
                    continue;
                }
            }
        }
        break;
    }
    find(db, id).await?.ok_or(crate::Error::NotFound("task"))
}

/// `running` with a cancel request → `cancelled` (the worker or agent acknowledged it).
pub async fn finish_cancel(db: &impl ConnectionTrait, id: Uuid, holder: Holder) -> Result<bool> {
    let now = Utc::now();
    let res = holder
        .restrict(Entity::update_many())
        .col_expr(Column::Status, Expr::value(TaskStatus::Cancelled.as_str()))
        .col_expr(Column::FinishedAt, Expr::value(now))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .col_expr(
            Column::LeaseExpiresAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(Column::Id.eq(id))
        .filter(Column::Status.eq(TaskStatus::Running.as_str()))
        .filter(Column::CancelRequested.eq(true))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Re-drives a dead or cancelled task: back to pending with a fresh attempt budget.
pub async fn retry(db: &impl ConnectionTrait, id: Uuid) -> Result<bool> {
    let now = Utc::now();
    let res = Entity::update_many()
        .col_expr(Column::Status, Expr::value(TaskStatus::Pending.as_str()))
        .col_expr(Column::Attempt, Expr::value(0))
        .col_expr(Column::Error, Expr::value(Option::<String>::None))
        .col_expr(Column::Result, Expr::value(Option::<Value>::None))
        .col_expr(Column::Progress, Expr::value(0))
        .col_expr(Column::AgentId, Expr::value(Option::<Uuid>::None))
        .col_expr(Column::RunAt, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(
            Column::EnqueuedAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(Column::CancelRequested, Expr::value(false))
        .col_expr(
            Column::FinishedAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.eq(id))
        .filter(Column::Status.is_in([TaskStatus::Dead.as_str(), TaskStatus::Cancelled.as_str()]))
        .filter(Column::PurgedAt.is_null())
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Records progress of a running attempt held by `agent` (any holder when `None`).
pub async fn progress(
    db: &impl ConnectionTrait,
    id: Uuid,
    agent: Option<Uuid>,
    progress: i32,
    message: Option<String>,
) -> Result<bool> {
    let mut q = Entity::update_many()
        .col_expr(Column::Progress, Expr::value(progress))
        .col_expr(Column::Message, Expr::value(message))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(id))
        .filter(Column::Status.eq(TaskStatus::Running.as_str()));
    if let Some(a) = agent {
        q = q.filter(Column::AgentId.eq(a));
    }
    Ok(q.exec(db).await?.rows_affected == 1)
}

/// Due, waiting tasks on these queues, oldest first (candidates for an agent's claim).
pub async fn claimable(
    db: &impl ConnectionTrait,
    queues: &[String],
    limit: u64,
) -> Result<Vec<tasks::Model>> {
    let now = Utc::now();
    Ok(Entity::find()
        .filter(Column::Queue.is_in(queues.iter().cloned()))
        .filter(Column::Status.is_in([
            TaskStatus::Pending.as_str(),
            TaskStatus::Scheduled.as_str(),
            TaskStatus::Failed.as_str(),
        ]))
        .filter(Column::RunAt.is_null().or(Column::RunAt.lte(now)))
        .filter(Column::CancelRequested.eq(false))
        .order_by_asc(Column::Id)
        .limit(limit)
        .all(db)
        .await?)
}

/// `pending → assigned` to one agent.
pub async fn assign(db: &impl ConnectionTrait, id: Uuid, agent: Uuid) -> Result<bool> {
    let now = Utc::now();
    let res = Entity::update_many()
        .col_expr(Column::Status, Expr::value(TaskStatus::Assigned.as_str()))
        .col_expr(Column::AgentId, Expr::value(agent))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.eq(id))
        .filter(Column::Status.is_in([
            TaskStatus::Pending.as_str(),
            TaskStatus::Failed.as_str(),
            TaskStatus::Scheduled.as_str(),
        ]))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// The oldest task assigned to `agent` that it has not started, if any.
pub async fn next_assigned(db: &impl ConnectionTrait, agent: Uuid) -> Result<Option<tasks::Model>> {
    Ok(Entity::find()
        .filter(Column::AgentId.eq(agent))
        .filter(Column::Status.eq(TaskStatus::Assigned.as_str()))
        .order_by_asc(Column::Id)
        .one(db)
        .await?)
}

/// `assigned → running` for the agent it is assigned to.
pub async fn start_assigned(
    db: &impl ConnectionTrait,
    id: Uuid,
    agent: Uuid,
) -> Result<Option<tasks::Model>> {
    let assigned = Condition::all()
        .add(Column::AgentId.eq(agent))
        .add(Column::Status.eq(TaskStatus::Assigned.as_str()))
        .add(Column::RunAt.is_null().or(Column::RunAt.lte(Utc::now())));
    start_where(db, id, Some(agent), assigned).await
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

/// Retention: clears the payload and result of tasks that finished before `cutoff`. Sealed
/// fields go with the payload. Returns how many tasks were purged.
pub async fn purge_finished_before(
    db: &impl ConnectionTrait,
    cutoff: DateTime<Utc>,
) -> Result<u64> {
    // In bounded batches: the first purge after an upgrade may find a great many rows, and
    // SQLite's single connection must not be held by one long statement.
    let mut total = 0;
    loop {
        let ids: Vec<Uuid> = purgeable(Entity::find().select_only().column(Column::Id), cutoff)
            .limit(PURGE_BATCH)
            .into_tuple()
            .all(db)
            .await?;
        if ids.is_empty() {
            return Ok(total);
        }
        total += purgeable(Entity::update_many(), cutoff)
            .col_expr(Column::Payload, Expr::value(serde_json::json!({})))
            .col_expr(
                Column::Result,
                Expr::value(Option::<serde_json::Value>::None),
            )
            .col_expr(Column::SealedKey, Expr::value(Option::<String>::None))
            .col_expr(Column::PurgedAt, Expr::value(Utc::now()))
            .filter(Column::Id.is_in(ids))
            .exec(db)
            .await?
            .rows_affected;
    }
}

const PURGE_BATCH: u64 = 1_000;

/// Finished before `cutoff` and not yet purged.
fn purgeable<Q: QueryFilter>(q: Q, cutoff: DateTime<Utc>) -> Q {
    q.filter(Column::Status.is_in([
        TaskStatus::Completed.as_str(),
        TaskStatus::Dead.as_str(),
        TaskStatus::Cancelled.as_str(),
    ]))
    .filter(Column::FinishedAt.lt(cutoff))
    .filter(Column::PurgedAt.is_null())
}

/// Key rotation: tasks whose sealed fields another key sealed, after `after`, in id order.
pub async fn sealed_by_other_keys(
    db: &impl ConnectionTrait,
    active: &str,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<tasks::Model>> {
    let mut q = Entity::find()
        .filter(Column::SealedKey.is_not_null())
        .filter(Column::SealedKey.ne(active));
    if let Some(a) = after {
        q = q.filter(Column::Id.gt(a));
    }
    Ok(q.order_by_asc(Column::Id).limit(limit).all(db).await?)
}

/// Stores a re-sealed payload, unless the row changed since it was read (purged, say).
pub async fn replace_sealed_payload(
    db: &impl ConnectionTrait,
    id: Uuid,
    old_key: &str,
    payload: Value,
    new_key: &str,
) -> Result<bool> {
    Ok(Entity::update_many()
        .col_expr(Column::Payload, Expr::value(payload))
        .col_expr(Column::SealedKey, Expr::value(new_key))
        .filter(Column::Id.eq(id))
        .filter(Column::SealedKey.eq(old_key))
        .exec(db)
        .await?
        .rows_affected
        == 1)
}

/// How many tasks each key sealed.
pub async fn sealed_counts(db: &impl ConnectionTrait) -> Result<Vec<(String, i64)>> {
    #[derive(FromQueryResult)]
    struct Row {
        sealed_key: String,
        n: i64,
    }
    Ok(Entity::find()
        .select_only()
        .column(Column::SealedKey)
        .column_as(Column::Id.count(), "n")
        .filter(Column::SealedKey.is_not_null())
        .group_by(Column::SealedKey)
        .into_model::<Row>()
        .all(db)
        .await?
        .into_iter()
        .map(|r| (r.sealed_key, r.n))
        .collect())
}
