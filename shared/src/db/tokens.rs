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

/// Revokes every refresh token of a user and returns the logins (families) that may still
/// have live access tokens: those with a refresh token issued within `access_ttl`, since an
/// access token is only ever issued together with one.
pub async fn revoke_user(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    access_ttl: std::time::Duration,
) -> Result<Vec<Uuid>> {
    use sea_orm::QuerySelect;
    // A minute of slack for clocks and for a login that was being issued as this ran.
    let since = Utc::now()
        - chrono::Duration::from_std(access_ttl).unwrap_or_else(|_| chrono::Duration::days(1))
        - chrono::Duration::minutes(1);
    let families: Vec<Uuid> = Entity::find()
        .select_only()
        .column(Column::FamilyId)
        .distinct()
        .filter(Column::UserId.eq(user_id))
        .filter(Column::CreatedAt.gt(since))
        .into_tuple()
        .all(db)
        .await?;
    Entity::update_many()
        .col_expr(Column::Revoked, Expr::value(true))
        .filter(Column::UserId.eq(user_id))
        .filter(Column::Revoked.eq(false))
        .exec(db)
        .await?;
    Ok(families)
}
