//! Key rotation: re-seals, in batches and while the service runs, every value an older key
//! sealed (agent configuration secrets, sensitive task fields) under the active key, and
//! re-authenticates the audit chain's records and anchors under it, and re-encrypts the artifact
//! store (datasets, stage outputs, exports, reports) under it. Each write
//! is conditional on the value it read, so a concurrent change is never overwritten; older keys
//! must stay configured until a run reports nothing left.
//!
//! The server runs it by itself in the background ([`spawn_background`]): keys only change with
//! a restart, so the replica leading the cluster re-seals once after it starts, and `keys
//! status` shows what is left meanwhile. `mcp-api keys rotate` runs the same pass on demand.

use mcp_shared::{
    artifacts::ArtifactStore,
    crypto::{KeyRing, sealed_key_id},
    db::{
        Database,
        agents::{self, SealedField},
        audit, tasks,
    },
    sealing,
};
use serde_json::json;

/// How many values each key sealed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sealed {
    /// Tasks whose sensitive payload fields it sealed.
    pub tasks: i64,
    /// Task results holding sealed copies of those fields (a runner echoed them).
    pub results: i64,
    /// Agents' configurations and metadata.
    pub agents: i64,
}

/// How many sealed values each key holds: tasks' fields, the copies inside results, and agents'
/// configurations and metadata.
pub async fn status(
    db: &Database,
) -> mcp_shared::Result<std::collections::BTreeMap<String, Sealed>> {
    let mut counts = std::collections::BTreeMap::<String, Sealed>::new();
    for (key, n) in tasks::maintenance::sealed_counts(&db.conn).await? {
        counts.entry(key).or_default().tasks += n;
    }
    let mut after = None;
    loop {
        let rows = tasks::maintenance::with_sealed_results(&db.conn, after, 1_000).await?;
        let Some(last) = rows.last() else { break };
        after = Some(last.id);
        for row in rows {
            for key in row
                .result
                .as_ref()
                .map(sealing::key_ids)
                .unwrap_or_default()
            {
                counts.entry(key).or_default().results += 1;
            }
        }
    }
    let mut after = None;
    loop {
        let rows = agents::with_sealed_data(&db.conn, after, 1_000).await?;
        let Some(last) = rows.last() else { break };
        after = Some(last.id);
        for row in rows {
            for sealed in [&row.configuration_sealed, &row.metadata_sealed]
                .into_iter()
                .flatten()
            {
                let key = sealed_key_id(sealed).unwrap_or("?");
                counts.entry(key.to_string()).or_default().agents += 1;
            }
        }
    }
    Ok(counts)
}

