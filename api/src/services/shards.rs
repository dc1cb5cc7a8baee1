//! Pipeline stages run by external agents. A stage shard is a task like any other: an agent
//! registered with the stage's capability (`stage_standardization`, …) claims it, streams the
//! shard's input from the API, streams its output back, reports progress, and completes or
//! fails it. The API does the storage (artifacts are sealed at rest; the agent only ever sees
//! and sends clear NDJSON), checks that the output is canonical records, and moves the execution
//! on exactly as a built-in worker's shard would.
//!
//! Standardization, validation, processing and quality assessment take one shard of records in
//! and give one out, so an agent can run them. Ingestion (which splits the dataset into shards)
//! and export (which writes the execution's files and report) stay with the built-in workers.

use mcp_shared::{
    artifacts::{ArtifactReader, keys},
    db::{self, pipelines::ShardOutcome},
    domain::{
        pipeline::{PipelineStatus, Record, Stage},
        task::TaskStatus,
    },
    entities::{pipeline_executions, tasks::Model},
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    error::{ApiError, ErrorCode},
    services::{
        staging,
        tasks::{find, illegal},
    },
    state::AppState,
};

/// The stages an external agent may run.
pub const EXTERNAL_STAGES: [Stage; 4] = [
    Stage::Standardization,
    Stage::Validation,
    Stage::Processing,
    Stage::QualityAssessment,
];

/// A shard task an agent holds, with its execution.
pub struct HeldShard {
    pub task: Model,
    pub execution: pipeline_executions::Model,
    pub stage: Stage,
    pub shard: u32,
}

/// The stage and shard of a pipeline shard task; `None` for any other task.
fn shard_of(task: &Model) -> Option<(Uuid, Stage, u32)> {
    let stage = Stage::parse(task.stage.as_deref()?)?;
    let shard = task.payload.get("shard").and_then(Value::as_u64)? as u32;
    Some((task.execution_id?, stage, shard))
}

fn not_a_shard(task: &Model) -> ApiError {
    ApiError::new(
        ErrorCode::Conflict,
        format!("task {} is not a pipeline shard", task.id),
    )
}

fn builtin_only(stage: Stage) -> ApiError {
    ApiError::new(
        ErrorCode::Conflict,
        format!(
            "the {stage} stage is run by built-in workers only; agents may run {}",
            EXTERNAL_STAGES.map(|s| s.as_str()).join(", ")
        ),
    )
    .with_details(json!({"stage": stage}))
}

/// The shard task `id`, if `agent` holds its running attempt and the stage is one agents run.
async fn held(
    state: &AppState,
    agent: Uuid,
    id: Uuid,
    action: &str,
) -> Result<HeldShard, ApiError> {
    let task = find(state, id).await?;
    if task.agent_id != Some(agent) {
        return Err(ApiError::forbidden("this task is not routed to you"));
    }
    let (execution, stage, shard) = shard_of(&task).ok_or_else(|| not_a_shard(&task))?;
    if !EXTERNAL_STAGES.contains(&stage) {
        return Err(builtin_only(stage));
    }
    if task.status != TaskStatus::Running.as_str() {
        return Err(illegal(&task, action));
    }
    let execution = db::pipelines::find(&state.db.conn, execution)
        .await?
        .ok_or_else(|| ApiError::not_found("execution"))?;
    Ok(HeldShard {
        task,
        execution,
        stage,
        shard,
    })
}

/// The stage before `stage`, whose shard output is `stage`'s input.
fn input_stage(stage: Stage) -> Stage {
    let i = Stage::ALL.iter().position(|s| *s == stage).unwrap_or(0);
    Stage::ALL[i.saturating_sub(1)]
}

/// Lines in an artifact, read as a stream.
async fn count_stream(mut reader: ArtifactReader) -> Result<u64, ApiError> {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 64 * 1024];
    let mut lines = 0u64;
    loop {
        let n = reader.read(&mut buf).await.map_err(ApiError::internal)?;
        if n == 0 {
            return Ok(lines);
        }
        lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
    }
}

