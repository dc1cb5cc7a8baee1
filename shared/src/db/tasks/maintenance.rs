//! Retention (purging finished tasks' data) and key rotation (re-sealing sensitive fields).

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, sea_query::Expr,
};
use serde_json::Value;
use uuid::Uuid;

use super::partial;
use crate::{
    Result,
    entities::tasks::{self, Column, Entity},
};

/// Retention: clears the payload, result, error and message of tasks that finished before
/// `cutoff`. Sealed fields go with the payload. Returns how many tasks were purged.
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
            .col_expr(Column::Error, Expr::value(Option::<String>::None))
            .col_expr(Column::Message, Expr::value(Option::<String>::None))
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
    q.filter(partial::condition(partial::PURGEABLE))
        .filter(Column::FinishedAt.lt(cutoff))
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

/// Stores a re-sealed payload and result, unless the row changed since it was read: purged or
/// rotated (the sealed key), or given or cleared a result (the status changes with it).
pub async fn replace_sealed_payload(
    db: &impl ConnectionTrait,
    read: &tasks::Model,
    payload: Value,
    result: Option<Value>,
    new_key: &str,
) -> Result<bool> {
    Ok(Entity::update_many()
        .col_expr(Column::Payload, Expr::value(payload))
        .col_expr(Column::Result, Expr::value(result))
        .col_expr(Column::SealedKey, Expr::value(new_key))
        .filter(Column::Id.eq(read.id))
        .filter(Column::SealedKey.eq(read.sealed_key.clone()))
        .filter(Column::Status.eq(read.status.clone()))
        .exec(db)
        .await?
        .rows_affected
        == 1)
}

/// Key rotation: tasks whose result holds sealed values (a runner echoed a sensitive input,
/// and the sealed form was kept), after `after`, in id order.
pub async fn with_sealed_results(
    db: &impl ConnectionTrait,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<tasks::Model>> {
    let mut q = Entity::find()
        .filter(Column::SealedKey.is_not_null())
        .filter(Column::Result.is_not_null())
        .filter(Expr::cust(format!(
            "CAST(result AS TEXT) LIKE '%{}%'",
            crate::sealing::MARKER
        )));
    if let Some(a) = after {
        q = q.filter(Column::Id.gt(a));
    }
    Ok(q.order_by_asc(Column::Id).limit(limit).all(db).await?)
}

/// Stores a re-sealed result, unless the task's result was replaced or cleared since it was
/// read (the status changes whenever the result does).
pub async fn replace_sealed_result(
    db: &impl ConnectionTrait,
    read: &tasks::Model,
    result: Value,
) -> Result<bool> {
    Ok(Entity::update_many()
        .col_expr(Column::Result, Expr::value(result))
        .filter(Column::Id.eq(read.id))
        .filter(Column::Status.eq(read.status.clone()))
        .filter(Column::Result.is_not_null())
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
