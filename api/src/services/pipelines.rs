//! Pipeline executions: validating a request, storing the execution with its ingestion task
//! (or finding the one an earlier request with the same idempotency key stored), waiting for
//! it, following it per stage, reading its exported files and report, and cancelling it.

use std::collections::HashMap;

use chrono::Utc;
use mcp_shared::{
    artifacts::{ArtifactReader, keys},
    bus::emit,
    db,
    domain::{
        event::{Event, EventType},
        pipeline::{
            ExportFormat, MAX_SHARD_SIZE, MIN_SHARD_SIZE, PipelineOptions, PipelineStatus,
            SourceFormat, Stage,
        },
        task::{Priority, TaskStatus},
    },
    entities::{pipeline_executions::Model as Execution, stage_runs},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    error::{ApiError, ErrorCode},
    services::{datasets, tasks::MAX_IDEMPOTENCY_KEY},
    state::AppState,
    task_schemas::OptionsRequest,
    views::StageView,
};

/// One execution request (`agent-execute`, or an item of `pipeline/batch`).
#[derive(Debug, Clone, Deserialize, Serialize, poem_openapi::Object)]
pub struct ExecuteRequest {
    /// A dataset uploaded with `POST /datasets`.
    pub dataset_id: Option<Uuid>,
    /// Or the records inline (JSON objects in any supported shape).
    pub records: Option<Vec<Value>>,
    /// `auto` (default) detects each record's shape.
    pub source_format: Option<SourceFormat>,
    pub options: Option<OptionsRequest>,
    /// Default `high` (`low` in a batch).
    pub priority: Option<Priority>,
    /// Answer when the execution ends (up to `wait_timeout_ms`), instead of at once.
    #[serde(default)]
    pub wait: Option<bool>,
    /// 1..300000, default 30000.
    pub wait_timeout_ms: Option<u64>,
    /// 1–200 characters. The same key with the same request again returns the execution the
    /// first one started instead of starting another; with a different request it is refused
    /// (409 `idempotency_key_reused`). `wait` and `wait_timeout_ms` are not part of the request
    /// compared.
    pub idempotency_key: Option<String>,
}

/// Whether [`start`] started an execution or found the one an earlier request with the same
/// idempotency key started.
pub enum Started {
    New(Execution),
    Existing(Execution),
}

impl Started {
    pub fn execution(&self) -> &Execution {
        match self {
            Self::New(e) | Self::Existing(e) => e,
        }
    }
}

pub const MAX_WAIT_MS: u64 = 300_000;
/// Most shards one execution may have: each is a task, and processing shard k reads the
/// fingerprints of all earlier ones.
pub const MAX_SHARDS: usize = 1000;
pub const DEFAULT_WAIT_MS: u64 = 30_000;

fn in_range(field: &str, v: Option<f64>, lo: f64, hi: f64, default: f64) -> Result<f64, ApiError> {
    match v {
        None => Ok(default),
        Some(x) if x.is_finite() && (lo..=hi).contains(&x) => Ok(x),
        Some(_) => Err(ApiError::invalid_field(
            field,
            format!("{field} must be between {lo} and {hi}"),
        )),
    }
}

