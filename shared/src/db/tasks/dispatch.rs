//! What the dispatcher reads and marks: due tasks whose job is owed, jobs pushed but not started,
//! and the due tasks an agent may claim.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use super::{id_in, partial};
use crate::{
    Result,
    entities::tasks::{self, Column, Entity},
};

/// Due (no `run_at` in the future) and owed a push.
fn due_unenqueued_filter(q: sea_orm::Select<Entity>) -> sea_orm::Select<Entity> {
    q.filter(partial::condition(partial::OWED))
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
            .filter(id_in(chunk.iter().copied()))
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
        .filter(partial::condition(partial::PUSHED))
        .group_by(Column::Queue)
        .into_model::<Row>()
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|r| (r.queue, r.n)).collect())
}

/// Owes again the push of every waiting task: the single node's embedded queue starts empty.
/// Returns how many were owed.
pub async fn forget_all_pushes(db: &impl ConnectionTrait) -> Result<u64> {
    Ok(Entity::update_many()
        .col_expr(
            Column::EnqueuedAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(partial::condition(partial::PUSHED))
        .exec(db)
        .await?
        .rows_affected)
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
        .select_only()
        .column(Column::Id)
        .filter(partial::condition(partial::PUSHED))
        .filter(Column::Queue.eq(queue))
        .filter(Column::EnqueuedAt.lt(pushed_before))
        .order_by_asc(Column::EnqueuedAt)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    let mut owed = 0;
    for chunk in stale.chunks(500) {
        let res = Entity::update_many()
            .col_expr(
                Column::EnqueuedAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(id_in(chunk.iter().copied()))
            .filter(Column::EnqueuedAt.lt(pushed_before))
            .exec(db)
            .await?;
        owed += res.rows_affected;
    }
    Ok(owed)
}

/// Due, waiting tasks on these queues, oldest first (candidates for an agent's claim): those
/// owed a push and those pushed, each read by its own index, merged.
pub async fn claimable(
    db: &impl ConnectionTrait,
    queues: &[String],
    limit: u64,
) -> Result<Vec<tasks::Model>> {
    let now = Utc::now();
    let due = |which: &'static str| {
        Entity::find()
            .filter(partial::condition(which))
            .filter(Column::Queue.is_in(queues.iter().cloned()))
            .filter(Column::RunAt.is_null().or(Column::RunAt.lte(now)))
            .filter(Column::CancelRequested.eq(false))
            .limit(limit)
    };
    let mut found = due(partial::OWED).order_by_asc(Column::Id).all(db).await?;
    found.extend(
        due(partial::PUSHED)
            .order_by_asc(Column::EnqueuedAt)
            .all(db)
            .await?,
    );
    found.sort_by_key(|t| t.id);
    found.truncate(limit as usize);
    Ok(found)
}
