//! Recurring schedules: validating and storing them, and the firing loop every replica runs.
//!
//! Each tick a replica reads the schedules due, decides per schedule which occurrences fire
//! (catch-up policy) or are skipped (overlap policy), and claims them with a compare-and-set on
//! `next_run_at` that records the occurrences in the same transaction; only the replica whose
//! update matched goes on to create the tasks or executions. Those are created through the task
//! and pipeline services, as the schedule's creator, with an idempotency key derived from the
//! schedule and the occurrence: a replica that stopped between the claim and the creation
//! leaves a `firing` run that any replica re-drives later without creating a second task.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use mcp_shared::{
    auth::{Permission, Role},
    db::{self, schedules as store},
    domain::{
        pipeline::PipelineStatus,
        schedule::{
            CatchUpPolicy, MAX_CATCH_UP, Outcome, OverlapPolicy, Spec, SpecError, TemplateKind,
            to_fire,
        },
        task::{Priority, TaskStatus},
    },
    entities::{schedule_runs, schedules::Model},
    shutdown::spawn_every,
};
use poem_openapi::Object;
use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    error::ApiError,
    payload::from_value,
    principal::Principal,
    services::{
        pipelines::{self, ExecuteRequest},
        tasks::{self, Created, NewTask},
    },
    state::AppState,
    views::CreateTaskRequest,
};

/// How often each replica looks for due schedules.
const TICK: Duration = Duration::from_millis(500);
/// Most schedules one tick fires.
const PER_TICK: u64 = 100;
/// A run still `firing` this long after its claim lost its replica and is re-driven.
const STALLED_AFTER: chrono::Duration = chrono::Duration::seconds(30);
/// How many upcoming occurrences a schedule shows.
pub const UPCOMING: usize = 5;
const MAX_NAME: usize = 200;

impl From<SpecError> for ApiError {
    fn from(e: SpecError) -> Self {
        ApiError::invalid_field(e.field, e.message)
    }
}

/// A schedule as `POST /schedules` describes it, before it is checked.
#[derive(Object, Deserialize)]
pub struct CreateScheduleRequest {
    /// 1–200 characters.
    pub name: String,
    /// A cron expression: 5 fields (minute hour day-of-month month day-of-week), or 6 with
    /// seconds first. Either this or `interval_seconds`.
    pub cron: Option<String>,
    /// Every this many seconds (1 to a year), counted from `start_at`.
    pub interval_seconds: Option<u32>,
    /// No occurrence before this time; default now.
    pub start_at: Option<DateTime<Utc>>,
    /// IANA time zone the cron expression is read in (daylight-saving changes included).
    /// Default `UTC`.
    pub time_zone: Option<String>,
    /// Start a task at each occurrence: the body of `POST /tasks`, without `idempotency_key`,
    /// `run_at` and `sensitive_fields`. Either this or `pipeline`.
    pub task: Option<CreateTaskRequest>,
    /// Start a pipeline execution at each occurrence: the body of `POST /pipeline/agent-execute`
    /// over a stored `dataset_id`, without `records`, `idempotency_key` and `wait`.
    pub pipeline: Option<ExecuteRequest>,
    /// When the previous occurrence's task or execution has not finished: `skip` this
    /// occurrence (default), `queue` it anyway (it waits in its queue), or `cancel_previous`.
    pub overlap_policy: Option<OverlapPolicy>,
    /// Occurrences that fell while the service was down: `skip` them, run `one` (default), or
    /// run `all` of them (the latest 10 at most).
    pub catch_up_policy: Option<CatchUpPolicy>,
    /// Create it paused.
    pub paused: Option<bool>,
}

/// What `PATCH /schedules/{id}` may change; the template stays (delete and create to change it).
#[derive(Object, Deserialize, Default)]
pub struct UpdateScheduleRequest {
    pub name: Option<String>,
    /// Replaces the timing (and clears `interval_seconds`).
    pub cron: Option<String>,
    /// Replaces the timing (and clears `cron`).
    pub interval_seconds: Option<u32>,
    pub start_at: Option<DateTime<Utc>>,
    pub time_zone: Option<String>,
    pub overlap_policy: Option<OverlapPolicy>,
    pub catch_up_policy: Option<CatchUpPolicy>,
    /// `true` pauses; `false` resumes, counting from now (occurrences that fell while paused
    /// are not run).
    pub paused: Option<bool>,
}

