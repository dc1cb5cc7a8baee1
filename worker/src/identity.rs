//! A worker process is an agent like any other: it registers as a `data_processor` with its
//! capabilities under a name unique to the process, heartbeats, and deregisters on a clean stop.
//! A killed process simply stops beating; the API's sweeper then marks it stale, then offline.

use std::time::Duration;

use chrono::Utc;
use mcp_shared::{
    bus::emit,
    crypto,
    db::agents,
    domain::{
        agent::{AgentStatus, AgentType, Capability},
        event::Event,
    },
    entities::agents::ActiveModel,
};
use sea_orm::Set;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::WorkerDeps;

/// Registers the process and returns its agent id.
pub async fn register(
    deps: &WorkerDeps,
    instance: &str,
    capabilities: &[String],
) -> mcp_shared::Result<Uuid> {
    let now = Utc::now();
    let caps: Vec<Capability> = capabilities
        .iter()
        .map(|c| Capability {
            name: c.clone(),
            version: Some(mcp_shared::VERSION.into()),
        })
        .collect();
    // The key is never used (workers reach the database directly) but the column is unique.
    let key_hash =
        crypto::agent_key_hash(deps.settings.secret_key.expose(), &crypto::new_agent_key());
    let agent = agents::insert(
        &deps.db.conn,
        ActiveModel {
            id: Set(Uuid::now_v7()),
            name: Set(format!("worker-{instance}")),
            agent_type: Set(AgentType::DataProcessor.as_str().into()),
            capabilities: Set(json!(caps)),
            status: Set(AgentStatus::Active.as_str().into()),
            max_concurrency: Set(
                (deps.settings.worker_concurrency * capabilities.len().max(1) * 4) as i32,
            ),
            current_load: Set(0),
            metadata: Set(json!({"pid": std::process::id(), "kind": "builtin_worker"})),
            configuration: Set(None),
            configuration_sealed: Set(None),
            key_hash: Set(key_hash),
            heartbeat_count: Set(0),
            registered_at: Set(now),
            last_seen: Set(now),
            updated_at: Set(now),
            deleted_at: Set(None),
            heartbeat_ms: Set(Some(deps.settings.worker_heartbeat.as_millis() as i32)),
            metadata_sealed: Set(None),
        },
    )
    .await?;
    emit(deps.bus.as_ref(), Event::agent_registered(&agent)).await;
    Ok(agent.id)
}

/// Beats until `stop`, then deregisters (the pool stops beating only after its in-flight work
/// has drained, so that work is not taken for lost). If the agent was deregistered by someone
/// else, it cancels `pool` so the pool stops taking work.
pub async fn heartbeat_until(
    deps: WorkerDeps,
    agent_id: Uuid,
    stop: CancellationToken,
    pool: CancellationToken,
) {
    let mut tick = tokio::time::interval(
        deps.settings
            .worker_heartbeat
            .max(Duration::from_millis(50)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => break,
        }
        match agents::heartbeat(&deps.db.conn, agent_id, None, None).await {
            Ok(beat) => {
                let now = AgentStatus::parse(&beat.agent.status).unwrap_or(AgentStatus::Active);
                if now != beat.previous {
                    emit(
                        deps.bus.as_ref(),
                        Event::agent_status_updated(&beat.agent, beat.previous),
                    )
                    .await;
                }
            }
            Err(mcp_shared::Error::NotFound(_)) => {
                // An operator deregistered this worker: stop taking work and let it drain.
                tracing::warn!(%agent_id, "this worker was deregistered; stopping");
                pool.cancel();
                return;
            }
            Err(e) => tracing::warn!(error = %e, "heartbeat not recorded"),
        }
    }
    if let Ok(true) = agents::deregister(&deps.db.conn, agent_id).await {
        emit(
            deps.bus.as_ref(),
            Event::agent_deregistered(agent_id, json!({"reason": "worker stopped"})),
        )
        .await;
    }
}
