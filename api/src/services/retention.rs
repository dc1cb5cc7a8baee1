//! Retention: on a schedule, past `AGENT_DATA_RETENTION_DAYS`, clears finished tasks' payloads,
//! results, errors and messages, the data of agents long gone, uploaded datasets (their bytes in
//! the artifact store), finished pipeline executions' stage outputs, exports, reports, results
//! and errors, and schedules' occurrence history; and purges audit records past their own
//! retention (`MCP_AUDIT_RETENTION_DAYS`), anchoring the chain where it was cut. Each pass that removed
//! anything is itself audited, with the counts.
//!
//! Safe on every replica at once: the data purges are conditional updates that skip what is
//! already purged (deleting an artifact twice is harmless), and the audit purge serialises with
//! appends on the chain's lock.

use chrono::Utc;
use mcp_shared::{
    db::{agents, audit, pipelines, tasks},
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
    pub datasets: u64,
    pub executions: u64,
    /// Artifacts deleted: datasets' bytes, stage outputs, exports and reports.
    pub artifacts: u64,
    pub audit_records: u64,
    /// Schedules' settled occurrences.
    pub schedule_runs: u64,
}

const BATCH: u64 = 200;

/// Datasets and executions past `cutoff`: their artifacts first, then the mark, so a pass that
/// stops half-way is finished by the next one.
async fn purge_pipeline_data(
    state: &AppState,
    cutoff: chrono::DateTime<Utc>,
    purged: &mut Purged,
) -> mcp_shared::Result<()> {
    let store = &state.artifacts;
    loop {
        let ids = pipelines::purgeable_executions(&state.db.conn, cutoff, BATCH).await?;
        if ids.is_empty() {
            break;
        }
        for id in ids {
            for key in store.list(&format!("executions/{id}/")).await? {
                store.delete(&key).await?;
                purged.artifacts += 1;
            }
            if pipelines::mark_execution_purged(&state.db.conn, id).await? {
                purged.executions += 1;
            }
        }
    }
    loop {
        let rows = pipelines::purgeable_datasets(&state.db.conn, cutoff, BATCH).await?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            store.delete(&row.artifact_key).await?;
            purged.artifacts += 1;
            if pipelines::mark_dataset_purged(&state.db.conn, row.id).await? {
                purged.datasets += 1;
            }
        }
    }
    Ok(())
}

pub async fn run_once(state: &AppState) -> mcp_shared::Result<Purged> {
    let now = Utc::now();
    let mut purged = Purged::default();
    if let Some(keep) = state.settings.agent_data_retention {
        let cutoff = now - keep;
        purged.tasks = tasks::maintenance::purge_finished_before(&state.db.conn, cutoff).await?;
        purged.agents = agents::purge_stale_before(&state.db.conn, cutoff).await?;
        purge_pipeline_data(state, cutoff, &mut purged).await?;
        purged.schedule_runs =
            mcp_shared::db::schedules::purge_runs_before(&state.db.conn, cutoff).await?;
    }
    if let Some(keep) = state.settings.audit_retention {
        purged.audit_records = audit::purge_before(&state.db, &state.chain, now - keep).await?;
    }
    if purged != Purged::default() {
        tracing::info!(
            tasks = purged.tasks,
            agents = purged.agents,
            datasets = purged.datasets,
            executions = purged.executions,
            artifacts = purged.artifacts,
            audit_records = purged.audit_records,
            schedule_runs = purged.schedule_runs,
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
                    "datasets": purged.datasets,
                    "executions": purged.executions,
                    "artifacts": purged.artifacts,
                    "audit_records": purged.audit_records,
                    "schedule_runs": purged.schedule_runs,
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
