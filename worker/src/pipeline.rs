//! Runs one shard of one pipeline stage as a task: reads the stage's input artifact, runs the
//! stage on a blocking thread, writes its output, records the shard, and — when it was the last
//! shard of its stage — moves the execution on (see `db::pipelines::advance`).
//!
//! Every step is idempotent: a shard re-run (a duplicate delivery, a worker killed mid-shard)
//! overwrites its own artifacts and stage-run row and nothing else, and only one finishing shard
//! can advance the execution.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use mcp_shared::{
    artifacts::{ArtifactStore, keys},
    bus::emit,
    db::{self, pipelines::ShardOutcome},
    domain::{
        event::Event,
        pipeline::{DatasetFormat, PipelineOptions, PipelineStatus, Stage},
    },
    entities::{pipeline_executions, tasks},
};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    WorkerDeps,
    handlers::failure::{HandlerError, permanent},
    stages::{self, Control, Stopped, export::StageSummary, ingestion::IngestError},
};

#[derive(Deserialize)]
struct ShardJob {
    execution_id: Uuid,
    stage: Stage,
    shard: u32,
}

/// What the blocking stage code and the progress reporter share.
#[derive(Default)]
struct ShardProgress {
    stop: AtomicBool,
    done: AtomicU64,
    total: AtomicU64,
    /// Woken every 1,000 records, so fast stages report that often and not only each second.
    nudge: tokio::sync::Notify,
}

/// Sets the stop flag when the task's future is dropped (cancelled or timed out), so the
/// blocking stage code stops at its next progress point instead of running on unobserved.
struct StopOnDrop(Arc<ShardProgress>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Relaxed);
    }
}

/// Stops the progress reporter with the shard, however the shard ends (a cancel or timeout
/// drops the handler), so a stale reporter never writes into a later attempt's row.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn stopped() -> HandlerError {
    "stage stopped".into()
}

pub async fn run_shard(deps: &WorkerDeps, task: &tasks::Model) -> Result<Value, HandlerError> {
    let job: ShardJob = serde_json::from_value(task.payload.clone())
        .map_err(|e| permanent(format!("not a pipeline shard payload: {e}")))?;
    let db = &deps.db.conn;
    let execution = db::pipelines::find(db, job.execution_id)
        .await?
        .ok_or_else(|| permanent("the execution no longer exists"))?;
    let status = PipelineStatus::parse(&execution.status).unwrap_or(PipelineStatus::Pending);
    if status.is_terminal() {
        return Ok(json!({"skipped": true, "execution_status": status}));
    }
    if execution.current_stage.as_deref() != Some(job.stage.as_str()) {
        // A late duplicate of a shard whose stage already finished: its output is in place.
        return Ok(json!({"skipped": true, "reason": "the stage already completed"}));
    }
    let options: PipelineOptions = serde_json::from_value(execution.options.clone())
        .map_err(|e| permanent(format!("stored options unreadable: {e}")))?;
    db::pipelines::mark_running(db, execution.id).await?;
    db::pipelines::start_shard(db, execution.id, job.stage, job.shard, deps.agent_id).await?;

    let progress = Arc::new(ShardProgress::default());
    let _guard = StopOnDrop(progress.clone());
    let reporter = AbortOnDrop(tokio::spawn(report_progress(
        deps.clone(),
        task.clone(),
        job.execution_id,
        job.stage,
        job.shard,
        progress.clone(),
    )));
    let run = StageRun {
        store: deps.artifacts.clone(),
        execution: execution.clone(),
        options,
        shard: job.shard,
        progress,
    };
    let outcome = match job.stage {
        Stage::Ingestion => run.ingestion(deps).await,
        Stage::Standardization => run.standardization(deps).await,
        Stage::Validation => run.validation().await,
        Stage::Processing => run.processing().await,
        Stage::QualityAssessment => run.quality().await,
        Stage::Export => run.export(deps).await,
    };
    drop(reporter);
    let (outcome, next_shards) = outcome?;

    db::pipelines::complete_shard(db, execution.id, job.stage, job.shard, &outcome).await?;
    if db::pipelines::stage_done(db, execution.id, job.stage).await? {
        finish_stage(deps, &execution, job.stage, next_shards).await?;
    }
    Ok(json!({
        "execution_id": execution.id,
        "stage": job.stage,
        "shard": job.shard,
        "records_in": outcome.records_in,
        "records_out": outcome.records_out,
    }))
}