/// Validates the request's options, filling in defaults.
pub fn options(req: &ExecuteRequest) -> Result<PipelineOptions, ApiError> {
    let o = req.options.clone().unwrap_or_default();
    let d = PipelineOptions::default();
    let export_formats = match o.export_formats {
        None => d.export_formats,
        Some(f) if f.is_empty() => {
            return Err(ApiError::invalid_field(
                "options.export_formats",
                format!(
                    "options.export_formats needs at least one of: {}",
                    ExportFormat::allowed()
                ),
            ));
        }
        Some(f) => {
            let mut unique = Vec::with_capacity(f.len());
            for format in f {
                if !unique.contains(&format) {
                    unique.push(format);
                }
            }
            unique
        }
    };
    let shard_size = match o.shard_size {
        None => d.shard_size,
        Some(s) if (MIN_SHARD_SIZE..=MAX_SHARD_SIZE).contains(&(s as usize)) => s as usize,
        Some(_) => {
            return Err(ApiError::invalid_field(
                "options.shard_size",
                format!("options.shard_size must be between {MIN_SHARD_SIZE} and {MAX_SHARD_SIZE}"),
            ));
        }
    };
    Ok(PipelineOptions {
        pii: o.pii.unwrap_or(d.pii),
        quality_threshold: in_range(
            "options.quality_threshold",
            o.quality_threshold,
            0.0,
            1.0,
            d.quality_threshold,
        )?,
        bias_threshold: in_range(
            "options.bias_threshold",
            o.bias_threshold,
            0.0,
            1.0,
            d.bias_threshold,
        )?,
        reject_biased: o.reject_biased.unwrap_or(d.reject_biased),
        near_duplicate_threshold: in_range(
            "options.near_duplicate_threshold",
            o.near_duplicate_threshold,
            0.9,
            1.0,
            d.near_duplicate_threshold,
        )?,
        export_formats,
        source_format: req.source_format.unwrap_or(d.source_format),
        shard_size,
    })
}

/// Checks a request completely before anything is stored.
pub fn validate(req: &ExecuteRequest) -> Result<PipelineOptions, ApiError> {
    match (&req.dataset_id, &req.records) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_field(
                "records",
                "send either dataset_id or records, not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::invalid_field(
                "dataset_id",
                "send dataset_id (from POST /datasets) or records",
            ));
        }
        _ => {}
    }
    if let Some(ms) = req.wait_timeout_ms
        && !(1..=MAX_WAIT_MS).contains(&ms)
    {
        return Err(ApiError::invalid_field(
            "wait_timeout_ms",
            format!("wait_timeout_ms must be between 1 and {MAX_WAIT_MS}"),
        ));
    }
    if let Some(k) = &req.idempotency_key
        && (k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY)
    {
        return Err(ApiError::invalid_field(
            "idempotency_key",
            format!("idempotency_key must be 1-{MAX_IDEMPOTENCY_KEY} characters"),
        ));
    }
    options(req)
}

/// Identifies what an execution request asks for, after defaults are filled in, so that a
/// replay is told apart from a different request under the same key. How long the caller
/// waits is not part of it.
pub fn fingerprint(
    state: &AppState,
    req: &ExecuteRequest,
    options: &PipelineOptions,
    priority: Priority,
) -> Result<String, ApiError> {
    let canonical = json!({
        "dataset_id": req.dataset_id,
        "records": req.records,
        "options": options,
        "priority": priority,
    });
    // Keyed: inline records are conversation data.
    Ok(super::keyed_fingerprint(state, &canonical))
}

/// The earlier execution, when the request matches the one that started it; 409 otherwise.
fn replay(existing: Execution, fingerprint: &str) -> Result<Execution, ApiError> {
    if existing.request_hash.as_deref() == Some(fingerprint) {
        Ok(existing)
    } else {
        Err(ApiError::new(
            ErrorCode::IdempotencyKeyReused,
            "this idempotency_key was used with a different request body",
        )
        .with_details(json!({"field": "idempotency_key", "execution_id": existing.id})))
    }
}

