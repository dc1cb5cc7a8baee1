//! Agents: registration (keys, sealed secrets, redacted metadata), the capability catalog,
//! liveness, deregistration.

use std::collections::BTreeSet;

use chrono::Utc;
use mcp_shared::{
    bus::emit,
    crypto,
    db::{agents, tasks::transitions::Lost},
    domain::{
        agent::{AgentStatus, AgentType, BUILTIN_CAPABILITIES, Capability},
        event::Event,
    },
    entities::{agents::Model, capabilities},
    pii,
};
use sea_orm::{EntityTrait, Set};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::{
    error::{ApiError, ErrorCode},
    services::tasks::valid_capability,
    state::AppState,
};

/// Configuration keys whose values are secrets: sealed at rest, never returned.
pub const SECRET_CONFIG_KEYS: &[&str] = &["api_keys", "credentials", "secrets"];
pub const MAX_CONCURRENCY_LIMIT: i64 = 10_000;

/// Every capability name an agent may declare: the built-ins plus operator-defined ones.
pub async fn catalog(state: &AppState) -> Result<BTreeSet<String>, ApiError> {
    let mut names: BTreeSet<String> = BUILTIN_CAPABILITIES.iter().map(|s| s.to_string()).collect();
    for c in capabilities::Entity::find()
        .all(&state.db.conn)
        .await
        .map_err(mcp_shared::Error::from)?
    {
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

pub struct Registration {
    pub name: String,
    pub agent_type: AgentType,
    pub capabilities: Vec<Capability>,
    pub max_concurrency: i64,
    pub metadata: Value,
    pub configuration: Option<Value>,
}

pub fn validate_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=128).contains(&name.chars().count())
        && name.trim() == name
        && name.chars().all(|c| !c.is_control());
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            "name",
            "name must be 1-128 printable characters without surrounding spaces",
        ))
    }
}

/// Registers an agent; returns the row and its key (the only time the key exists in clear).
pub async fn register(state: &AppState, reg: Registration) -> Result<(Model, String), ApiError> {
    validate_name(&reg.name)?;
    if !(1..=MAX_CONCURRENCY_LIMIT).contains(&reg.max_concurrency) {
        return Err(ApiError::invalid_field(
            "max_concurrency",
            format!("max_concurrency must be between 1 and {MAX_CONCURRENCY_LIMIT}"),
        ));
    }
    if reg.capabilities.is_empty() {
        return Err(ApiError::invalid_field(
            "capabilities",
            "declare at least one capability",
        ));
    }
    require_known(state, &reg.capabilities).await?;
    let mut metadata = reg.metadata;
    if !metadata.is_object() {
        return Err(ApiError::invalid_field(
            "metadata",
            "metadata must be a JSON object",
        ));
    }
    let redacted = pii::redact_json(&mut metadata);
    if !redacted.is_empty() {
        tracing::info!(
            count = redacted.len(),
            "personal data redacted from agent metadata"
        );
    }
    let (configuration, sealed) = split_configuration(state, reg.configuration)?;

    let key = crypto::new_agent_key();
    let now = Utc::now();
    let agent = agents::insert(
        &state.db.conn,
        mcp_shared::entities::agents::ActiveModel {
            id: Set(Uuid::now_v7()),
            name: Set(reg.name),
            agent_type: Set(reg.agent_type.as_str().into()),
            capabilities: Set(json!(reg.capabilities)),
            status: Set(AgentStatus::Active.as_str().into()),
            max_concurrency: Set(reg.max_concurrency as i32),
            current_load: Set(0),
            metadata: Set(metadata),
            configuration: Set(configuration),
            configuration_sealed: Set(sealed),
            key_hash: Set(crypto::agent_key_hash(
                state.settings.secret_key.expose(),
                &key,
            )),
            heartbeat_count: Set(0),
            registered_at: Set(now),
            last_seen: Set(now),
            updated_at: Set(now),
            deleted_at: Set(None),
        },
    )
    .await
    .map_err(|e| match e {
        mcp_shared::Error::Conflict(_) => ApiError::new(
            ErrorCode::AgentNameTaken,
            "an agent with this name is already registered",
        ),
        other => other.into(),
    })?;
    state.directory.upsert(agent.clone()).await;
    emit(state.bus.as_ref(), Event::agent_registered(&agent)).await;
    Ok((agent, key))
}

/// Splits configuration into the plain part and the sealed secret part.
fn split_configuration(
    state: &AppState,
    configuration: Option<Value>,
) -> Result<(Option<Value>, Option<String>), ApiError> {
    let Some(configuration) = configuration else {
        return Ok((None, None));
    };
    let Value::Object(mut plain) = configuration else {
        return Err(ApiError::invalid_field(
            "configuration",
            "configuration must be a JSON object",
        ));
    };
    let mut secret = Map::new();
    for key in SECRET_CONFIG_KEYS {
        if let Some(v) = plain.remove(*key) {
            secret.insert(key.to_string(), v);
        }
    }
    let sealed = if secret.is_empty() {
        None
    } else {
        Some(
            state
                .cipher
                .seal(Value::Object(secret).to_string().as_bytes())
                .map_err(ApiError::internal)?,
        )
    };
    Ok((Some(Value::Object(plain)), sealed))
}

/// Deregisters: the key stops working, held tasks go back to their queues. Returns how many
/// tasks the agent held.
pub async fn deregister(state: &AppState, id: Uuid) -> Result<u64, ApiError> {
    // Counted first: once the agent is gone, the dispatcher may release its tasks before we do.
    let released = mcp_shared::db::tasks::count_held_by(&state.db.conn, id).await?;
    if !agents::deregister(&state.db.conn, id).await? {
        return Err(ApiError::not_found("agent"));
    }
    state.lifecycle.release_agent(id).await?;
    if released > 0 {
        // Back to their queues: the dispatcher pushes them.
        state.dispatcher.wake();
    }
    if let Some(row) = mcp_shared::entities::agents::Entity::find_by_id(id)
        .one(&state.db.conn)
        .await
        .map_err(mcp_shared::Error::from)?
    {
        state.directory.upsert(row).await;
    }
    emit(
        state.bus.as_ref(),
        Event::agent_deregistered(id, json!({"released_tasks": released})),
    )
    .await;
    Ok(released)
}

/// Marks silent agents stale, then offline, and reports each transition once.
pub async fn sweep(state: &AppState) -> mcp_shared::Result<usize> {
    let now = Utc::now();
    let stale_before =
        now - chrono::Duration::from_std(state.settings.agent_stale_after()).unwrap_or_default();
    let offline_before =
        now - chrono::Duration::from_std(state.settings.agent_offline_after()).unwrap_or_default();
    let moved = agents::sweep_silent(&state.db.conn, stale_before, offline_before).await?;
    for t in &moved {
        tracing::info!(agent = %t.agent.name, from = %t.from, to = %t.to, "agent went silent");
        if t.to == AgentStatus::Stale {
            // Its running attempts are lost: count them and let the dispatcher route them again.
            let lost = state
                .lifecycle
                .release_lost(
                    Lost::HeldBy(t.agent.id),
                    "attempt lost: its worker stopped sending heartbeats",
                )
                .await?;
            if lost > 0 {
                state.dispatcher.wake();
            }
        }
        state.directory.upsert(t.agent.clone()).await;
        emit(
            state.bus.as_ref(),
            Event::agent_status_updated(&t.agent, t.from),
        )
        .await;
    }
    Ok(moved.len())
}