/// The shard's input, streamed in clear, and how many records it holds; marks the shard
/// started on `agent`.
pub async fn input(
    state: &AppState,
    agent: Uuid,
    id: Uuid,
) -> Result<(HeldShard, ArtifactReader, u64), ApiError> {
    let held = held(state, agent, id, "read the input of").await?;
    let key = keys::shard(held.execution.id, input_stage(held.stage), held.shard);
    let reader = match state.artifacts.reader(&key).await {
        Err(mcp_shared::Error::NotFound(_)) => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "the shard's input is no longer stored (the execution was purged)",
            ));
        }
        other => other?,
    };
    // Counted first (one more streamed read), so the agent can report progress as a share.
    let records = count_stream(reader).await?;
    let reader = state.artifacts.reader(&key).await?;
    let db = &state.db.conn;
    db::pipelines::mark_running(db, held.execution.id).await?;
    db::pipelines::start_shard(db, held.execution.id, held.stage, held.shard, Some(agent)).await?;
    Ok((held, reader, records))
}

/// What an output upload stored.
pub struct Stored {
    pub records: u64,
    pub bytes: u64,
}

/// Streams the shard's output (canonical records, NDJSON) into the store, sealed as it is
/// written. A line that is not a canonical record refuses the whole upload (422 naming the
/// line) and stores nothing. Uploading again replaces the earlier output.
pub async fn output(
    state: &AppState,
    agent: Uuid,
    id: Uuid,
    body: poem::Body,
) -> Result<Stored, ApiError> {
    let held = held(state, agent, id, "write the output of").await?;
    let mut check = OutputCheck {
        line: Vec::new(),
        line_no: 0,
        records: 0,
        prints: (held.stage == Stage::Validation).then(Vec::new),
    };
    let key = keys::shard(held.execution.id, held.stage, held.shard);
    let bytes = staging::store(state, &key, body, "output", &mut check).await?;
    let (stored, fingerprints) = (
        Stored {
            records: check.records,
            bytes,
        },
        check.prints,
    );
    // Processing de-duplicates across shards from what validation leaves beside each shard:
    // worked out here from the agent's records, so a built-in processing stage still can.
    if let Some(f) = fingerprints {
        state
            .artifacts
            .put(&keys::fingerprints(held.execution.id, held.shard), f)
            .await?;
    }
    Ok(stored)
}

/// Checks every line of an output as it streams past; with `prints`, works out each record's
/// de-duplication fingerprints.
struct OutputCheck {
    line: Vec<u8>,
    line_no: u64,
    records: u64,
    prints: Option<Vec<u8>>,
}

impl staging::Inspect for OutputCheck {
    fn feed(&mut self, chunk: &[u8]) -> Result<(), ApiError> {
        for b in chunk {
            if *b == b'\n' {
                self.line_no += 1;
                self.records += u64::from(check(&self.line, self.line_no, &mut self.prints)?);
                self.line.clear();
            } else {
                self.line.push(*b);
            }
        }
        Ok(())
    }

    fn end(&mut self) -> Result<Option<&'static [u8]>, ApiError> {
        if self.line.is_empty() {
            return Ok(None);
        }
        self.line_no += 1;
        self.records += u64::from(check(&self.line, self.line_no, &mut self.prints)?);
        // Later stages read shards line by line: end the last one.
        Ok(Some(b"\n"))
    }
}

/// Checks one output line; true when it held a record (blank lines are skipped). With
/// `prints`, appends the record's de-duplication fingerprints.
fn check(line: &[u8], line_no: u64, prints: &mut Option<Vec<u8>>) -> Result<bool, ApiError> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(false);
    }
    let record: Record = serde_json::from_slice(line).map_err(|e| {
        ApiError::invalid_field(
            "body",
            format!(
                "line {line_no} is not a canonical record ({{id, source, messages: [{{role, content}}], metadata}}): {e}"
            ),
        )
        .with_details(json!({"field": "body", "line": line_no}))
    })?;
    if let Some(p) = prints.as_mut() {
        p.extend_from_slice(&mcp_worker::analysis::dedup::exact_key(&record));
        p.extend_from_slice(&mcp_worker::analysis::dedup::simhash(&record).to_le_bytes());
    }
    Ok(true)
}

/// Records progress on the shard's stage row too, so the execution's progress shows it.
pub async fn progress(state: &AppState, task: &Model, records_done: Option<u64>, progress: i32) {
    let Some((execution, stage, shard)) = shard_of(task) else {
        return;
    };
    if let Err(e) = db::pipelines::shard_progress(
        &state.db.conn,
        execution,
        stage,
        shard,
        records_done.unwrap_or(0),
        progress.min(99),
    )
    .await
    {
        tracing::warn!(task_id = %task.id, error = %e, "shard progress not recorded");
    }
}