/// Checks the idempotency keys of a batch before anything starts: a key an earlier execution
/// holds must come with the same request, and so must a key repeated inside the batch. An
/// offending item is named by its index (`executions[i]`).
pub async fn check_keys(
    state: &AppState,
    items: &[(ExecuteRequest, PipelineOptions)],
    default_priority: Priority,
) -> Result<(), ApiError> {
    let keys: Vec<String> = items
        .iter()
        .filter_map(|(r, _)| r.idempotency_key.clone())
        .collect();
    let mut stored = HashMap::new();
    for chunk in keys.chunks(500) {
        for e in db::pipelines::find_by_idempotency_keys(&state.db.conn, chunk).await? {
            if let Some(k) = e.idempotency_key.clone() {
                stored.insert(k, e);
            }
        }
    }
    let mut in_batch: HashMap<&str, String> = HashMap::new();
    for (index, (req, options)) in items.iter().enumerate() {
        let Some(key) = req.idempotency_key.as_deref() else {
            continue;
        };
        let at = |e: ApiError| e.within(&format!("executions[{index}]"));
        let fp = fingerprint(
            state,
            req,
            options,
            req.priority.unwrap_or(default_priority),
        )?;
        if let Some(prev) = stored.get(key) {
            replay(prev.clone(), &fp).map_err(at)?;
        } else if let Some(prev) = in_batch.get(key) {
            if *prev != fp {
                return Err(at(ApiError::new(
                    ErrorCode::IdempotencyKeyReused,
                    "this idempotency_key appears earlier in the batch with a different request",
                )
                .with_details(json!({"field": "idempotency_key"}))));
            }
        } else {
            in_batch.insert(key, fp);
        }
    }
    Ok(())
}

fn check_shards(records: usize, options: &PipelineOptions) -> Result<(), ApiError> {
    let shards = records.div_ceil(options.shard_size);
    if shards > MAX_SHARDS {
        return Err(ApiError::invalid_field(
            "options.shard_size",
            format!(
                "shard_size {} would split {records} records into {shards} shards; at most {MAX_SHARDS}",
                options.shard_size
            ),
        ));
    }
    Ok(())
}

/// The checks that need the database (the dataset exists; the shard count is bounded), so a
/// batch can refuse an item before starting any.
pub async fn check_dataset(
    state: &AppState,
    req: &ExecuteRequest,
    options: &PipelineOptions,
) -> Result<(), ApiError> {
    let records = match (&req.dataset_id, &req.records) {
        (Some(id), _) => db::pipelines::find_dataset(&state.db.conn, *id)
            .await?
            .ok_or_else(|| ApiError::invalid_field("dataset_id", "no dataset has this id"))?
            .records
            .max(0) as usize,
        (None, Some(records)) => records.len(),
        (None, None) => 0,
    };
    check_shards(records, options)
}

/// Stores an execution and its first stage's task, or finds the execution an earlier request
/// with the same idempotency key stored.
pub async fn start(
    state: &AppState,
    req: &ExecuteRequest,
    options: PipelineOptions,
    default_priority: Priority,
    created_by: &str,
) -> Result<Started, ApiError> {
    let priority = req.priority.unwrap_or(default_priority);
    let request_hash = fingerprint(state, req, &options, priority)?;
    if let Some(key) = &req.idempotency_key
        && let Some(existing) = db::pipelines::find_by_idempotency_key(&state.db.conn, key).await?
    {
        return replay(existing, &request_hash).map(Started::Existing);
    }
    let dataset = match (&req.dataset_id, &req.records) {
        (Some(id), _) => db::pipelines::find_dataset(&state.db.conn, *id)
            .await?
            .ok_or_else(|| {
                ApiError::invalid_field("dataset_id", "no dataset has this id")
                    .with_details(json!({"field": "dataset_id", "dataset_id": id}))
            })?,
        (None, Some(records)) => datasets::from_records(state, records, created_by).await?,
        (None, None) => unreachable!("validated"),
    };
    check_shards(dataset.records.max(0) as usize, &options)?;
    let now = Utc::now();
    let mut row = db::pipelines::new_execution(
        Uuid::now_v7(),
        priority,
        dataset.id,
        serde_json::to_value(&options).map_err(ApiError::internal)?,
        created_by,
        now,
    );
    row.idempotency_key = req.idempotency_key.clone();
    row.request_hash = Some(request_hash.clone());
    let timeout = state.settings.task_execution_timeout.as_secs() as i32;
    let execution = match db::pipelines::create(&state.db.conn, row, timeout).await {
        Ok(e) => e,
        Err(mcp_shared::Error::Database(e)) if db::users::is_unique_violation(&e) => {
            // Two requests with the same key raced; the other one won.
            let key = req.idempotency_key.as_deref().unwrap_or_default();
            let existing = db::pipelines::find_by_idempotency_key(&state.db.conn, key)
                .await?
                .ok_or_else(|| {
                    ApiError::internal("unique violation without an existing execution")
                })?;
            return replay(existing, &request_hash).map(Started::Existing);
        }
        Err(e) => return Err(e.into()),
    };
    state.dispatcher.wake();
    emit(
        state.bus.as_ref(),
        Event::stage_started(execution.id, Stage::Ingestion, 1),
    )
    .await;
    Ok(Started::New(execution))
}

