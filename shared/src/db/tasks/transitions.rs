//! The conditional updates that move a task through its states. Each one names the states it
//! may leave, so a duplicate delivery, a repeated request or a race changes nothing twice.
//! Which transition to make is decided in [`crate::lifecycle`], the only caller outside tests.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use serde_json::Value;
use uuid::Uuid;

use super::{find, id_in, partial};
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
        .filter(id_in(ids.iter().copied()))
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
            .filter(id_in(group))
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
        let result = per_row(&group, |c| c.id, |c| c.result.clone(), Column::Result);
        let mut running = Condition::all().add(Column::Status.eq(TaskStatus::Running.as_str()));
        if let Some(a) = agent {
            running = running.add(Column::AgentId.eq(a));
        }
        if let Some(n) = attempt {
            running = running.add(Column::Attempt.eq(n));
        }
        let update = Entity::update_many()
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
            .filter(id_in(group.iter().map(|c| c.id)))
            .filter(unindexed(running));
        done.extend(updated_ids(db, update).await?);
    }
    Ok(done)
}

/// One value for every row of a batched update: a constant when all rows get the same (the
/// common case: no-op and echo handlers return one shape), else a `CASE` on the row's id.
fn per_row<T, V>(
    items: &[T],
    id: impl Fn(&T) -> Uuid,
    value: impl Fn(&T) -> V,
    otherwise: Column,
) -> Expr
where
    V: Into<sea_orm::Value> + PartialEq,
{
    let first = value(&items[0]);
    if items.iter().all(|i| value(i) == first) {
        return Expr::value(first);
    }
    let mut case = sea_orm::sea_query::CaseStatement::new();
    for i in items {
        case = case.case(Column::Id.eq(id(i)), Expr::value(value(i)));
    }
    case.finally(Expr::col(otherwise)).into()
}

/// The attempts `agent` finished (completed, failed or dead) since `since`, oldest first, at
/// most 10,000.
pub async fn finished_by(
    db: &impl ConnectionTrait,
    agent: Uuid,
    since: DateTime<Utc>,
) -> Result<Vec<tasks::Model>> {
    Ok(Entity::find()
        .filter(partial::condition(partial::AGENT_FINISHED))
        .filter(Column::AgentId.eq(agent))
        .filter(Column::FinishedAt.gte(since))
        .order_by_asc(Column::FinishedAt)
        .limit(10_000)
        .all(db)
        .await?)
}

/// The rows of these tasks (those that exist), in no particular order.
pub async fn find_many(db: &impl ConnectionTrait, ids: &[Uuid]) -> Result<Vec<tasks::Model>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(Entity::find()
        .filter(id_in(ids.iter().copied()))
        .all(db)
        .await?)
}

/// Whether `task`, as read, may be started now: the same test as [`start`]'s condition, in
/// memory, for a worker that runs a task before its start is committed.
pub fn startable_now(task: &tasks::Model, now: DateTime<Utc>) -> bool {
    let waiting =
        TaskStatus::parse(&task.status).is_some_and(|s| TaskStatus::STARTABLE.contains(&s));
    let lost = task.status == TaskStatus::Running.as_str()
        && task.lease_expires_at.is_some_and(|l| l < now);
    (waiting || lost) && !task.cancel_requested && task.run_at.is_none_or(|at| at <= now)
}

/// A delivery that ran to completion before its start was committed: both in one update.
#[derive(Debug, Clone)]
pub struct StartedAndCompleted {
    pub id: Uuid,
    pub agent: Option<Uuid>,
    /// The attempt count when the task was delivered (before this attempt).
    pub attempt_before: i32,
    pub started_at: DateTime<Utc>,
    pub result: Value,
}

