//! Users: the rules for names and passwords, creating a user (by an admin, or `mcp-api admin
//! create`), changing one (disable, role, sign-out everywhere), and the development admin
//! created on a first start.

use mcp_shared::{
    auth::Role,
    crypto,
    db::{Database, tokens, users},
    entities::users::Model,
};

use uuid::Uuid;

use crate::{
    error::{ApiError, ErrorCode},
    state::AppState,
};

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

pub fn validate_role(role: Role) -> Result<(), ApiError> {
    if role == Role::Agent {
        // An agent is a registered agent with a key, never a login: a user with this role would
        // hold an agent's reach without being one.
        return Err(ApiError::invalid_field(
            "role",
            "a user's role is admin, operator or viewer; agents register with POST /agents/register",
        ));
    }
    Ok(())
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
    validate_role(role)?;
    let hash = tokio::task::spawn_blocking(move || crypto::hash_password(&password))
        .await
        .map_err(ApiError::internal)??;
    Ok(users::create(&db.conn, username, hash, role).await?)
}

/// What an admin asks to change about a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Change {
    pub disabled: Option<bool>,
    pub role: Option<Role>,
    /// Ends every login of the user even when nothing else changes.
    pub revoke_tokens: bool,
}

/// What [`update`] did.
pub struct Updated {
    pub user: Model,
    pub before: Model,
    /// Logins (token families) whose tokens were revoked; 0 when none were.
    pub logins_revoked: usize,
    pub tokens_revoked: bool,
}

/// Disables or enables a user, changes their role, or signs them out everywhere.
///
/// Disabling, a role change and `revoke_tokens` all revoke every token the user holds, on every
/// replica: an access token carries its role, so a token issued before a role change would
/// otherwise keep the old reach until it expired. The user logs in again to get one with the
/// new role. The last enabled admin can be neither disabled nor demoted (409).
pub async fn update(state: &AppState, id: Uuid, change: Change) -> Result<Updated, ApiError> {
    if let Some(role) = change.role {
        validate_role(role)?;
    }
    let before = users::find(&state.db.conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    let was_admin = before.role == Role::Admin.as_str() && !before.disabled;
    let stays_admin = change.disabled != Some(true) && change.role.is_none_or(|r| r == Role::Admin);
    if was_admin && !stays_admin && users::count_enabled_admins(&state.db.conn).await? <= 1 {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "this is the last enabled admin; make another user admin first",
        ));
    }
    let role_changed = change.role.is_some_and(|r| r.as_str() != before.role);
    let revoke = change.revoke_tokens || change.disabled == Some(true) || role_changed;
    let user = users::update(&state.db.conn, before.clone(), change.disabled, change.role).await?;
    let mut logins_revoked = 0;
    if revoke {
        // After the row changed: a refresh from here on sees the new state, and a login that
        // was being issued meanwhile is still within the window revoked below.
        let families = tokens::revoke_user(&state.db.conn, id, state.jwt.access_ttl).await?;
        for family in &families {
            state
                .guard
                .revoke_family(*family, state.jwt.access_ttl)
                .await?;
        }
        logins_revoked = families.len();
    }
    Ok(Updated {
        user,
        before,
        logins_revoked,
        tokens_revoked: revoke,
    })
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
