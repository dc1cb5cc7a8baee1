//! Retention: on a schedule, clears finished tasks' payloads and results and the data of agents
//! long gone (`AGENT_DATA_RETENTION_DAYS`), and purges audit records past their own retention
//! (`MCP_AUDIT_RETENTION_DAYS`), anchoring the chain where it was cut.
//!
//! Safe on every replica at once: the data purges are conditional updates that skip what is
//! already purged, and the audit purge serialises with appends on the chain's lock.

use chrono::Utc;
use mcp_shared::{
    db::{agents, audit, tasks},
    shutdown::spawn_every,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// What one pass purged.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub tasks: u64,
    pub agents: u64,
    pub audit_records: u64,
}

pub async fn run_once(state: &AppState) -> mcp_shared::Result<Purged> {
    let now = Utc::now();
    let mut purged = Purged::default();
    if let Some(keep) = state.settings.agent_data_retention {
        let cutoff = now - keep;
        purged.tasks = tasks::maintenance::purge_finished_before(&state.db.conn, cutoff).await?;
        purged.agents = agents::purge_stale_before(&state.db.conn, cutoff).await?;
    }
    if let Some(keep) = state.settings.audit_retention {
        purged.audit_records = audit::purge_before(&state.db, &state.chain, now - keep).await?;
    }
    if purged != Purged::default() {
        tracing::info!(
            tasks = purged.tasks,
            agents = purged.agents,
            audit_records = purged.audit_records,
            "retention purge"
        );
        state
            .audit
            .record(audit::AuditEntry {
                actor: "system:retention".into(),
                action: "retention.purge".into(),
                target: None,
                outcome: "success".into(),
                request_id: None,
                details: Some(json!({
                    "tasks": purged.tasks,
                    "agents": purged.agents,
                    "audit_records": purged.audit_records,
                })),
            })
            .await;
    }
    Ok(purged)
}

pub fn spawn(state: AppState, shutdown: CancellationToken) {
    if state.settings.agent_data_retention.is_none() && state.settings.audit_retention.is_none() {
        return;
    }
    let period = state.settings.retention_interval;
    spawn_every(period, shutdown, move || {
        let state = state.clone();
        async move {
            if let Err(e) = run_once(&state).await {
                tracing::warn!(error = %e, "retention purge failed; retrying next interval");
            }
        }
    });
}