/// Checks one execution request and starts it (see [`start`]).
pub async fn submit(
    state: &AppState,
    req: &ExecuteRequest,
    default_priority: Priority,
    created_by: &str,
) -> Result<Started, ApiError> {
    let options = validate(req)?;
    start(state, req, options, default_priority, created_by).await
}

/// Starts a batch of executions (priority defaults to `low`). Every item is checked first: one
/// invalid item refuses the batch, named by its index (`executions[i]`), and nothing starts.
/// Returns the execution ids in order and how many of them earlier requests had started.
pub async fn start_batch(
    state: &AppState,
    items: Vec<Result<ExecuteRequest, ApiError>>,
    created_by: &str,
) -> Result<(Vec<Uuid>, usize), ApiError> {
    let mut checked = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let at = |e: ApiError| e.within(&format!("executions[{index}]"));
        let (req, options) = item
            .and_then(|r| validate(&r).map(|o| (r, o)))
            .map_err(at)?;
        check_dataset(state, &req, &options).await.map_err(at)?;
        checked.push((req, options));
    }
    check_keys(state, &checked, Priority::Low).await?;
    let mut ids = Vec::with_capacity(checked.len());
    let mut replayed = 0;
    for (req, options) in checked {
        let started = start(state, &req, options, Priority::Low, created_by).await?;
        replayed += usize::from(matches!(started, Started::Existing(_)));
        ids.push(started.execution().id);
    }
    Ok((ids, replayed))
}

pub async fn find(state: &AppState, id: Uuid) -> Result<Execution, ApiError> {
    db::pipelines::find(&state.db.conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found("pipeline execution"))
}

fn is_terminal(e: &Execution) -> bool {
    PipelineStatus::parse(&e.status).is_some_and(PipelineStatus::is_terminal)
}

/// Waits until the execution ends or `timeout` passes; returns its latest row either way.
pub async fn wait(
    state: &AppState,
    id: Uuid,
    timeout: std::time::Duration,
) -> Result<Execution, ApiError> {
    // Subscribe before reading, so an end between the read and the wait is not missed.
    let mut events = state.bus.subscribe();
    let current = find(state, id).await?;
    if is_terminal(&current) {
        return Ok(current);
    }
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let ended = tokio::select! {
            ev = events.recv() => match ev {
                Ok(ev) => ev.execution_id == Some(id)
                    && matches!(
                        ev.kind,
                        EventType::PipelineCompleted | EventType::PipelineFailed | EventType::PipelineCancelled
                    ),
                // Missed events: re-read the row rather than trust the stream.
                Err(_) => true,
            },
            () = tokio::time::sleep_until(deadline) => break,
        };
        if ended {
            let row = find(state, id).await?;
            if is_terminal(&row) {
                return Ok(row);
            }
        }
    }
    find(state, id).await
}

/// The execution with its per-stage state and its overall progress (0..100).
pub async fn progress(
    state: &AppState,
    id: Uuid,
) -> Result<(Execution, Vec<StageView>, i32), ApiError> {
    let e = find(state, id).await?;
    let runs = db::pipelines::stage_runs(&state.db.conn, e.id).await?;
    let stages = stage_views(&runs);
    let progress = overall_progress(&e, &stages);
    Ok((e, stages, progress))
}

/// A completed execution, or 409 until it has completed.
async fn completed(state: &AppState, id: Uuid) -> Result<Execution, ApiError> {
    let e = find(state, id).await?;
    if e.status == PipelineStatus::Completed.as_str() {
        return Ok(e);
    }
    Err(ApiError::new(
        ErrorCode::NotReady,
        format!(
            "the execution is {}; results exist once it has completed",
            e.status
        ),
    )
    .with_details(json!({"current_status": e.status})))
}