/// The last shard of `stage` finished: enqueue the next stage, or complete the execution.
async fn finish_stage(
    deps: &WorkerDeps,
    execution: &pipeline_executions::Model,
    stage: Stage,
    next_shards: u32,
) -> mcp_shared::Result<()> {
    let timeout = deps.settings.task_execution_timeout.as_secs() as i32;
    advance_after(
        &deps.db.conn,
        deps.bus.as_ref(),
        execution.id,
        stage,
        next_shards,
        timeout,
    )
    .await
}

/// Moves an execution on after the last shard of `stage` finished, whoever ran it (a built-in
/// worker, or an external agent through the API): enqueues `next_shards` shards of the next
/// stage (with `timeout_seconds` each) and publishes `stage.completed` and `stage.started`.
/// Only one caller wins the advance; the others do nothing.
pub async fn advance_after(
    db: &sea_orm::DatabaseConnection,
    bus: &dyn mcp_shared::bus::EventBus,
    execution: Uuid,
    stage: Stage,
    next_shards: u32,
    timeout_seconds: i32,
) -> mcp_shared::Result<()> {
    let runs = db::pipelines::stage_runs(db, execution).await?;
    let (records_in, records_out) = runs
        .iter()
        .filter(|r| r.stage == stage.as_str())
        .fold((0, 0), |(i, o), r| (i + r.records_in, o + r.records_out));
    let Some(next) = stage.next() else {
        return Ok(());
    };
    if db::pipelines::advance(db, execution, stage, next, next_shards, timeout_seconds).await? {
        tracing::info!(execution_id = %execution, %stage, %next, "stage completed");
        emit(
            bus,
            Event::stage_completed(execution, stage, records_in, records_out),
        )
        .await;
        emit(bus, Event::stage_started(execution, next, next_shards)).await;
    }
    Ok(())
}

/// Shards of the stage after `stage`: export is one task over every shard; the others keep the
/// execution's shards.
pub fn next_stage_shards(execution: &pipeline_executions::Model, stage: Stage) -> u32 {
    match stage.next() {
        Some(Stage::Export) => 1,
        _ => execution.shards.max(1) as u32,
    }
}

/// Publishes a shard's progress at most every second or every 1,000 records, whichever first.
async fn report_progress(
    deps: WorkerDeps,
    task: tasks::Model,
    execution: Uuid,
    stage: Stage,
    shard: u32,
    progress: Arc<ShardProgress>,
) {
    let mut reported = 0;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            () = progress.nudge.notified() => {}
            _ = tick.tick() => {}
        }
        let records = progress.done.load(Ordering::Relaxed);
        if records == reported {
            continue;
        }
        reported = records;
        let total = progress.total.load(Ordering::Relaxed);
        let pct = (records * 100).checked_div(total).unwrap_or(0).min(99) as i32;
        let db = &deps.db.conn;
        let _ = db::pipelines::shard_progress(db, execution, stage, shard, records, pct).await;
        let _ = db::tasks::transitions::progress(db, task.id, None, pct, None).await;
        emit(
            deps.bus.as_ref(),
            Event::shard_progress(&task, stage, shard, records, total, pct),
        )
        .await;
    }
}

/// One shard's inputs and the means to report on it.
struct StageRun {
    store: Arc<dyn ArtifactStore>,
    execution: pipeline_executions::Model,
    options: PipelineOptions,
    shard: u32,
    progress: Arc<ShardProgress>,
}

type StageResult = Result<(ShardOutcome, u32), HandlerError>;

