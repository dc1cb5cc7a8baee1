//! Users: the rules for names and passwords, creating a user (by an admin, or `mcp-api admin
//! create`), and the development admin created on a first start.

use mcp_shared::{
    auth::Role,
    crypto,
    db::{Database, users},
    entities::users::Model,
};

use crate::error::ApiError;

pub const MIN_PASSWORD_LEN: usize = 12;
const MAX_PASSWORD_LEN: usize = 1024;

pub fn validate_username(username: &str) -> Result<(), ApiError> {
    let ok = (3..=64).contains(&username.len())
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            "username",
            "username must be 3-64 characters of letters, digits, '.', '_' or '-'",
        ))
    }
}

pub fn validate_password(password: &str) -> Result<(), ApiError> {
    if (MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&password.chars().count()) {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            "password",
            format!("password must be {MIN_PASSWORD_LEN}-{MAX_PASSWORD_LEN} characters"),
        ))
    }
}

/// Creates a user: the name and password are checked, the password hashed off the async
/// threads. 409 when the name is taken.
pub async fn create(
    db: &Database,
    username: &str,
    password: String,
    role: Role,
) -> Result<Model, ApiError> {
    validate_username(username)?;
    validate_password(&password)?;
    if role == Role::Agent {
        // An agent is a registered agent with a key, never a login: a user with this role would
        // hold an agent's reach without being one.
        return Err(ApiError::invalid_field(
            "role",
            "a user's role is admin, operator or viewer; agents register with POST /agents/register",
        ));
    }
    let hash = tokio::task::spawn_blocking(move || crypto::hash_password(&password))
        .await
        .map_err(ApiError::internal)??;
    Ok(users::create(&db.conn, username, hash, role).await?)
}

/// In development, when no user exists, creates `admin` with a generated password and prints it
/// once. Production never does this: use `mcp-api admin create`.
pub async fn bootstrap_admin(db: &Database, production: bool) -> anyhow::Result<()> {
    if production || users::count(&db.conn).await? > 0 {
        return Ok(());
    }
    let password = crypto::random_token(18);
    let to_hash = password.clone();
    let hash = tokio::task::spawn_blocking(move || crypto::hash_password(&to_hash)).await??;
    match users::create(&db.conn, "admin", hash, Role::Admin).await {
        Ok(_) => {
            // Printed, not logged: logs must never carry secrets.
            eprintln!(
                "\n  development mode: created user `admin` with password `{password}`\n  (shown once; create real users with `mcp-api admin create`)\n"
            );
        }
        // Another replica created it first.
        Err(mcp_shared::Error::Conflict(_)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