/// The schedule's timing, read from its row.
pub fn spec(row: &Model) -> Result<Spec, SpecError> {
    match (&row.cron, row.interval_seconds) {
        (Some(expr), _) => Spec::cron(expr, &row.time_zone),
        (None, Some(s)) => Spec::interval(s.max(0) as u32, row.start_at, &row.time_zone),
        (None, None) => Err(SpecError {
            field: "cron",
            message: "the schedule has neither cron nor interval_seconds".into(),
        }),
    }
}

/// The occurrences to come, none while paused.
pub fn upcoming(row: &Model, n: usize) -> Vec<DateTime<Utc>> {
    let (Some(next), Ok(spec)) = (row.next_run_at, spec(row)) else {
        return Vec::new();
    };
    let mut times = vec![next];
    times.extend(spec.upcoming(next, n.saturating_sub(1)));
    times
}

/// The first occurrence not before `start_at` and after `now`.
fn first_run(spec: &Spec, start_at: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let from = now.max(start_at - chrono::Duration::milliseconds(1));
    spec.next_after(from)
}

fn check_timing(cron: &Option<String>, interval_seconds: Option<u32>) -> Result<(), ApiError> {
    match (cron, interval_seconds) {
        (Some(_), Some(_)) => Err(ApiError::invalid_field(
            "interval_seconds",
            "send either cron or interval_seconds, not both",
        )),
        (None, None) => Err(ApiError::invalid_field(
            "cron",
            "send a cron expression (cron) or an interval (interval_seconds)",
        )),
        _ => Ok(()),
    }
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.len() > MAX_NAME {
        return Err(ApiError::invalid_field(
            "name",
            format!("name must be 1-{MAX_NAME} characters"),
        ));
    }
    Ok(())
}

/// A task template: what `POST /tasks` accepts, less what the schedule decides itself.
fn check_task_template(t: &CreateTaskRequest) -> Result<(), ApiError> {
    let at = |e: ApiError| e.within("task");
    for (set, field, why) in [
        (
            t.idempotency_key.is_some(),
            "idempotency_key",
            "each occurrence gets its own key, derived from the schedule and the occurrence time",
        ),
        (
            t.run_at.is_some(),
            "run_at",
            "the schedule decides when its tasks run",
        ),
        (
            t.sensitive_fields.as_ref().is_some_and(|f| !f.is_empty()),
            "sensitive_fields",
            "a schedule keeps its template to reuse it, so it cannot hold sealed values; pass secrets by reference",
        ),
    ] {
        if set {
            return Err(at(ApiError::invalid_field(
                field,
                format!("{field} is not accepted in a schedule's template: {why}"),
            )));
        }
    }
    NewTask::from_request(t.clone(), Priority::Medium)
        .validate()
        .map_err(at)
}

/// A pipeline template: what `POST /pipeline/agent-execute` accepts, over a stored dataset.
async fn check_pipeline_template(state: &AppState, p: &ExecuteRequest) -> Result<(), ApiError> {
    let at = |e: ApiError| e.within("pipeline");
    for (set, field, why) in [
        (
            p.records.is_some(),
            "records",
            "inline records would be kept in the schedule; upload them with POST /datasets and send dataset_id",
        ),
        (
            p.idempotency_key.is_some(),
            "idempotency_key",
            "each occurrence gets its own key, derived from the schedule and the occurrence time",
        ),
        (
            p.wait.is_some() || p.wait_timeout_ms.is_some(),
            "wait",
            "nobody waits on a scheduled execution",
        ),
    ] {
        if set {
            return Err(at(ApiError::invalid_field(
                field,
                format!("{field} is not accepted in a schedule's template: {why}"),
            )));
        }
    }
    let options = pipelines::validate(p).map_err(at)?;
    pipelines::check_dataset(state, p, &options)
        .await
        .map_err(at)
}

