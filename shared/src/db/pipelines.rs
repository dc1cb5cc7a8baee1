//! Datasets, pipeline executions and stage runs.
//!
//! A stage is a set of tasks, one per shard, each with a stage-run row. Moving an execution to
//! its next stage is one transaction: a conditional update of `current_stage` (so exactly one of
//! the shards finishing last wins) and the next stage's tasks and stage runs. The tasks are
//! inserted without a queue push; the dispatcher pushes them like any other owed job.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, Set, TransactionTrait, sea_query::Expr,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    Result,
    domain::{
        pipeline::{PipelineStatus, Stage},
        task::{Priority, TaskStatus, TaskType},
    },
    entities::{datasets, pipeline_executions as executions, stage_runs, tasks},
    queue::QueueName,
};

/// Attempts per shard before the execution fails. A worker killed mid-shard costs one.
pub const SHARD_MAX_ATTEMPTS: i32 = 5;

pub async fn insert_dataset(db: &impl ConnectionTrait, row: datasets::Model) -> Result<()> {
    datasets::ActiveModel::from(row).insert(db).await?;
    Ok(())
}

pub async fn find_dataset(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<datasets::Model>> {
    Ok(datasets::Entity::find_by_id(id).one(db).await?)
}

pub async fn find(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<executions::Model>> {
    Ok(executions::Entity::find_by_id(id).one(db).await?)
}

/// The execution a client created under `key`, if any.
pub async fn find_by_idempotency_key(
    db: &impl ConnectionTrait,
    key: &str,
) -> Result<Option<executions::Model>> {
    Ok(executions::Entity::find()
        .filter(executions::Column::IdempotencyKey.eq(key))
        .one(db)
        .await?)
}

/// The executions clients created under any of `keys`.
pub async fn find_by_idempotency_keys(
    db: &impl ConnectionTrait,
    keys: &[String],
) -> Result<Vec<executions::Model>> {
    Ok(executions::Entity::find()
        .filter(executions::Column::IdempotencyKey.is_in(keys.iter().cloned()))
        .all(db)
        .await?)
}

/// Idempotency keys with this prefix belong to pipeline shards; user tasks may not use it.
pub const SHARD_KEY_PREFIX: &str = "pipeline:";

/// The idempotency key of one shard's task: enqueuing a stage twice finds the same tasks.
pub fn shard_task_key(execution: Uuid, stage: Stage, shard: u32) -> String {
    format!("{SHARD_KEY_PREFIX}{execution}:{stage}:{shard}")
}

/// Stores a new execution and its ingestion task in one transaction.
pub async fn create(
    db: &DatabaseConnection,
    execution: executions::Model,
    timeout_seconds: i32,
) -> Result<executions::Model> {
    let txn = db.begin().await?;
    let model = executions::ActiveModel::from(execution)
        .insert(&txn)
        .await?;
    enqueue_stage(&txn, &model, Stage::Ingestion, 1, timeout_seconds).await?;
    txn.commit().await?;
    Ok(model)
}

/// Inserts one task and one stage run per shard of `stage`; rows that already exist are kept.
async fn enqueue_stage(
    db: &impl ConnectionTrait,
    execution: &executions::Model,
    stage: Stage,
    shards: u32,
    timeout_seconds: i32,
) -> Result<()> {
    let now = Utc::now();
    let priority = Priority::parse(&execution.priority).unwrap_or(Priority::Medium);
    let queue = QueueName::new(stage.capability(), priority).to_string();
    let mut task_rows = Vec::with_capacity(shards as usize);
    let mut run_rows = Vec::with_capacity(shards as usize);
    for shard in 0..shards {
        let task_id = Uuid::now_v7();
        let mut row = super::tasks::new_row(task_id, now);
        row.task_type = Set(TaskType::PipelineProcessing.as_str().into());
        row.priority = Set(priority.as_str().into());
        row.queue = Set(queue.clone());
        row.required_capabilities = Set(json!([stage.capability()]));
        row.payload = Set(json!({
            "execution_id": execution.id,
            "stage": stage,
            "shard": shard,
        }));
        row.max_attempts = Set(SHARD_MAX_ATTEMPTS);
        row.timeout_seconds = Set(timeout_seconds);
        row.idempotency_key = Set(Some(shard_task_key(execution.id, stage, shard)));
        row.request_hash = Set(None);
        row.run_at = Set(None);
        row.execution_id = Set(Some(execution.id));
        row.stage = Set(Some(stage.as_str().into()));
        row.created_by = Set(execution.created_by.clone());
        task_rows.push(row);
        run_rows.push(stage_runs::ActiveModel {
            id: Set(Uuid::now_v7()),
            execution_id: Set(execution.id),
            stage: Set(stage.as_str().into()),
            shard: Set(shard as i32),
            status: Set(TaskStatus::Pending.as_str().into()),
            task_id: Set(Some(task_id)),
            agent_id: Set(None),
            records_in: Set(0),
            records_out: Set(0),
            progress: Set(0),
            started_at: Set(None),
            finished_at: Set(None),
            stats: Set(None),
            error: Set(None),
        });
    }
    // The unique index on keys leaves out tasks without one, so the conflict target says so.
    let mut on_key = sea_orm::sea_query::OnConflict::column(tasks::Column::IdempotencyKey);
    on_key
        .target_and_where(Expr::cust("idempotency_key IS NOT NULL"))
        .do_nothing_on([tasks::Column::Id]);
    for chunk in task_rows.chunks(200) {
        tasks::Entity::insert_many(chunk.to_vec())
            .on_conflict(on_key.clone())
            .try_insert()
            .exec(db)
            .await?;
    }
    for chunk in run_rows.chunks(200) {
        stage_runs::Entity::insert_many(chunk.to_vec())
            .on_conflict_do_nothing_on([
                stage_runs::Column::ExecutionId,
                stage_runs::Column::Stage,
                stage_runs::Column::Shard,
            ])
            .exec(db)
            .await?;
    }
    Ok(())
}

/// `pending → running`, the first time any shard starts.
pub async fn mark_running(db: &impl ConnectionTrait, id: Uuid) -> Result<bool> {
    let res = executions::Entity::update_many()
        .col_expr(
            executions::Column::Status,
            Expr::value(PipelineStatus::Running.as_str()),
        )
        .col_expr(executions::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(executions::Column::Id.eq(id))
        .filter(executions::Column::Status.eq(PipelineStatus::Pending.as_str()))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

fn run_filter(
    update: sea_orm::UpdateMany<stage_runs::Entity>,
    execution: Uuid,
    stage: Stage,
    shard: u32,
) -> sea_orm::UpdateMany<stage_runs::Entity> {
    update
        .filter(stage_runs::Column::ExecutionId.eq(execution))
        .filter(stage_runs::Column::Stage.eq(stage.as_str()))
        .filter(stage_runs::Column::Shard.eq(shard as i32))
}

/// A shard's attempt began on `agent`. A re-run after a lost attempt starts from zero.
pub async fn start_shard(
    db: &impl ConnectionTrait,
    execution: Uuid,
    stage: Stage,
    shard: u32,
    agent: Option<Uuid>,
) -> Result<()> {
    run_filter(stage_runs::Entity::update_many(), execution, stage, shard)
        .col_expr(
            stage_runs::Column::Status,
            Expr::value(TaskStatus::Running.as_str()),
        )
        .col_expr(stage_runs::Column::AgentId, Expr::value(agent))
        .col_expr(stage_runs::Column::StartedAt, Expr::value(Utc::now()))
        .col_expr(stage_runs::Column::Progress, Expr::value(0))
        .filter(stage_runs::Column::Status.ne(TaskStatus::Completed.as_str()))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn shard_progress(
    db: &impl ConnectionTrait,
    execution: Uuid,
    stage: Stage,
    shard: u32,
    records_in: u64,
    progress: i32,
) -> Result<()> {
    run_filter(stage_runs::Entity::update_many(), execution, stage, shard)
        .col_expr(
            stage_runs::Column::RecordsIn,
            Expr::value(records_in as i64),
        )
        .col_expr(stage_runs::Column::Progress, Expr::value(progress))
        .filter(stage_runs::Column::Status.eq(TaskStatus::Running.as_str()))
        .exec(db)
        .await?;
    Ok(())
}

/// What one finished shard reports.
#[derive(Debug, Clone)]
pub struct ShardOutcome {
    pub records_in: u64,
    pub records_out: u64,
    pub stats: Value,
}

/// Records a finished shard. Re-running a shard overwrites its own row and nothing else.
pub async fn complete_shard(
    db: &impl ConnectionTrait,
    execution: Uuid,
    stage: Stage,
    shard: u32,
    outcome: &ShardOutcome,
) -> Result<()> {
    run_filter(stage_runs::Entity::update_many(), execution, stage, shard)
        .col_expr(
            stage_runs::Column::Status,
            Expr::value(TaskStatus::Completed.as_str()),
        )
        .col_expr(
            stage_runs::Column::RecordsIn,
            Expr::value(outcome.records_in as i64),
        )
        .col_expr(
            stage_runs::Column::RecordsOut,
            Expr::value(outcome.records_out as i64),
        )
        .col_expr(stage_runs::Column::Progress, Expr::value(100))
        .col_expr(
            stage_runs::Column::Stats,
            Expr::value(outcome.stats.clone()),
        )
        .col_expr(stage_runs::Column::FinishedAt, Expr::value(Utc::now()))
        // A shard that was declared dead stays dead: its execution has already failed.
        .filter(stage_runs::Column::Status.ne(TaskStatus::Dead.as_str()))
        .exec(db)
        .await?;
    Ok(())
}

/// Marks a shard failed (its task is dead), with the reason.
pub async fn fail_shard(
    db: &impl ConnectionTrait,
    execution: Uuid,
    stage: Stage,
    shard: u32,
    error: &str,
) -> Result<()> {
    run_filter(stage_runs::Entity::update_many(), execution, stage, shard)
        .col_expr(
            stage_runs::Column::Status,
            Expr::value(TaskStatus::Dead.as_str()),
        )
        .col_expr(stage_runs::Column::Error, Expr::value(error))
        .col_expr(stage_runs::Column::FinishedAt, Expr::value(Utc::now()))
        .exec(db)
        .await?;
    Ok(())
}

/// Whether every shard of `stage` has completed.
pub async fn stage_done(db: &impl ConnectionTrait, execution: Uuid, stage: Stage) -> Result<bool> {
    let open = stage_runs::Entity::find()
        .filter(stage_runs::Column::ExecutionId.eq(execution))
        .filter(stage_runs::Column::Stage.eq(stage.as_str()))
        .filter(stage_runs::Column::Status.ne(TaskStatus::Completed.as_str()))
        .count(db)
        .await?;
    Ok(open == 0)
}

/// Moves a running execution from `from` to the next stage and enqueues that stage's `shards`
/// tasks, atomically. Returns false when another shard already did it, or the execution is no
/// longer running (cancelled or failed meanwhile).
pub async fn advance(
    db: &DatabaseConnection,
    execution: Uuid,
    from: Stage,
    to: Stage,
    shards: u32,
    timeout_seconds: i32,
) -> Result<bool> {
    let txn = db.begin().await?;
    let mut update = executions::Entity::update_many()
        .col_expr(executions::Column::CurrentStage, Expr::value(to.as_str()))
        .col_expr(executions::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(executions::Column::Id.eq(execution))
        .filter(executions::Column::CurrentStage.eq(from.as_str()))
        .filter(executions::Column::Status.eq(PipelineStatus::Running.as_str()));
    if from == Stage::Ingestion {
        update = update.col_expr(executions::Column::Shards, Expr::value(shards as i32));
    }
    if update.exec(&txn).await?.rows_affected == 0 {
        return Ok(false);
    }
    let model = find(&txn, execution)
        .await?
        .ok_or(crate::Error::NotFound("execution"))?;
    enqueue_stage(&txn, &model, to, shards, timeout_seconds).await?;
    txn.commit().await?;
    Ok(true)
}

/// `running → completed` with the results and metrics. False when it was not running.
pub async fn finish(
    db: &impl ConnectionTrait,
    execution: Uuid,
    results: Value,
    metrics: Value,
) -> Result<bool> {
    let now = Utc::now();
    let res = executions::Entity::update_many()
        .col_expr(
            executions::Column::Status,
            Expr::value(PipelineStatus::Completed.as_str()),
        )
        .col_expr(executions::Column::Results, Expr::value(results))
        .col_expr(executions::Column::Metrics, Expr::value(metrics))
        .col_expr(executions::Column::FinishedAt, Expr::value(now))
        .col_expr(executions::Column::UpdatedAt, Expr::value(now))
        .filter(executions::Column::Id.eq(execution))
        .filter(executions::Column::Status.eq(PipelineStatus::Running.as_str()))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Ends an unfinished execution as `failed` (with the reason) or `cancelled`. False when it had
/// already ended.
pub async fn end(
    db: &impl ConnectionTrait,
    execution: Uuid,
    status: PipelineStatus,
    error: Option<&str>,
) -> Result<bool> {
    let now = Utc::now();
    let res = executions::Entity::update_many()
        .col_expr(executions::Column::Status, Expr::value(status.as_str()))
        .col_expr(executions::Column::Error, Expr::value(error))
        .col_expr(executions::Column::FinishedAt, Expr::value(now))
        .col_expr(executions::Column::UpdatedAt, Expr::value(now))
        .filter(executions::Column::Id.eq(execution))
        .filter(executions::Column::Status.is_in([
            PipelineStatus::Pending.as_str(),
            PipelineStatus::Running.as_str(),
        ]))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Every stage run of an execution, in stage and shard order.
pub async fn stage_runs(
    db: &impl ConnectionTrait,
    execution: Uuid,
) -> Result<Vec<stage_runs::Model>> {
    let mut runs = stage_runs::Entity::find()
        .filter(stage_runs::Column::ExecutionId.eq(execution))
        .order_by_asc(stage_runs::Column::Shard)
        .all(db)
        .await?;
    runs.sort_by_key(|r| {
        (
            Stage::parse(&r.stage)
                .map(Stage::index)
                .unwrap_or(usize::MAX),
            r.shard,
        )
    });
    Ok(runs)
}

/// The execution's tasks that have not finished.
pub async fn open_tasks(db: &impl ConnectionTrait, execution: Uuid) -> Result<Vec<tasks::Model>> {
    Ok(tasks::Entity::find()
        .filter(tasks::Column::ExecutionId.eq(execution))
        .filter(tasks::Column::Status.is_not_in([
            TaskStatus::Completed.as_str(),
            TaskStatus::Dead.as_str(),
            TaskStatus::Cancelled.as_str(),
        ]))
        .all(db)
        .await?)
}

/// A new execution row.
pub fn new_execution(
    id: Uuid,
    priority: Priority,
    dataset_id: Uuid,
    options: Value,
    created_by: &str,
    now: DateTime<Utc>,
) -> executions::Model {
    executions::Model {
        id,
        status: PipelineStatus::Pending.as_str().into(),
        priority: priority.as_str().into(),
        dataset_id: Some(dataset_id),
        options,
        results: None,
        metrics: None,
        error: None,
        created_by: Some(created_by.into()),
        created_at: now,
        updated_at: now,
        finished_at: None,
        current_stage: Some(Stage::Ingestion.as_str().into()),
        shards: 0,
        idempotency_key: None,
        request_hash: None,
        purged_at: None,
    }
}

/// Retention, executions: up to `limit` that finished (completed, failed or cancelled) before
/// `cutoff` and are not purged yet.
pub async fn purgeable_executions(
    db: &impl ConnectionTrait,
    cutoff: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Uuid>> {
    use sea_orm::{QuerySelect, sea_query::Expr};
    Ok(executions::Entity::find()
        .select_only()
        .column(executions::Column::Id)
        .filter(Expr::cust("purged_at IS NULL"))
        .filter(executions::Column::FinishedAt.lt(cutoff))
        .filter(executions::Column::Status.is_in([
            PipelineStatus::Completed.as_str(),
            PipelineStatus::Failed.as_str(),
            PipelineStatus::Cancelled.as_str(),
        ]))
        .order_by_asc(executions::Column::FinishedAt)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?)
}

/// Retention, executions: clears the results and error of `id` and its stage runs' errors, and
/// marks it purged (its artifacts are removed first, by the caller). False when it already was.
pub async fn mark_execution_purged(db: &impl ConnectionTrait, id: Uuid) -> Result<bool> {
    let now = Utc::now();
    stage_runs::Entity::update_many()
        .col_expr(
            stage_runs::Column::Error,
            Expr::value(Option::<String>::None),
        )
        .filter(stage_runs::Column::ExecutionId.eq(id))
        .exec(db)
        .await?;
    let res = executions::Entity::update_many()
        .col_expr(
            executions::Column::Results,
            Expr::value(Option::<Value>::None),
        )
        .col_expr(
            executions::Column::Error,
            Expr::value(Option::<String>::None),
        )
        .col_expr(executions::Column::PurgedAt, Expr::value(now))
        .filter(executions::Column::Id.eq(id))
        .filter(Expr::cust("purged_at IS NULL"))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Retention, datasets: up to `limit` uploaded before `cutoff`, not purged yet, and not the input
/// of an execution still pending or running.
pub async fn purgeable_datasets(
    db: &impl ConnectionTrait,
    cutoff: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<datasets::Model>> {
    use sea_orm::QuerySelect;
    Ok(datasets::Entity::find()
        .filter(Expr::cust("purged_at IS NULL"))
        .filter(datasets::Column::CreatedAt.lt(cutoff))
        .filter(Expr::cust(
            "NOT EXISTS (SELECT 1 FROM pipeline_executions e WHERE e.dataset_id = datasets.id \
             AND e.status IN ('pending', 'running'))",
        ))
        .order_by_asc(datasets::Column::CreatedAt)
        .limit(limit)
        .all(db)
        .await?)
}

/// Retention, datasets: marks `id` purged (its artifact is removed first, by the caller).
pub async fn mark_dataset_purged(db: &impl ConnectionTrait, id: Uuid) -> Result<bool> {
    let res = datasets::Entity::update_many()
        .col_expr(datasets::Column::PurgedAt, Expr::value(Utc::now()))
        .filter(datasets::Column::Id.eq(id))
        .filter(Expr::cust("purged_at IS NULL"))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}
