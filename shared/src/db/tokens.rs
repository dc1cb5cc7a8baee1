//! Refresh tokens: recorded when issued, consumed once.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, sea_query::Expr,
};
use uuid::Uuid;

use crate::{
    Result,
    entities::refresh_tokens::{self, Column, Entity},
};

pub async fn record(
    db: &impl ConnectionTrait,
    jti: Uuid,
    user_id: Uuid,
    family_id: Uuid,
    expires_at: DateTime<Utc>,
) -> Result<()> {
    refresh_tokens::ActiveModel {
        id: Set(jti),
        user_id: Set(user_id),
        family_id: Set(family_id),
        expires_at: Set(expires_at),
        used_at: Set(None),
        revoked: Set(false),
        created_at: Set(Utc::now()),
    }
    .insert(db)
    .await?;
    Ok(())
}

/// What happened when a refresh token was presented.
#[derive(Debug, PartialEq, Eq)]
pub enum Consume {
    /// First use: the caller issues a new pair in the same family.
    Fresh,
    /// Used before (a replay, possibly a stolen token): the whole family is now revoked.
    Reused,
    /// Unknown, revoked or expired.
    Invalid,
}

/// Marks the token used with a conditional update, so two concurrent uses cannot both win.
pub async fn consume(db: &impl ConnectionTrait, jti: Uuid) -> Result<Consume> {
    let now = Utc::now();
    let res = Entity::update_many()
        .col_expr(Column::UsedAt, Expr::value(now))
        .filter(Column::Id.eq(jti))
        .filter(Column::UsedAt.is_null())
        .filter(Column::Revoked.eq(false))
        .filter(Column::ExpiresAt.gt(now))
        .exec(db)
        .await?;
    if res.rows_affected == 1 {
        return Ok(Consume::Fresh);
    }
    match Entity::find_by_id(jti).one(db).await? {
        Some(row) if row.used_at.is_some() => {
            revoke_family(db, row.family_id).await?;
            Ok(Consume::Reused)
        }
        _ => Ok(Consume::Invalid),
    }
}

pub async fn revoke_family(db: &impl ConnectionTrait, family_id: Uuid) -> Result<()> {
    Entity::update_many()
        .col_expr(Column::Revoked, Expr::value(true))
        .filter(Column::FamilyId.eq(family_id))
        .exec(db)
        .await?;
    Ok(())
}