fn count_lines(bytes: &[u8]) -> u64 {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .count() as u64
}

/// Before an agent's completion of a shard task is recorded: checks that its output is stored,
/// records the shard (records in and out, the rejects the agent listed), and, for the last
/// shard of its stage, moves the execution on. Does nothing for other tasks, a completion
/// already recorded, or an execution that ended or moved past the stage meanwhile.
pub async fn before_complete(
    state: &AppState,
    agent: Uuid,
    task: &Model,
    result: &Value,
) -> Result<(), ApiError> {
    if shard_of(task).is_none() || task.status == TaskStatus::Completed.as_str() {
        return Ok(());
    }
    let held = held(state, agent, task.id, "complete").await?;
    let exec = &held.execution;
    let status = PipelineStatus::parse(&exec.status).unwrap_or(PipelineStatus::Pending);
    if status.is_terminal() || exec.current_stage.as_deref() != Some(held.stage.as_str()) {
        return Ok(());
    }
    let rejects = parse_rejects(held.stage, result)?;
    let output = match state
        .artifacts
        .get(&keys::shard(exec.id, held.stage, held.shard))
        .await
    {
        Err(mcp_shared::Error::NotFound(_)) => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "write the shard's output first: PUT /api/v1/tasks/{}/shard/output",
                    task.id
                ),
            ));
        }
        other => other?,
    };
    let input = state
        .artifacts
        .get(&keys::shard(exec.id, input_stage(held.stage), held.shard))
        .await?;
    let outcome = ShardOutcome {
        records_in: count_lines(&input),
        records_out: count_lines(&output),
        stats: json!({"rejects": rejects, "agent_id": agent}),
    };
    let db = &state.db.conn;
    db::pipelines::complete_shard(db, exec.id, held.stage, held.shard, &outcome).await?;
    if db::pipelines::stage_done(db, exec.id, held.stage).await? {
        let timeout = state.settings.task_execution_timeout.as_secs() as i32;
        mcp_worker::pipeline::advance_after(
            db,
            state.bus.as_ref(),
            exec.id,
            held.stage,
            mcp_worker::pipeline::next_stage_shards(exec, held.stage),
            timeout,
        )
        .await?;
    }
    Ok(())
}

/// The rejects an agent lists in its result (`rejects: [{line?, id?, reason, kind?}]`; `kind`
/// groups them in the report, default `rejected_by_agent`), in the shape built-in stages record
/// them, so the execution's report shows them.
fn parse_rejects(stage: Stage, result: &Value) -> Result<Value, ApiError> {
    let mut rejects = mcp_worker::stages::Rejects::default();
    let Some(listed) = result.get("rejects") else {
        return serde_json::to_value(rejects).map_err(ApiError::internal);
    };
    let listed = listed.as_array().ok_or_else(|| {
        ApiError::invalid_field(
            "result.rejects",
            "rejects must be a list of {line?, id?, reason}",
        )
    })?;
    for (i, item) in listed.iter().enumerate() {
        let reason = item.get("reason").and_then(Value::as_str).ok_or_else(|| {
            ApiError::invalid_field(
                &format!("result.rejects[{i}].reason"),
                "each reject needs a reason (a string)",
            )
        })?;
        let kind = match item.get("kind") {
            None => "rejected_by_agent",
            Some(k) => k
                .as_str()
                .filter(|k| {
                    !k.is_empty()
                        && k.len() <= 40
                        && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                })
                .ok_or_else(|| {
                    ApiError::invalid_field(
                        &format!("result.rejects[{i}].kind"),
                        "a reject's kind is 1-40 lowercase letters or underscores",
                    )
                })?,
        };
        let reject = mcp_worker::stages::Reject {
            stage: stage.as_str().into(),
            line: item.get("line").and_then(Value::as_u64),
            id: item.get("id").and_then(Value::as_str).map(str::to_string),
            reason: reason.chars().take(500).collect(),
        };
        // `add` keeps the first ones in full and only counts the rest.
        rejects.add(kind, reject);
    }
    serde_json::to_value(rejects).map_err(ApiError::internal)
}