/// Opens a completed execution's exported file in `format`.
pub async fn export(
    state: &AppState,
    id: Uuid,
    format: ExportFormat,
) -> Result<ArtifactReader, ApiError> {
    let e = completed(state, id).await?;
    let exported: Vec<ExportFormat> = e
        .options
        .get("export_formats")
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    if !exported.contains(&format) {
        return Err(ApiError::invalid_field(
            "format",
            format!("this execution did not export {format}"),
        )
        .with_details(json!({"field": "format", "exported": exported})));
    }
    Ok(state.artifacts.reader(&keys::export(e.id, format)).await?)
}

/// A completed execution's report.
pub async fn report(state: &AppState, id: Uuid) -> Result<Value, ApiError> {
    let e = completed(state, id).await?;
    let bytes = state.artifacts.get(&keys::report(e.id)).await?;
    serde_json::from_slice(&bytes).map_err(ApiError::internal)
}

/// Cancels an unfinished execution and every shard still waiting or running.
pub async fn cancel(state: &AppState, id: Uuid) -> Result<Execution, ApiError> {
    let current = find(state, id).await?;
    if !db::pipelines::end(&state.db.conn, id, PipelineStatus::Cancelled, None).await? {
        return Err(ApiError::new(
            ErrorCode::IllegalTransition,
            format!("cannot cancel an execution that is {}", current.status),
        )
        .with_details(json!({"current_status": current.status})));
    }
    emit(state.bus.as_ref(), Event::pipeline_cancelled(id)).await;
    state.lifecycle.cancel_open_tasks(id).await?;
    find(state, id).await
}

pub fn stage_views(runs: &[stage_runs::Model]) -> Vec<StageView> {
    Stage::ALL
        .iter()
        .map(|stage| {
            let of: Vec<_> = runs.iter().filter(|r| r.stage == stage.as_str()).collect();
            let done = |s: &str| of.iter().filter(|r| r.status == s).count();
            let status = if of.is_empty() {
                "pending"
            } else if done(TaskStatus::Dead.as_str()) > 0 {
                "failed"
            } else if done(TaskStatus::Completed.as_str()) == of.len() {
                "completed"
            } else if of.iter().any(|r| r.started_at.is_some()) {
                "running"
            } else {
                "pending"
            };
            let mut agent_ids: Vec<Uuid> = of.iter().filter_map(|r| r.agent_id).collect();
            agent_ids.sort();
            agent_ids.dedup();
            let finished_at = if status == "completed" {
                of.iter().filter_map(|r| r.finished_at).max()
            } else {
                None
            };
            StageView {
                stage: *stage,
                status: status.into(),
                task_id: of.first().and_then(|r| r.task_id),
                agent_id: of.first().and_then(|r| r.agent_id),
                agent_ids,
                shards: of.len() as u32,
                started_at: of.iter().filter_map(|r| r.started_at).min(),
                finished_at,
                records_in: of.iter().map(|r| r.records_in).sum(),
                records_out: of.iter().map(|r| r.records_out).sum(),
                progress: if of.is_empty() {
                    0
                } else {
                    of.iter().map(|r| r.progress).sum::<i32>() / of.len() as i32
                },
                error: of.iter().find_map(|r| r.error.clone()),
            }
        })
        .collect()
}

/// Overall progress 0..100: finished stages plus the current one's share.
pub fn overall_progress(execution: &Execution, stages: &[StageView]) -> i32 {
    if execution.status == PipelineStatus::Completed.as_str() {
        return 100;
    }
    let per_stage = 100.0 / stages.len() as f64;
    let total: f64 = stages
        .iter()
        .map(|s| {
            if s.status == "completed" {
                per_stage
            } else {
                per_stage * s.progress as f64 / 100.0
            }
        })
        .sum();
    (total.round() as i32).min(99)
}