/// Checks a new schedule completely, then stores it.
pub async fn create(
    state: &AppState,
    draft: CreateScheduleRequest,
    creator: &Principal,
) -> Result<Model, ApiError> {
    check_name(&draft.name)?;
    check_timing(&draft.cron, draft.interval_seconds)?;
    let (kind, template) = match (draft.task, draft.pipeline) {
        (Some(t), None) => {
            creator.require(Permission::TaskCreate)?;
            check_task_template(&t)?;
            (TemplateKind::Task, serde_json::to_value(t))
        }
        (None, Some(p)) => {
            creator.require(Permission::PipelineExecute)?;
            check_pipeline_template(state, &p).await?;
            (TemplateKind::Pipeline, serde_json::to_value(p))
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_field(
                "pipeline",
                "send either a task or a pipeline template, not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::invalid_field(
                "task",
                "send a task template (task) or a pipeline template (pipeline)",
            ));
        }
    };
    let template = template.map_err(ApiError::internal)?;
    // Whole seconds: occurrence times are compared for equality in the claim, and databases
    // keep sub-second precision differently.
    let now = Utc::now().trunc_subsecs(0);
    let mut row = Model {
        id: Uuid::now_v7(),
        name: draft.name,
        cron: draft.cron,
        interval_seconds: draft.interval_seconds.map(|s| s as i32),
        start_at: draft.start_at.unwrap_or(now).trunc_subsecs(0),
        time_zone: draft.time_zone.unwrap_or_else(|| "UTC".into()),
        template_kind: kind.as_str().into(),
        template,
        overlap_policy: draft
            .overlap_policy
            .unwrap_or(OverlapPolicy::Skip)
            .as_str()
            .into(),
        catch_up_policy: draft
            .catch_up_policy
            .unwrap_or(CatchUpPolicy::One)
            .as_str()
            .into(),
        paused: draft.paused.unwrap_or(false),
        next_run_at: None,
        creator_id: creator.id,
        created_by: creator.actor(),
        created_at: now,
        updated_at: now,
    };
    let spec = spec(&row)?;
    if !row.paused {
        row.next_run_at = first_run(&spec, row.start_at, now);
    }
    Ok(store::insert(&state.db.conn, row).await?)
}

pub async fn find(state: &AppState, id: Uuid) -> Result<Model, ApiError> {
    store::find(&state.db.conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found("schedule"))
}

pub async fn list(
    state: &AppState,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Model>, ApiError> {
    Ok(store::list(&state.db.conn, after, limit).await?)
}

/// Applies a PATCH. A change of timing or a resume starts counting from now: occurrences
/// that fell while paused are not caught up.
pub async fn update(
    state: &AppState,
    id: Uuid,
    c: UpdateScheduleRequest,
) -> Result<Model, ApiError> {
    let mut row = find(state, id).await?;
    if let Some(name) = c.name {
        check_name(&name)?;
        row.name = name;
    }
    let retimed = c.cron.is_some()
        || c.interval_seconds.is_some()
        || c.start_at.is_some()
        || c.time_zone.is_some();
    match (c.cron, c.interval_seconds) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_field(
                "interval_seconds",
                "send either cron or interval_seconds, not both",
            ));
        }
        (Some(expr), None) => {
            row.cron = Some(expr);
            row.interval_seconds = None;
        }
        (None, Some(s)) => {
            row.cron = None;
            row.interval_seconds = Some(s as i32);
        }
        (None, None) => {}
    }
    if let Some(at) = c.start_at {
        row.start_at = at.trunc_subsecs(0);
    }
    if let Some(tz) = c.time_zone {
        row.time_zone = tz;
    }
    if let Some(p) = c.overlap_policy {
        row.overlap_policy = p.as_str().into();
    }
    if let Some(p) = c.catch_up_policy {
        row.catch_up_policy = p.as_str().into();
    }
    let resumed = c.paused == Some(false) && row.paused;
    if let Some(paused) = c.paused {
        row.paused = paused;
    }
    let spec = spec(&row)?;
    let now = Utc::now().trunc_subsecs(0);
    if row.paused {
        row.next_run_at = None;
    } else if retimed || resumed || row.next_run_at.is_none() {
        row.next_run_at = first_run(&spec, row.start_at, now);
    }
    row.updated_at = now;
    Ok(store::update(&state.db.conn, row).await?)
}