impl StageRun {
    /// Runs `work` on a blocking thread with a [`Control`] wired to this run.
    async fn blocking<T: Send + 'static>(
        &self,
        total: u64,
        work: impl FnOnce(&Control<'_>) -> Result<T, Stopped> + Send + 'static,
    ) -> Result<T, HandlerError> {
        let progress = self.progress.clone();
        progress.total.store(total, Ordering::Relaxed);
        progress.done.store(0, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            let nudge = || progress.nudge.notify_one();
            let ctl = Control {
                stop: &progress.stop,
                done: &progress.done,
                nudge: &nudge,
            };
            work(&ctl)
        })
        .await
        .map_err(|e| format!("stage panicked: {e}"))?
        .map_err(|Stopped| stopped())
    }

    async fn input(&self, stage: Stage) -> Result<Vec<u8>, HandlerError> {
        Ok(self
            .store
            .get(&keys::shard(self.execution.id, stage, self.shard))
            .await?)
    }

    async fn output(&self, stage: Stage, bytes: Vec<u8>) -> Result<(), HandlerError> {
        Ok(self
            .store
            .put(&keys::shard(self.execution.id, stage, self.shard), bytes)
            .await?)
    }

    async fn ingestion(&self, deps: &WorkerDeps) -> StageResult {
        let dataset_id = self
            .execution
            .dataset_id
            .ok_or_else(|| permanent("the execution has no dataset"))?;
        let dataset = db::pipelines::find_dataset(&deps.db.conn, dataset_id)
            .await?
            .ok_or_else(|| permanent("the dataset no longer exists"))?;
        let format = DatasetFormat::parse(&dataset.format)
            .ok_or_else(|| permanent("unknown dataset format"))?;
        let reader = match self.store.reader(&dataset.artifact_key).await {
            Err(mcp_shared::Error::NotFound(_)) => {
                return Err(permanent(
                    "the dataset's file is missing from the artifact store",
                ));
            }
            other => other?,
        };
        let store = self.store.clone();
        let execution = self.execution.id;
        let shard_size = self.options.shard_size;
        let handle = tokio::runtime::Handle::current();
        // Stopping surfaces as `Stopped`; a read or write failure travels inside `Ok`.
        let found = self
            .blocking(dataset.records.max(0) as u64, move |ctl| {
                let input = tokio_util::io::SyncIoBridge::new_with_handle(reader, handle.clone());
                match stages::ingestion::ingest(input, format, shard_size, ctl, |shard, bytes| {
                    handle
                        .block_on(
                            store.put(&keys::shard(execution, Stage::Ingestion, shard), bytes),
                        )
                        .map_err(|e| e.to_string())
                }) {
                    Ok(found) => Ok(Ok(found)),
                    Err(IngestError::Stopped) => Err(Stopped),
                    Err(IngestError::Io(e)) => Ok(Err(e)),
                }
            })
            .await??;
        let stats =
            json!({"records": found.records, "shards": found.shards, "rejects": found.rejects});
        Ok((
            ShardOutcome {
                records_in: found.records + found.rejects.total,
                records_out: found.records,
                stats,
            },
            found.shards,
        ))
    }

    async fn standardization(&self, deps: &WorkerDeps) -> StageResult {
        let input = self.input(Stage::Ingestion).await?;
        // Records without a `source` are attributed to the dataset by name, which (unlike its
        // id) is the same when the same file is uploaded again.
        let source = match self.execution.dataset_id {
            Some(id) => db::pipelines::find_dataset(&deps.db.conn, id)
                .await?
                .map(|d| d.name)
                .unwrap_or_else(|| "dataset".into()),
            None => "dataset".into(),
        };
        let format = self.options.source_format;
        let (out, stats, n_in, n_out) = self
            .blocking(count_lines(&input), move |ctl| {
                let mut rejects = stages::Rejects::default();
                let mut records = Vec::new();
                let mut n = 0u64;
                for line in input.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    n += 1;
                    ctl.tick(n)?;
                    #[derive(Deserialize)]
                    struct Raw {
                        line: u64,
                        raw: serde_json::Map<String, Value>,
                    }
                    let Ok(raw) = serde_json::from_slice::<Raw>(line) else {
                        continue;
                    };
                    match stages::standardization::standardize(&raw.raw, raw.line, format, &source)
                    {
                        Ok(r) => records.push(r),
                        Err(reason) => rejects.add(
                            "unrecognised",
                            stages::Reject {
                                stage: Stage::Standardization.as_str().into(),
                                line: Some(raw.line),
                                id: None,
                                reason,
                            },
                        ),
                    }
                }
                let n_out = records.len() as u64;
                Ok((
                    stages::write_records(&records),
                    json!({"rejects": rejects}),
                    n,
                    n_out,
                ))
            })
            .await?;
        self.output(Stage::Standardization, out).await?;
        Ok((outcome(n_in, n_out, stats), self.execution.shards as u32))
    }

    async fn validation(&self) -> StageResult {
        let records = stages::read_records(&self.input(Stage::Standardization).await?)?;
        let options = self.options.clone();
        let n_in = records.len() as u64;
        let validated = self
            .blocking(n_in, move |ctl| {
                stages::validation::validate(records, &options, ctl)
            })
            .await?;
        let n_out = validated.records.len() as u64;
        self.store
            .put(
                &keys::fingerprints(self.execution.id, self.shard),
                validated.fingerprints,
            )
            .await?;
        self.output(Stage::Validation, stages::write_records(&validated.records))
            .await?;
        Ok((
            outcome(n_in, n_out, serde_json::to_value(&validated.stats)?),
            self.execution.shards as u32,
        ))
    }

    async fn processing(&self) -> StageResult {
        let records = stages::read_records(&self.input(Stage::Validation).await?)?;
        let mut earlier = Vec::new();
        for k in 0..self.shard {
            earlier.extend(
                self.store
                    .get(&keys::fingerprints(self.execution.id, k))
                    .await?,
            );
        }
        let own = self
            .store
            .get(&keys::fingerprints(self.execution.id, self.shard))
            .await?;
        let threshold = self.options.near_duplicate_threshold;
        let n_in = records.len() as u64;
        let (kept, stats) = self
            .blocking(n_in, move |ctl| {
                stages::processing::process(&earlier, &own, records, threshold, ctl)
            })
            .await?;
        let n_out = kept.len() as u64;
        self.output(Stage::Processing, stages::write_records(&kept))
            .await?;
        Ok((
            outcome(n_in, n_out, serde_json::to_value(&stats)?),
            self.execution.shards as u32,
        ))
    }

    async fn quality(&self) -> StageResult {
        let records = stages::read_records(&self.input(Stage::Processing).await?)?;
        let threshold = self.options.quality_threshold;
        let n_in = records.len() as u64;
        let (kept, stats) = self
            .blocking(n_in, move |ctl| {
                stages::quality::assess(records, threshold, ctl)
            })
            .await?;
        let n_out = kept.len() as u64;
        self.output(Stage::QualityAssessment, stages::write_records(&kept))
            .await?;
        // Export is one task over every shard.
        Ok((outcome(n_in, n_out, serde_json::to_value(&stats)?), 1))
    }

    async fn export(&self, deps: &WorkerDeps) -> StageResult {
        let execution = self.execution.id;
        let formats = self.options.export_formats.clone();
        let staging = self.store.staging_dir();
        tokio::fs::create_dir_all(&staging).await?;
        // Unique per run: a duplicate delivery running the same export at once writes its own
        // files (each sealed under its own salt), and the last to finish replaces the artifact.
        let run = uuid::Uuid::now_v7().simple();
        let paths: Vec<_> = formats
            .iter()
            .map(|f| staging.join(format!("{execution}-{run}-{}", f.file_name())))
            .collect();
        let mut writers = Vec::new();
        for (f, p) in formats.iter().zip(&paths) {
            // Sealed as it is written: the export is never on disk in clear.
            let file = mcp_shared::sealed_stream::SealWriter::new(
                std::io::BufWriter::new(std::fs::File::create(p)?),
                self.store.sealer(),
            );
            writers.push(stages::export::FormatWriter::new(*f, file)?);
        }
        let mut total = 0u64;
        for k in 0..self.execution.shards.max(1) as u32 {
            let bytes = self
                .store
                .get(&keys::shard(execution, Stage::QualityAssessment, k))
                .await?;
            let mut moved = std::mem::take(&mut writers);
            let (back, n) = self
                .blocking(0, move |_| {
                    let records = stages::read_records(&bytes).map_err(|_| Stopped)?;
                    for r in &records {
                        for w in &mut moved {
                            w.write(r).map_err(|_| Stopped)?;
                        }
                    }
                    Ok((moved, records.len() as u64))
                })
                .await
                .map_err(|_| "writing the export failed")?;
            writers = back;
            total += n;
            if self.progress.stop.load(Ordering::Relaxed) {
                return Err(stopped());
            }
        }
        for (w, (f, p)) in writers.into_iter().zip(formats.iter().zip(&paths)) {
            let mut file = w.finish()?.finish()?;
            std::io::Write::flush(&mut file)?;
            drop(file);
            self.store.put_file(&keys::export(execution, *f), p).await?;
        }

        let report = self.report(deps, total).await?;
        self.store
            .put(
                &keys::report(execution),
                serde_json::to_vec_pretty(&report)?,
            )
            .await?;
        let exports: serde_json::Map<String, Value> = formats
            .iter()
            .map(|f| {
                (
                    f.as_str().to_string(),
                    json!(format!("/api/v1/pipeline/{execution}/results?format={f}")),
                )
            })
            .collect();
        let results = json!({
            "records_out": total,
            "exports": exports,
            "report": format!("/api/v1/pipeline/{execution}/report"),
        });
        let metrics = json!({"stages": report["stages"], "records_in": report["records_in"], "records_out": total});
        if db::pipelines::finish(&deps.db.conn, execution, results.clone(), metrics).await? {
            let bus = deps.bus.as_ref();
            let total = total as i64;
            emit(
                bus,
                Event::stage_completed(execution, Stage::Export, total, total),
            )
            .await;
            emit(bus, Event::pipeline_completed(execution, &results)).await;
        }
        Ok((outcome(total, total, json!({"records": total})), 1))
    }

    /// The report, from every shard's statistics (this export's own row is not finished yet).
    async fn report(&self, deps: &WorkerDeps, exported: u64) -> Result<Value, HandlerError> {
        let runs = db::pipelines::stage_runs(&deps.db.conn, self.execution.id).await?;
        let mut summaries = Vec::new();
        for stage in Stage::ALL {
            let of_stage: Vec<_> = runs.iter().filter(|r| r.stage == stage.as_str()).collect();
            let started = of_stage.iter().filter_map(|r| r.started_at).min();
            let finished = of_stage.iter().filter_map(|r| r.finished_at).max();
            let mut s = StageSummary {
                stage: *stage,
                records_in: of_stage.iter().map(|r| r.records_in as u64).sum(),
                records_out: of_stage.iter().map(|r| r.records_out as u64).sum(),
                duration_ms: started
                    .zip(finished)
                    .map(|(a, b)| (b - a).num_milliseconds()),
                stats: of_stage.iter().filter_map(|r| r.stats.clone()).collect(),
            };
            if *stage == Stage::Export {
                s.records_in = exported;
                s.records_out = exported;
                s.duration_ms = started.map(|a| (chrono::Utc::now() - a).num_milliseconds());
            }
            summaries.push(s);
        }
        Ok(stages::export::build_report(&summaries))
    }
}

fn outcome(records_in: u64, records_out: u64, stats: Value) -> ShardOutcome {
    ShardOutcome {
        records_in,
        records_out,
        stats,
    }
}

fn count_lines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|b| **b == b'\n').count() as u64
}
