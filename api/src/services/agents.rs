//! Agents: registration (keys, sealed secrets, redacted metadata), reading through the agent
//! directory, heartbeats and liveness, capabilities, reserved slots, deregistration.

use std::time::Duration;

use chrono::{DateTime, Utc};
pub use mcp_shared::db::agents::TaskStats;
use mcp_shared::{
    bus::emit,
    crypto,
    db::{agents, tasks::transitions::Lost},
    domain::{
        agent::{AgentStatus, AgentType, Capability},
        event::Event,
    },
    entities::agents::Model,
    pii,
    shutdown::spawn_every,
};
use sea_orm::{EntityTrait, Set};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    directory::{AgentEntry, Query},
    error::{ApiError, ErrorCode},
    services::capabilities,
    state::AppState,
    views::{AgentAnomaly, AgentHealth, AgentView, CapabilityView},
};

/// Configuration keys whose values are secrets: sealed at rest, never returned.
pub const SECRET_CONFIG_KEYS: &[&str] = &["api_keys", "credentials", "secrets"];
pub const MAX_CONCURRENCY_LIMIT: i64 = 10_000;

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

/// The agent as the directory knows it, or 404.
pub async fn find(state: &AppState, id: Uuid) -> Result<AgentEntry, ApiError> {
    if let Some(e) = state.directory.get(id).await {
        return Ok(e);
    }
    // Registered on another replica since our last sync: read through.
    let row = agents::find(&state.db.conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    state.directory.upsert(row).await;
    state
        .directory
        .get(id)
        .await
        .ok_or_else(|| ApiError::not_found("agent"))
}

/// Agents matching `query`, healthy first, then least loaded.
pub async fn discover(state: &AppState, query: &Query) -> Vec<AgentEntry> {
    state.directory.discover(query).await
}

/// Registers an agent; returns it and its key (the only time the key exists in clear).
pub async fn register(
    state: &AppState,
    reg: Registration,
) -> Result<(AgentEntry, String), ApiError> {
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
    capabilities::require_known(state, &reg.capabilities).await?;
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
    // With ENCRYPT_AGENT_DATA, what an operator says about the agent is sealed at rest too.
    let metadata_sealed = if state.settings.encrypt_agent_data {
        let sealed = state
            .cipher
            .seal(metadata.to_string().as_bytes())
            .map_err(ApiError::internal)?;
        metadata = json!({});
        Some(sealed)
    } else {
        None
    };

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
            heartbeat_ms: Set(None),
            metadata_sealed: Set(metadata_sealed),
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
    Ok((find(state, agent.id).await?, key))
}

/// Splits configuration into the plain part and the sealed secret part; with
/// `ENCRYPT_AGENT_DATA`, all of it is sealed.
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
    if state.settings.encrypt_agent_data {
        secret = std::mem::take(&mut plain);
    } else {
        for key in SECRET_CONFIG_KEYS {
            if let Some(v) = plain.remove(*key) {
                secret.insert(key.to_string(), v);
            }
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
    let plain = (!state.settings.encrypt_agent_data).then_some(Value::Object(plain));
    Ok((plain, sealed))
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
    let s = &state.settings;
    let moved = agents::sweep_silent(
        &state.db.conn,
        s.agent_heartbeat,
        s.agent_stale_after_missed,
        s.agent_offline_after_missed,
    )
    .await?;
    for t in &moved {
        tracing::info!(agent = %t.agent.name, from = %t.from, to = %t.to, "agent went silent");
        // What it finished in its last moments may not have been reported yet; looked at again
        // when it goes offline, in case the replica that saw it go stale died meanwhile.
        let since = t.agent.last_seen - chrono::Duration::seconds(2);
        if let Err(e) = state.lifecycle.republish_outcomes(t.agent.id, since).await {
            tracing::error!(agent = %t.agent.name, error = %e, "could not check the outcomes a silent agent reported");
        }
        if t.to == AgentStatus::Stale {
            // Its running attempts are lost: count them and let the dispatcher route them again.
            // One agent's failure must not leave the others in this sweep unhandled: their
            // status has already moved, so no later sweep would take them up again. (The
            // dispatcher's pass over attempts held by silent agents takes back what is left.)
            match state
                .lifecycle
                .release_lost(
                    Lost::HeldBy(t.agent.id),
                    "attempt lost: its worker stopped sending heartbeats",
                )
                .await
            {
                Ok(0) => {}
                Ok(_) => state.dispatcher.wake(),
                Err(e) => {
                    tracing::error!(agent = %t.agent.name, error = %e, "could not release a silent agent's attempts");
                }
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

/// Records a heartbeat, with the load and status the agent reports; a change of status is an
/// `agent.status_updated` event. Returns the agent's row and status.
pub async fn heartbeat(
    state: &AppState,
    id: Uuid,
    current_load: Option<i32>,
    status: Option<AgentStatus>,
) -> Result<(Model, AgentStatus), ApiError> {
    if let Some(load) = current_load
        && load < 0
    {
        return Err(ApiError::invalid_field(
            "current_load",
            "current_load cannot be negative",
        ));
    }
    if matches!(status, Some(AgentStatus::Stale | AgentStatus::Offline)) {
        return Err(ApiError::invalid_field(
            "status",
            "an agent may report active, busy or paused",
        ));
    }
    let beat = agents::heartbeat(&state.db.conn, id, current_load, status).await?;
    let now = AgentStatus::parse(&beat.agent.status).unwrap_or(AgentStatus::Active);
    state.directory.upsert(beat.agent.clone()).await;
    if now != beat.previous {
        emit(
            state.bus.as_ref(),
            Event::agent_status_updated(&beat.agent, beat.previous),
        )
        .await;
    }
    Ok((beat.agent, now))
}

/// Replaces the agent's capabilities with `incoming`, or (`add`) adds them, replacing any of the
/// same name. Each must be in the catalog, and an agent keeps at least one.
pub async fn set_capabilities(
    state: &AppState,
    id: Uuid,
    incoming: Vec<Capability>,
    add: bool,
    narrow_only: bool,
) -> Result<AgentEntry, ApiError> {
    capabilities::require_known(state, &incoming).await?;
    let current = find(state, id).await?;
    // A capability routes tasks (and their sealed fields) to the agent: only an operator may
    // grant one. The agent itself may drop what it holds.
    if narrow_only && let Some(c) = incoming.iter().find(|c| !current.capabilities.contains(c)) {
        return Err(ApiError::forbidden(format!(
            "an agent may only narrow its own capabilities; {:?} needs the permission \
             agent.register (an operator or admin)",
            c.name
        )));
    }
    let mut caps: Vec<Capability> = if add {
        current.capabilities.clone()
    } else {
        Vec::new()
    };
    for c in incoming {
        caps.retain(|x| x.name != c.name);
        caps.push(c);
    }
    if caps.is_empty() {
        return Err(ApiError::invalid_field(
            "capabilities",
            "an agent needs at least one capability",
        ));
    }
    agents::set_capabilities(&state.db.conn, id, json!(caps)).await?;
    let row = agents::find(&state.db.conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    state.directory.upsert(row).await;
    find(state, id).await
}

/// Each of the agent's capabilities, and whether the catalog knows it.
pub async fn check_capabilities(
    state: &AppState,
    id: Uuid,
) -> Result<Vec<(String, bool)>, ApiError> {
    let e = find(state, id).await?;
    let known = capabilities::catalog(state).await?;
    Ok(e.capabilities
        .iter()
        .map(|c| (c.name.clone(), known.contains(&c.name)))
        .collect())
}

/// The agent with the statistics of the tasks it ran.
pub async fn task_stats(state: &AppState, id: Uuid) -> Result<(AgentEntry, TaskStats), ApiError> {
    let e = find(state, id).await?;
    let stats = agents::task_stats(&state.db.conn, id).await?;
    Ok((e, stats))
}

/// A reservation of slots on an agent.
pub struct Allocation {
    pub id: Uuid,
    pub ttl_seconds: i64,
    pub expires_at: DateTime<Utc>,
}

/// Reserves `slots` on the agent for `ttl_seconds` (default 60); they count as load until then.
pub async fn allocate(
    state: &AppState,
    id: Uuid,
    slots: i64,
    ttl_seconds: Option<i64>,
    purpose: Option<String>,
) -> Result<Allocation, ApiError> {
    let e = find(state, id).await?;
    if !(1..=e.model.max_concurrency as i64).contains(&slots) {
        return Err(ApiError::invalid_field(
            "slots",
            format!(
                "slots must be between 1 and the agent's max_concurrency ({})",
                e.model.max_concurrency
            ),
        ));
    }
    let ttl = ttl_seconds.unwrap_or(60);
    if !(1..=86_400).contains(&ttl) {
        return Err(ApiError::invalid_field(
            "ttl_seconds",
            "ttl_seconds must be between 1 and 86400",
        ));
    }
    if purpose.as_ref().is_some_and(|p| p.chars().count() > 256) {
        return Err(ApiError::invalid_field(
            "purpose",
            "purpose is at most 256 characters",
        ));
    }
    let expires_at = Utc::now() + chrono::Duration::seconds(ttl);
    let a = agents::allocate(&state.db.conn, id, slots as i32, purpose, expires_at).await?;
    state.directory.sync(&state.db).await?;
    Ok(Allocation {
        id: a.id,
        ttl_seconds: ttl,
        expires_at: a.expires_at,
    })
}

/// Runs [`sweep`] until `shutdown`. Safe on every replica at once: each transition is a
/// conditional update that only one sweeper wins.
pub fn spawn_sweeper(state: AppState, shutdown: CancellationToken) {
    // Often enough to notice the fastest beating agents (worker processes) falling silent.
    let period = (state
        .settings
        .agent_heartbeat
        .min(state.settings.worker_heartbeat)
        / 2)
    .clamp(Duration::from_millis(100), Duration::from_secs(5));
    spawn_every(period, shutdown, move || {
        let state = state.clone();
        async move {
            if let Err(e) = sweep(&state).await {
                tracing::warn!(error = %e, "agent sweep failed");
            }
        }
    });
}

impl AgentView {
    /// The agent as readers see it: sealed metadata opened (or, if no configured key opens it,
    /// shown as `{"$sealed": "<key id>"}`).
    pub fn of(e: &AgentEntry, ring: &mcp_shared::crypto::KeyRing) -> Self {
        let metadata = match &e.model.metadata_sealed {
            None => e.model.metadata.clone(),
            Some(sealed) => ring
                .open(sealed)
                .ok()
                .and_then(|plain| serde_json::from_slice(&plain).ok())
                .unwrap_or_else(|| {
                    json!({ mcp_shared::sealing::MARKER: crypto::sealed_key_id(sealed).unwrap_or("?") })
                }),
        };
        Self {
            id: e.model.id,
            name: e.model.name.clone(),
            agent_type: e.agent_type,
            capabilities: e
                .capabilities
                .iter()
                .map(|c| CapabilityView {
                    name: c.name.clone(),
                    version: c.version.clone(),
                })
                .collect(),
            status: e.status,
            max_concurrency: e.model.max_concurrency,
            current_load: e.load(),
            metadata,
            registered_at: e.model.registered_at,
            last_seen: e.model.last_seen,
        }
    }
}

/// Completions before the window that make an agent's latency baseline.
const BASELINE_COMPLETIONS: u64 = 200;
/// Most finished tasks of one agent read for its window.
const WINDOW_RUNS: u64 = 10_000;

/// An agent's health: heartbeat freshness and availability since registration, headroom, and
/// how it performs over the health window (see [`crate::observability::agent_health`]).
pub async fn health(state: &AppState, id: Uuid) -> Result<AgentHealth, ApiError> {
    use crate::observability::agent_health as perf;
    let e = find(state, id).await?;
    let now = Utc::now();
    let s = &state.settings;
    let interval_ms = s.agent_heartbeat.as_millis().max(1) as f64;
    let age_ms = (now - e.model.last_seen).num_milliseconds().max(0);
    let lifetime_ms = (now - e.model.registered_at).num_milliseconds().max(0) as f64;
    let expected = (lifetime_ms / interval_ms).floor().max(1.0);
    let availability = ((e.model.heartbeat_count as f64 + 1.0) / (expected + 1.0)).min(1.0) * 100.0;
    let stale_ms = s.agent_stale_after().as_millis().max(1) as f64;
    let freshness = (1.0 - age_ms as f64 / stale_ms).clamp(0.0, 1.0);
    let headroom = (1.0 - e.load_ratio()).clamp(0.0, 1.0);
    let overall = match e.status {
        AgentStatus::Offline => 0.0,
        AgentStatus::Stale => 0.2 * freshness,
        _ => 0.7 * freshness + 0.3 * headroom,
    };

    let since = now
        - chrono::Duration::from_std(s.health_window)
            .unwrap_or_else(|_| chrono::Duration::hours(1));
    let runs = agents::runs_since(&state.db.conn, Some(id), since, WINDOW_RUNS).await?;
    let window = perf::Window::of(&runs);
    let baseline =
        agents::baseline_durations(&state.db.conn, id, since, BASELINE_COMPLETIONS).await?;
    let latency_ratio = perf::latency_ratio(&window, &baseline);
    // An agent's own beat interval when it announced one (worker processes), else the setting.
    let beat_ms = e
        .model
        .heartbeat_ms
        .map_or(interval_ms, |ms| f64::from(ms.max(1)));
    let regularity = if e.status == AgentStatus::Offline {
        0.0
    } else {
        perf::heartbeat_regularity(
            e.model.heartbeat_count,
            lifetime_ms,
            beat_ms,
            age_ms as f64,
            stale_ms,
        )
    };
    let score = perf::performance(window.success_rate(), latency_ratio, regularity);
    let anomalies = perf::anomalies(
        s,
        state.observability.alerts.status_changes(id),
        &window,
        latency_ratio,
    );
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    Ok(AgentHealth {
        agent_id: e.model.id,
        status: e.status,
        overall_health: round(overall),
        availability_percentage: (availability * 10.0).round() / 10.0,
        last_seen: e.model.last_seen,
        last_health_check: now,
        heartbeat_age_ms: age_ms,
        performance_score: round(score),
        success_rate: round(window.success_rate()),
        latency_ratio: latency_ratio.map(round),
        heartbeat_regularity: round(regularity),
        efficiency: window.efficiency().map(round),
        tasks_in_window: window.finished as u64,
        window_ms: s.health_window.as_millis() as i64,
        anomalies: anomalies
            .into_iter()
            .map(|a| AgentAnomaly {
                kind: a.kind.to_string(),
                message: a.message,
                value: round(a.value),
                threshold: a.threshold,
            })
            .collect(),
    })
}