pub async fn delete(state: &AppState, id: Uuid) -> Result<(), ApiError> {
    if store::delete(&state.db.conn, id).await? {
        Ok(())
    } else {
        Err(ApiError::not_found("schedule"))
    }
}

pub async fn runs(
    state: &AppState,
    id: Uuid,
    before: Option<DateTime<Utc>>,
    limit: u64,
) -> Result<Vec<schedule_runs::Model>, ApiError> {
    find(state, id).await?;
    Ok(store::runs(&state.db.conn, id, before, limit).await?)
}

/// Starts the firing loop on this replica.
pub fn spawn(state: AppState, shutdown: CancellationToken) {
    spawn_every(TICK, shutdown, move || {
        let state = state.clone();
        async move {
            if let Err(e) = tick(&state).await {
                tracing::warn!(error = %e, "schedule tick failed; retrying next tick");
            }
        }
    });
}

/// One pass: fires what is due, then re-drives runs whose replica stopped mid-way.
pub async fn tick(state: &AppState) -> Result<(), ApiError> {
    let now = Utc::now();
    for row in store::due(&state.db.conn, now, PER_TICK).await? {
        if let Err(e) = fire_due(state, &row, now).await {
            tracing::warn!(schedule_id = %row.id, error = %e, "firing a schedule failed");
        }
    }
    for run in store::stalled(&state.db.conn, now - STALLED_AFTER, PER_TICK).await? {
        if let Some(row) = store::find(&state.db.conn, run.schedule_id).await? {
            start(state, &row, &run).await?;
        }
    }
    Ok(())
}

async fn fire_due(state: &AppState, row: &Model, now: DateTime<Utc>) -> Result<(), ApiError> {
    let Some(expected) = row.next_run_at else {
        return Ok(());
    };
    let spec = spec(row)?;
    let (due, _dropped) = spec.due(expected, now, MAX_CATCH_UP);
    let policy = CatchUpPolicy::parse(&row.catch_up_policy).unwrap_or(CatchUpPolicy::One);
    let firing = to_fire(&due, now, policy);
    let next = due.last().and_then(|last| spec.next_after(*last));
    let overlap = OverlapPolicy::parse(&row.overlap_policy).unwrap_or(OverlapPolicy::Skip);
    let previous_running = match firing.first() {
        Some(first) if overlap != OverlapPolicy::Queue => still_running(state, row, *first).await?,
        _ => None,
    };
    let fire_outcome = match previous_running {
        Some(_) if overlap == OverlapPolicy::Skip => Outcome::Skipped,
        _ => Outcome::Firing,
    };
    let occurrences: Vec<store::Occurrence> = due
        .iter()
        .map(|at| store::Occurrence {
            at: *at,
            outcome: if firing.contains(at) {
                fire_outcome
            } else {
                Outcome::Missed
            },
        })
        .collect();
    let Some(recorded) =
        store::claim(&state.db.conn, row.id, expected, next, &occurrences, now).await?
    else {
        return Ok(()); // another replica, or a PATCH, moved it first
    };
    if let (Some(previous), OverlapPolicy::CancelPrevious) = (previous_running, overlap) {
        cancel(state, row, &previous).await;
    }
    for run in recorded
        .iter()
        .filter(|r| r.outcome == Outcome::Firing.as_str())
    {
        start(state, row, run).await?;
    }
    Ok(())
}

/// The previous occurrence's run, when what it started has not finished.
async fn still_running(
    state: &AppState,
    row: &Model,
    before: DateTime<Utc>,
) -> Result<Option<schedule_runs::Model>, ApiError> {
    let Some(prev) = store::last_fired(&state.db.conn, row.id, before).await? else {
        return Ok(None);
    };
    let finished = if let Some(id) = prev.task_id {
        match db::tasks::find(&state.db.conn, id).await? {
            Some(t) => TaskStatus::parse(&t.status).is_none_or(TaskStatus::is_terminal),
            None => true,
        }
    } else if let Some(id) = prev.execution_id {
        match db::pipelines::find(&state.db.conn, id).await? {
            Some(e) => PipelineStatus::parse(&e.status).is_none_or(PipelineStatus::is_terminal),
            None => true,
        }
    } else {
        true
    };
    Ok((!finished).then_some(prev))
}

