//! The capability catalog: the built-ins plus operator-defined names, and the capabilities an
//! agent declares, checked against it.

use std::collections::BTreeSet;

use chrono::Utc;
use mcp_shared::{
    domain::agent::{BUILTIN_CAPABILITIES, Capability, valid_capability},
    entities::capabilities::{self, Model},
};
use sea_orm::{ActiveModelTrait, EntityTrait, Set};
use serde_json::{Value, json};

use crate::{
    error::{ApiError, ErrorCode},
    state::AppState,
};

/// The operator-defined capabilities (the built-ins are [`BUILTIN_CAPABILITIES`]).
pub async fn defined(state: &AppState) -> Result<Vec<Model>, ApiError> {
    Ok(capabilities::Entity::find()
        .all(&state.db.conn)
        .await
        .map_err(mcp_shared::Error::from)?)
}

/// Adds an operator-defined capability; 409 when the name is taken.
pub async fn create(
    state: &AppState,
    name: String,
    description: Option<String>,
    created_by: String,
) -> Result<Model, ApiError> {
    if !valid_capability(&name) {
        return Err(ApiError::invalid_field(
            "name",
            "name must be 1-64 lowercase letters, digits or '_'",
        ));
    }
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 1000)
    {
        return Err(ApiError::invalid_field(
            "description",
            "description is at most 1000 characters",
        ));
    }
    let exists = BUILTIN_CAPABILITIES.contains(&name.as_str())
        || capabilities::Entity::find_by_id(name.clone())
            .one(&state.db.conn)
            .await
            .map_err(mcp_shared::Error::from)?
            .is_some();
    if exists {
        return Err(ApiError::new(
            ErrorCode::CapabilityExists,
            format!("capability {name:?} already exists"),
        ));
    }
    capabilities::ActiveModel {
        name: Set(name),
        description: Set(description),
        created_by: Set(Some(created_by)),
        created_at: Set(Utc::now()),
    }
    .insert(&state.db.conn)
    .await
    .map_err(|e| {
        if mcp_shared::db::users::is_unique_violation(&e) {
            ApiError::new(ErrorCode::CapabilityExists, "capability already exists")
        } else {
            mcp_shared::Error::from(e).into()
        }
    })
}

/// Every capability name an agent may declare: the built-ins plus operator-defined ones.
pub async fn catalog(state: &AppState) -> Result<BTreeSet<String>, ApiError> {
    let mut names: BTreeSet<String> = BUILTIN_CAPABILITIES.iter().map(|s| s.to_string()).collect();
    for c in defined(state).await? {
        names.insert(c.name);
    }
    Ok(names)
}

/// Parses `[string | {name, version?}]`, naming the first bad entry by index.
pub fn parse_capabilities(raw: &[Value], field: &str) -> Result<Vec<Capability>, ApiError> {
    let mut out: Vec<Capability> = Vec::with_capacity(raw.len());
    for (i, item) in raw.iter().enumerate() {
        let cap = match item {
            Value::String(name) => Capability {
                name: name.clone(),
                version: None,
            },
            Value::Object(_) => {
                serde_json::from_value::<Capability>(item.clone()).map_err(|_| {
                    ApiError::invalid_field(
                        &format!("{field}[{i}]"),
                        "a capability is a name or {\"name\": …, \"version\": …}",
                    )
                })?
            }
            _ => {
                return Err(ApiError::invalid_field(
                    &format!("{field}[{i}]"),
                    "a capability is a name or {\"name\": …, \"version\": …}",
                ));
            }
        };
        if !valid_capability(&cap.name) {
            return Err(ApiError::invalid_field(
                &format!("{field}[{i}]"),
                format!(
                    "capability {:?} is not a valid name (lowercase letters, digits, '_')",
                    cap.name
                ),
            ));
        }
        if !out.iter().any(|c| c.name == cap.name) {
            out.push(cap);
        }
    }
    Ok(out)
}

/// Fails with 422 naming the first capability not in the catalog.
pub async fn require_known(state: &AppState, caps: &[Capability]) -> Result<(), ApiError> {
    let known = catalog(state).await?;
    if let Some(unknown) = caps.iter().find(|c| !known.contains(&c.name)) {
        return Err(ApiError::invalid_field(
            "capabilities",
            format!(
                "unknown capability {:?}; known: {} (operators add more with POST /api/v1/capabilities)",
                unknown.name,
                known.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        )
        .with_details(json!({"field": "capabilities", "capability": unknown.name})));
    }
    Ok(())
}
