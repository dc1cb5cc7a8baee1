//! Users: lookups and creation. Passwords arrive here already hashed.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};
use uuid::Uuid;

use crate::{Error, Result, auth::Role, entities::users};

pub async fn find_by_username(
    db: &impl sea_orm::ConnectionTrait,
    username: &str,
) -> Result<Option<users::Model>> {
    Ok(users::Entity::find()
        .filter(users::Column::Username.eq(username))
        .one(db)
        .await?)
}

pub async fn find(db: &impl sea_orm::ConnectionTrait, id: Uuid) -> Result<Option<users::Model>> {
    Ok(users::Entity::find_by_id(id).one(db).await?)
}

pub async fn count(db: &impl sea_orm::ConnectionTrait) -> Result<u64> {
    Ok(users::Entity::find().count(db).await?)
}

/// Inserts a user; a taken username is a [`Error::Conflict`].
pub async fn create(
    db: &impl sea_orm::ConnectionTrait,
    username: &str,
    password_hash: String,
    role: Role,
) -> Result<users::Model> {
    if find_by_username(db, username).await?.is_some() {
        return Err(Error::Conflict(format!("user {username:?} already exists")));
    }
    let model = users::ActiveModel {
        id: Set(Uuid::now_v7()),
        username: Set(username.to_string()),
        password_hash: Set(password_hash),
        role: Set(role.as_str().to_string()),
        disabled: Set(false),
        created_at: Set(Utc::now()),
    };
    match model.insert(db).await {
        Ok(m) => Ok(m),
        Err(e) if is_unique_violation(&e) => {
            Err(Error::Conflict(format!("user {username:?} already exists")))
        }
        Err(e) => Err(e.into()),
    }
}

/// True when the error is a unique-constraint violation (on either database).
pub fn is_unique_violation(err: &sea_orm::DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

/// Enabled users with the admin role.
pub async fn count_enabled_admins(db: &impl sea_orm::ConnectionTrait) -> Result<u64> {
    Ok(users::Entity::find()
        .filter(users::Column::Role.eq(Role::Admin.as_str()))
        .filter(users::Column::Disabled.eq(false))
        .count(db)
        .await?)
}

/// Sets `disabled` and the role of a user; `None` leaves that field as it is.
pub async fn update(
    db: &impl sea_orm::ConnectionTrait,
    user: users::Model,
    disabled: Option<bool>,
    role: Option<Role>,
) -> Result<users::Model> {
    let mut active: users::ActiveModel = user.into();
    if let Some(disabled) = disabled {
        active.disabled = Set(disabled);
    }
    if let Some(role) = role {
        active.role = Set(role.as_str().to_string());
    }
    Ok(active.update(db).await?)
}