async fn cancel(state: &AppState, row: &Model, previous: &schedule_runs::Model) {
    let result = match (previous.task_id, previous.execution_id) {
        (Some(id), _) => tasks::cancel(state, id).await.map(drop),
        (None, Some(id)) => pipelines::cancel(state, id).await.map(drop),
        (None, None) => Ok(()),
    };
    // It may have finished meanwhile; the new occurrence starts either way.
    if let Err(e) = result {
        tracing::info!(schedule_id = %row.id, error = %e, "previous occurrence not cancelled");
    }
}

/// The idempotency key of one occurrence's task or execution.
fn occurrence_key(schedule_id: Uuid, at: DateTime<Utc>) -> String {
    format!("schedule:{schedule_id}:{}", at.timestamp())
}

/// Creates the occurrence's task or execution as the schedule's creator, and settles its run.
async fn start(state: &AppState, row: &Model, run: &schedule_runs::Model) -> Result<(), ApiError> {
    let settled = match create_for(state, row, run).await {
        Ok(Began::Task(id)) => {
            store::settle(&state.db.conn, run.id, Outcome::Fired, Some(id), None, None).await?
        }
        Ok(Began::Execution(id)) => {
            store::settle(&state.db.conn, run.id, Outcome::Fired, None, Some(id), None).await?
        }
        Err(e) if e.status.is_server_error() => return Err(e),
        Err(e) => {
            store::settle(
                &state.db.conn,
                run.id,
                Outcome::Failed,
                None,
                None,
                Some(format!("{}: {}", e.code, e.message)),
            )
            .await?
        }
    };
    if !settled {
        tracing::debug!(run_id = %run.id, "run already settled elsewhere");
    }
    Ok(())
}

/// What an occurrence started.
enum Began {
    Task(Uuid),
    Execution(Uuid),
}

/// The creator as they are now: a schedule stops starting work once its creator is removed,
/// disabled, or no longer allowed to.
async fn creator(state: &AppState, row: &Model, needs: Permission) -> Result<String, ApiError> {
    let user = db::users::find(&state.db.conn, row.creator_id)
        .await?
        .filter(|u| !u.disabled)
        .ok_or_else(|| {
            ApiError::forbidden("the schedule's creator no longer exists or is disabled")
        })?;
    let role = Role::parse(&user.role)
        .ok_or_else(|| ApiError::forbidden("the schedule's creator has no known role"))?;
    let principal = Principal {
        id: user.id,
        name: user.username,
        role,
        token_id: None,
        token_expires_at: None,
        token_family: None,
    };
    principal.require(Permission::ScheduleManage)?;
    principal.require(needs)?;
    Ok(principal.actor())
}

async fn create_for(
    state: &AppState,
    row: &Model,
    run: &schedule_runs::Model,
) -> Result<Began, ApiError> {
    let key = occurrence_key(row.id, run.occurrence_at);
    let template: Value = row.template.clone();
    match TemplateKind::parse(&row.template_kind) {
        Some(TemplateKind::Task) => {
            let actor = creator(state, row, Permission::TaskCreate).await?;
            let mut req: CreateTaskRequest = from_value(template)?;
            req.idempotency_key = Some(key);
            let new = NewTask::from_request(req, Priority::Medium);
            let task = match tasks::create(state, new, &actor).await? {
                Created::New(t) | Created::Existing(t) => t,
            };
            Ok(Began::Task(task.id))
        }
        Some(TemplateKind::Pipeline) => {
            let actor = creator(state, row, Permission::PipelineExecute).await?;
            let mut req: ExecuteRequest = from_value(template)?;
            req.idempotency_key = Some(key);
            let started = pipelines::submit(state, &req, Priority::High, &actor).await?;
            Ok(Began::Execution(match started {
                pipelines::Started::New(e) | pipelines::Started::Existing(e) => e.id,
            }))
        }
        None => Err(ApiError::internal("unknown schedule template kind")),
    }
}