/// How many artifacts each key sealed (`clear`: stored before artifacts were encrypted).
pub async fn artifact_status(
    store: &dyn ArtifactStore,
) -> mcp_shared::Result<std::collections::BTreeMap<String, u64>> {
    let mut counts = std::collections::BTreeMap::new();
    for key in store.list("").await? {
        match store.sealed_by(&key).await {
            Ok(by) => {
                *counts
                    .entry(by.unwrap_or_else(|| "clear".into()))
                    .or_default() += 1
            }
            // Gone since it was listed (a retention purge, an overwrite).
            Err(mcp_shared::Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(counts)
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub tasks: u64,
    /// Task results whose sealed copies were re-sealed apart from their payload (a runner that
    /// held the payload from before the rotation echoed it).
    pub results: u64,
    /// Tasks that changed while being re-sealed (a runner finished, a retry): left for the
    /// next run.
    pub changed: u64,
    pub agents: u64,
    /// Audit records and anchors re-authenticated under the active key.
    pub audit: u64,
    /// Artifacts sealed anew under the active key (or sealed for the first time).
    pub artifacts: u64,
    /// Values no configured key opens (or audit MACs no configured key proves): they stay as
    /// they are.
    pub unreadable: u64,
}

/// How often the background pass is tried again after a failure or values it could not open.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);
const BACKGROUND_BATCH: u64 = 200;

/// Re-seals what older keys sealed, in the background, on whichever replica leads: once per
/// process, then again only while something failed.
pub fn spawn_background(
    state: crate::state::AppState,
    shutdown: tokio_util::sync::CancellationToken,
) {
    tokio::spawn(async move {
        let mut wait = std::time::Duration::from_secs(1);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            if !state.dispatcher.is_leader() {
                continue;
            }
            let done = rotate(
                &state.db,
                &state.cipher,
                &state.chain,
                state.artifacts.as_ref(),
                BACKGROUND_BATCH,
                false,
            )
            .await;
            match done {
                Ok(report) if report.unreadable == 0 && report.changed == 0 => {
                    if report != Rotation::default() {
                        tracing::info!(key = %state.cipher.active_key_id(), tasks = report.tasks,
                            agents = report.agents, artifacts = report.artifacts,
                            audit = report.audit, "re-sealed under the active key");
                    }
                    return;
                }
                Ok(report) if report.unreadable == 0 => {
                    // Values that kept changing under the pass: the next one takes them.
                    tracing::info!(changed = report.changed, "re-sealing goes on");
                    wait = std::time::Duration::from_secs(60);
                }
                Ok(report) => {
                    tracing::warn!(
                        unreadable = report.unreadable,
                        "values sealed by keys no longer configured were left as they are"
                    );
                    wait = RETRY_AFTER;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "background re-sealing failed; will try again");
                    wait = RETRY_AFTER.min(std::time::Duration::from_secs(60));
                }
            }
        }
    });
}

enum Resealed {
    Done,
    /// Already under the active key (another rotation got there first), or purged.
    Nothing,
    /// Kept changing under the rotation; the next run takes it.
    Changed,
    Unreadable,
}

/// A conditional write that lost to a concurrent change is tried again on the row as it is now.
const ATTEMPTS: usize = 3;

/// Re-seals a task's payload and, with it, the sealed copies in its result.
async fn reseal_task(
    db: &Database,
    ring: &KeyRing,
    mut row: mcp_shared::entities::tasks::Model,
) -> mcp_shared::Result<Resealed> {
    let active = ring.active_key_id();
    for _ in 0..ATTEMPTS {
        if row.sealed_key.as_deref().is_none_or(|k| k == active) {
            return Ok(Resealed::Nothing);
        }
        let mut payload = row.payload.clone();
        let mut result = row.result.clone();
        let resealed = sealing::reseal(&mut payload, ring).and_then(|_| {
            result
                .as_mut()
                .map_or(Ok(false), |r| sealing::reseal(r, ring))
        });
        if let Err(e) = resealed {
            tracing::warn!(task_id = %row.id, error = %e, "sealed task fields not rotated");
            return Ok(Resealed::Unreadable);
        }
        if tasks::maintenance::replace_sealed_payload(&db.conn, &row, payload, result, active)
            .await?
        {
            return Ok(Resealed::Done);
        }
        match tasks::find(&db.conn, row.id).await? {
            Some(now) => row = now,
            None => return Ok(Resealed::Nothing),
        }
    }
    Ok(Resealed::Changed)
}

/// Re-seals the sealed copies inside a task's result.
async fn reseal_result(
    db: &Database,
    ring: &KeyRing,
    mut row: mcp_shared::entities::tasks::Model,
) -> mcp_shared::Result<Resealed> {
    for _ in 0..ATTEMPTS {
        let Some(mut result) = row.result.clone() else {
            return Ok(Resealed::Nothing);
        };
        match sealing::reseal(&mut result, ring) {
            Ok(false) => return Ok(Resealed::Nothing),
            Ok(true) => {}
            Err(e) => {
                tracing::warn!(task_id = %row.id, error = %e, "sealed result not rotated");
                return Ok(Resealed::Unreadable);
            }
        }
        if tasks::maintenance::replace_sealed_result(&db.conn, &row, result).await? {
            return Ok(Resealed::Done);
        }
        match tasks::find(&db.conn, row.id).await? {
            Some(now) => row = now,
            None => return Ok(Resealed::Nothing),
        }
    }
    Ok(Resealed::Changed)
}

/// One pass over everything sealed. `record_noop`: leave an audit record even if nothing was
/// sealed by another key (an operator's explicit run is recorded; the background pass is not).
pub async fn rotate(
    db: &Database,
    ring: &KeyRing,
    chain: &audit::Chain,
    store: &dyn ArtifactStore,
    batch: u64,
    record_noop: bool,
) -> mcp_shared::Result<Rotation> {
    let active = ring.active_key_id().to_string();
    let mut report = Rotation::default();
    let mut after = None;
    loop {
        let rows =
            tasks::maintenance::sealed_by_other_keys(&db.conn, &active, after, batch).await?;
        let Some(last) = rows.last() else { break };
        after = Some(last.id);
        for row in rows {
            match reseal_task(db, ring, row).await? {
                Resealed::Done => report.tasks += 1,
                Resealed::Nothing => {}
                Resealed::Changed => report.changed += 1,
                Resealed::Unreadable => report.unreadable += 1,
            }
        }
    }
    // Results apart: a runner that read the payload before it was re-sealed echoes values sealed
    // by the older key into its result after the pass above.
    let mut after = None;
    loop {
        let rows = tasks::maintenance::with_sealed_results(&db.conn, after, batch).await?;
        let Some(last) = rows.last() else { break };
        after = Some(last.id);
        for row in rows {
            match reseal_result(db, ring, row).await? {
                Resealed::Done => report.results += 1,
                Resealed::Nothing => {}
                Resealed::Changed => report.changed += 1,
                Resealed::Unreadable => report.unreadable += 1,
            }
        }
    }
    let mut after = None;
    loop {
        let rows = agents::with_sealed_data(&db.conn, after, batch).await?;
        let Some(last) = rows.last() else { break };
        after = Some(last.id);
        for row in rows {
            let sealed = [
                (SealedField::Configuration, row.configuration_sealed),
                (SealedField::Metadata, row.metadata_sealed),
            ];
            for (field, old) in sealed {
                let Some(old) = old else { continue };
                match ring.reseal(&old) {
                    Ok(Some(new)) => {
                        if agents::replace_sealed(&db.conn, row.id, field, &old, &new).await? {
                            report.agents += 1;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(agent_id = %row.id, ?field, key = ?sealed_key_id(&old),
                            error = %e, "sealed agent data not rotated");
                        report.unreadable += 1;
                    }
                }
            }
        }
    }
    // Artifacts, one at a time, streaming: each is read through the store (opened with the key
    // that sealed it), sealed again under the active key, and replaced whole.
    for key in store.list("").await? {
        match store.reseal(&key).await {
            Ok(true) => report.artifacts += 1,
            Ok(false) | Err(mcp_shared::Error::NotFound(_)) => {}
            Err(e) => {
                tracing::warn!(artifact = %key, error = %e, "artifact not re-sealed");
                report.unreadable += 1;
            }
        }
    }
    let (rekeyed, refused) = audit::rekey(db, chain, batch).await?;
    report.audit = rekeyed;
    report.unreadable += refused;
    if report == Rotation::default() && !record_noop {
        return Ok(report);
    }
    audit::append(
        db,
        chain,
        vec![audit::AuditEntry {
            actor: "system:keys".into(),
            action: "keys.rotate".into(),
            target: Some(active),
            outcome: if report.unreadable == 0 && report.changed == 0 {
                "success"
            } else {
                "failure"
            }
            .into(),
            request_id: None,
            details: Some(json!({
                "tasks": report.tasks,
                "results": report.results,
                "changed": report.changed,
                "agents": report.agents,
                "audit": report.audit,
                "artifacts": report.artifacts,
                "unreadable": report.unreadable,
            })),
        }],
    )
    .await?;
    Ok(report)
}
