//! What the dispatcher reads and marks: the queues with waiting tasks, due tasks whose job is
//! owed, jobs pushed but not started, and the due tasks an agent may claim.

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
    q.filter(partial::condition(partial::WAITING))
        .filter(Column::EnqueuedAt.is_null())
        .filter(Column::RunAt.is_null().or(Column::RunAt.lte(Utc::now())))
}

/// The queues that have waiting tasks, read as a loose scan of the waiting index: one probe per
/// queue, however many tasks wait.
pub async fn queues_with_waiting(db: &impl ConnectionTrait) -> Result<Vec<String>> {
    let sql = format!(
        "WITH RECURSIVE q(queue) AS ( \
             SELECT MIN(queue) FROM tasks WHERE {waiting} \
             UNION ALL \
             SELECT (SELECT MIN(queue) FROM tasks WHERE {waiting} AND queue > q.queue) \
             FROM q WHERE q.queue IS NOT NULL \
         ) SELECT queue FROM q WHERE queue IS NOT NULL",
        waiting = partial::WAITING
    );
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            sql,
        ))
        .await?;
    rows.iter()
        .map(|r| r.try_get::<String>("", "queue").map_err(Into::into))
        .collect()
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

/// How many waiting tasks of `queue` are marked as pushed: what its queue backend should hold.
/// A scan of the queue's waiting tasks, for the occasional check for lost pushes.
pub async fn pushed_in_queue(db: &impl ConnectionTrait, queue: &str) -> Result<u64> {
    use sea_orm::PaginatorTrait;
    Ok(Entity::find()
        .filter(partial::condition(partial::WAITING))
        .filter(Column::Queue.eq(queue))
        .filter(Column::EnqueuedAt.is_not_null())
        .count(db)
        .await?)
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

/// Owes again the push of every waiting task: the single node's embedded queue starts empty.
/// Returns how many were owed.
pub async fn forget_all_pushes(db: &impl ConnectionTrait) -> Result<u64> {
    Ok(Entity::update_many()
        .col_expr(
            Column::EnqueuedAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(partial::condition(partial::WAITING))
        .filter(Column::EnqueuedAt.is_not_null())
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
        .filter(partial::condition(partial::WAITING))
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

/// Due, waiting tasks on these queues, oldest first (candidates for an agent's claim).
pub async fn claimable(
    db: &impl ConnectionTrait,
    queues: &[String],
    limit: u64,
) -> Result<Vec<tasks::Model>> {
    let now = Utc::now();
    Ok(Entity::find()
        .filter(partial::condition(partial::WAITING))
        .filter(Column::Queue.is_in(queues.iter().cloned()))
        .filter(Column::RunAt.is_null().or(Column::RunAt.lte(now)))
        .filter(Column::CancelRequested.eq(false))
        .order_by_asc(Column::Id)
        .limit(limit)
        .all(db)
        .await?)
}