/// `pending | scheduled | failed | running (lease expired) → completed` in one step, counting the
/// attempt: for each item, on the condition its start would have had, and that nobody started
/// the task since it was read (the attempt count is unchanged). Returns the ids that changed.
pub async fn start_and_complete_many(
    db: &impl ConnectionTrait,
    items: &[StartedAndCompleted],
) -> Result<Vec<Uuid>> {
    let mut groups: std::collections::BTreeMap<(Option<Uuid>, i32), Vec<&StartedAndCompleted>> =
        Default::default();
    for item in items {
        groups
            .entry((item.agent, item.attempt_before))
            .or_default()
            .push(item);
    }
    let now = Utc::now();
    let mut done = Vec::with_capacity(items.len());
    for ((agent, attempt_before), group) in groups {
        let result = per_row(&group, |c| c.id, |c| c.result.clone(), Column::Result);
        let started_at = per_row(&group, |c| c.id, |c| c.started_at, Column::StartedAt);
        let update = Entity::update_many()
            .col_expr(Column::Status, Expr::value(TaskStatus::Completed.as_str()))
            .col_expr(Column::Attempt, Expr::col(Column::Attempt).add(1))
            .col_expr(Column::AgentId, Expr::value(agent))
            .col_expr(Column::StartedAt, started_at)
            .col_expr(Column::Result, result)
            .col_expr(Column::Progress, Expr::value(100))
            .col_expr(Column::Error, Expr::value(Option::<String>::None))
            .col_expr(
                Column::LeaseExpiresAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(Column::FinishedAt, Expr::value(now))
            .col_expr(Column::UpdatedAt, Expr::value(now))
            .filter(id_in(group.iter().map(|c| c.id)))
            .filter(unindexed(
                startable(now).add(Column::Attempt.eq(attempt_before)),
            ));
        done.extend(updated_ids(db, update).await?);
    }
    Ok(done)
}

/// A delivery that a worker process logged but never settled (the process died): the attempt
/// it never recorded is counted, and the task is `dead` when that was its last. Only while the
/// task is still waiting at the attempt count it was delivered with (so a delivery whose start
/// or completion was committed changes nothing). Returns the row when it changed.
pub async fn count_lost_delivery(
    db: &impl ConnectionTrait,
    id: Uuid,
    attempt_before: i32,
    reason: &str,
) -> Result<Option<tasks::Model>> {
    let now = Utc::now();
    let exhausted = Expr::col(Column::Attempt)
        .add(1)
        .gte(Expr::col(Column::MaxAttempts));
    let update = Entity::update_many()
        .col_expr(Column::Attempt, Expr::col(Column::Attempt).add(1))
        .col_expr(
            Column::Status,
            Expr::case(exhausted.clone(), Expr::value(TaskStatus::Dead.as_str()))
                .finally(Expr::col(Column::Status))
                .into(),
        )
        .col_expr(
            Column::FinishedAt,
            Expr::case(exhausted, Expr::value(now))
                .finally(Expr::col(Column::FinishedAt))
                .into(),
        )
        .col_expr(Column::Error, Expr::value(reason))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.eq(id))
        .filter(Column::Attempt.eq(attempt_before))
        .filter(Column::Status.is_in(TaskStatus::STARTABLE.iter().map(|s| s.as_str())));
    updated_row(db, id, update).await
}

/// Runs an update and returns the ids of the rows it changed (not the whole rows: a completed
/// task's payload and result need not travel back).
async fn updated_ids(
    db: &impl ConnectionTrait,
    update: sea_orm::UpdateMany<Entity>,
) -> Result<Vec<Uuid>> {
    use sea_orm::QueryTrait;
    let mut statement = update.into_query();
    statement.returning_col(Column::Id);
    let rows = db.query_all(&statement).await?;
    rows.iter()
        .map(|r| r.try_get::<Uuid>("", "id").map_err(Into::into))
        .collect()
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

/// `running → failed` (will be retried) or `running → dead` (attempts exhausted), or
/// `cancelled` when a cancel was requested meanwhile. Returns the row after the change, or
/// `None` when the attempt was not running under `holder` (nothing changed).
pub async fn fail(
    db: &impl ConnectionTrait,
    id: Uuid,
    holder: Holder,
    error: &str,
    to: TaskStatus,
    retry_at: Option<DateTime<Utc>>,
) -> Result<Option<tasks::Model>> {
    let now = Utc::now();
    let finished = to.is_terminal().then_some(now);
    let update = holder
        .restrict(Entity::update_many())
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
        .filter(Column::Status.eq(TaskStatus::Running.as_str()));
    updated_row(db, id, update).await
}

/// Runs a conditional update of one row and returns the row after it, `None` when the
/// condition did not hold: one round trip where the database returns updated rows.
async fn updated_row(
    db: &impl ConnectionTrait,
    id: Uuid,
    update: sea_orm::UpdateMany<Entity>,
) -> Result<Option<tasks::Model>> {
    if db.support_returning() {
        return Ok(update.exec_with_returning(db).await?.into_iter().next());
    }
    if update.exec(db).await?.rows_affected == 0 {
        return Ok(None);
    }
    find(db, id).await
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

/// The agents whose tasks [`release_lost`] and [`unassign`] take back, as a condition on tasks.
fn held_by(which: Lost, now: DateTime<Utc>) -> Condition {
    use crate::entities::agents;
    match which {
        Lost::HeldBy(a) => Condition::all().add(Column::AgentId.eq(a)),
        Lost::ExpiredLeases => Condition::all().add(Column::LeaseExpiresAt.lt(now)),
        Lost::HeldBySilentAgents => Condition::all().add(
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
    }
}

/// Releases lost running attempts: each takes the status `decide` gives it (`failed` with a
/// retry time, or `dead`), or `cancelled` when a cancel was requested. Returns the rows that
/// moved, as they are after the change.
pub async fn release_lost(
    db: &impl ConnectionTrait,
    which: Lost,
    reason: &str,
    decide: impl Fn(&tasks::Model, DateTime<Utc>) -> (TaskStatus, Option<DateTime<Utc>>),
) -> Result<Vec<tasks::Model>> {
    let now = Utc::now();
    let lost = Entity::find()
        .filter(partial::condition(partial::RUNNING))
        .filter(held_by(which, now))
        .limit(1000)
        .all(db)
        .await?;
    let mut moved = Vec::new();
    for t in lost {
        let (to, retry_at) = decide(&t, now);
        // The attempt that was lost, whoever held it.
        let holder = Holder {
            agent: None,
            attempt: Some(t.attempt),
        };
        if let Some(after) = fail(db, t.id, holder, reason, to, retry_at).await? {
            moved.push(after);
        }
    }
    Ok(moved)
}

/// Tasks assigned to agents that will not claim them (`which`: one agent, or every silent one)
/// go back to pending, to be routed again. No attempt was made, so none is counted.
pub async fn unassign(db: &impl ConnectionTrait, which: Lost) -> Result<Vec<Uuid>> {
    let held: Vec<Uuid> = Entity::find()
        .filter(partial::condition(partial::HELD))
        .filter(Column::Status.eq(TaskStatus::Assigned.as_str()))
        .filter(held_by(which, Utc::now()))
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

/// Assigned tasks not claimed since `before` go back to their queues (`pending`, no agent, owed
/// a push). Returns each task as it was (with the agent it was assigned to).
pub async fn unassign_unclaimed(
    db: &impl ConnectionTrait,
    before: DateTime<Utc>,
) -> Result<Vec<tasks::Model>> {
    let stale: Vec<tasks::Model> = Entity::find()
        .filter(Column::Status.eq(TaskStatus::Assigned.as_str()))
        .filter(Column::UpdatedAt.lt(before))
        .limit(1000)
        .all(db)
        .await?;
    let mut moved = Vec::new();
    for task in stale {
        let res = Entity::update_many()
            .col_expr(Column::Status, Expr::value(TaskStatus::Pending.as_str()))
            .col_expr(Column::AgentId, Expr::value(Option::<Uuid>::None))
            .col_expr(
                Column::EnqueuedAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(Column::Id.eq(task.id))
            .filter(Column::Status.eq(TaskStatus::Assigned.as_str()))
            .filter(Column::UpdatedAt.eq(task.updated_at))
            .exec(db)
            .await?;
        if res.rows_affected == 1 {
            moved.push(task);
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
