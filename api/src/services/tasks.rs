//! Tasks as users see them: creating one or a batch (validation, idempotency, the row, the queue
//! push and the event), finding and listing, cancelling, re-driving and assigning to an agent.
//! What an agent does with a task it holds is the run protocol's (the `runs` service); every
//! transition is the lifecycle's ([`mcp_shared::lifecycle`]).

use chrono::{DateTime, Utc};
pub use mcp_shared::db::tasks::ListFilter;
use mcp_shared::{
    bus::emit,
    crypto,
    db::{self, tasks},
    domain::{
        agent::valid_capability,
        builtin,
        event::Event,
        task::{Priority, TaskStatus, TaskType},
    },
    entities::tasks::Model,
    lifecycle::Cancel,
    queue::{Job, QueueName, capability_key},
};
use sea_orm::Set;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    error::{ApiError, ErrorCode},
    state::AppState,
    views::CreateTaskRequest,
};

/// A validated request to create one task.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub task_type: TaskType,
    pub priority: Priority,
    pub required_capabilities: Vec<String>,
    pub payload: Value,
    pub idempotency_key: Option<String>,
    pub run_at: Option<DateTime<Utc>>,
    pub timeout_seconds: Option<u32>,
    pub max_attempts: Option<u32>,
    /// JSON Pointers to payload values sealed at rest.
    pub sensitive_fields: Vec<String>,
}

/// Whether [`create`] made a new task or found the one a repeated request made.
pub enum Created {
    New(Model),
    Existing(Model),
}

pub const MAX_ATTEMPTS_LIMIT: u32 = 100;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
const MAX_TIMEOUT_SECONDS: u32 = 7 * 24 * 3600;
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

impl NewTask {
    /// The task a client's request asks for, with the priority it gets when none is named.
    pub fn from_request(r: CreateTaskRequest, default_priority: Priority) -> Self {
        Self {
            task_type: r.task_type,
            priority: r.priority.unwrap_or(default_priority),
            required_capabilities: r.required_capabilities.unwrap_or_default(),
            payload: r.payload.0,
            idempotency_key: r.idempotency_key,
            run_at: r.run_at,
            timeout_seconds: r.timeout_seconds,
            max_attempts: r.max_attempts,
            sensitive_fields: r.sensitive_fields.unwrap_or_default(),
        }
    }

    pub fn validate(&self) -> Result<(), ApiError> {
        if mcp_shared::sealing::contains_marker(&self.payload) {
            return Err(ApiError::invalid_field(
                "payload",
                format!(
                    "`{}` is reserved for sealed values: name the field in sensitive_fields instead",
                    mcp_shared::sealing::MARKER
                ),
            ));
        }
        if self.sensitive_fields.len() > mcp_shared::sealing::MAX_FIELDS {
            return Err(ApiError::invalid_field(
                "sensitive_fields",
                format!(
                    "at most {} sensitive fields per task",
                    mcp_shared::sealing::MAX_FIELDS
                ),
            ));
        }
        if let Some(bad) = self
            .sensitive_fields
            .iter()
            .find(|p| !p.starts_with('/') || self.payload.pointer(p).is_none())
        {
            return Err(ApiError::invalid_field(
                "sensitive_fields",
                format!("{bad:?} is not a JSON Pointer (`/a/b`) to a value in the payload"),
            ));
        }
        if let Some(m) = self.max_attempts
            && !(1..=MAX_ATTEMPTS_LIMIT).contains(&m)
        {
            return Err(ApiError::invalid_field(
                "max_attempts",
                format!("max_attempts must be between 1 and {MAX_ATTEMPTS_LIMIT}"),
            ));
        }
        if let Some(t) = self.timeout_seconds
            && !(1..=MAX_TIMEOUT_SECONDS).contains(&t)
        {
            return Err(ApiError::invalid_field(
                "timeout_seconds",
                format!("timeout_seconds must be between 1 and {MAX_TIMEOUT_SECONDS}"),
            ));
        }
        if let Some(bad) = self
            .required_capabilities
            .iter()
            .find(|c| !valid_capability(c))
        {
            return Err(ApiError::invalid_field(
                "required_capabilities",
                format!("capability {bad:?} is not a valid name (lowercase letters, digits, '_')"),
            ));
        }
        if self.required_capabilities.len() > 1
            && let Some(stage) = self
                .required_capabilities
                .iter()
                .find(|c| !mcp_shared::queue::combinable(c))
        {
            return Err(ApiError::invalid_field(
                "required_capabilities",
                format!(
                    "{stage:?} is a pipeline stage; a task needing it may not need other capabilities"
                ),
            ));
        }
        if self.required_capabilities.len() > mcp_shared::queue::MAX_COMBINED {
            return Err(ApiError::invalid_field(
                "required_capabilities",
                format!(
                    "a task may require at most {} capabilities",
                    mcp_shared::queue::MAX_COMBINED
                ),
            ));
        }
        if let Some(k) = &self.idempotency_key
            && k.starts_with(mcp_shared::db::pipelines::SHARD_KEY_PREFIX)
        {
            return Err(ApiError::invalid_field(
                "idempotency_key",
                format!(
                    "idempotency keys starting with {:?} are reserved for pipeline shards",
                    mcp_shared::db::pipelines::SHARD_KEY_PREFIX
                ),
            ));
        }
        if let Some(k) = &self.idempotency_key
            && (k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY)
        {
            return Err(ApiError::invalid_field(
                "idempotency_key",
                format!("idempotency_key must be 1-{MAX_IDEMPOTENCY_KEY} characters"),
            ));
        }
        if !self.payload.is_object() {
            return Err(ApiError::invalid_field(
                "payload",
                "payload must be a JSON object",
            ));
        }
        // A typed task that a built-in handler will run must carry what the handler needs.
        if builtin::runs_builtin(self.task_type, &self.required_capabilities) {
            builtin::parse(self.task_type, &self.payload)
                .map_err(|e| ApiError::invalid_field(&e.field, e.message))?;
        }
        Ok(())
    }

    /// The queue: the required capabilities (or the type's default) at the task's tier. Several
    /// capabilities make a combined queue that only holders of all of them serve.
    pub fn queue(&self) -> QueueName {
        if self.required_capabilities.is_empty() {
            return QueueName::new(self.task_type.default_capability(), self.priority);
        }
        QueueName::new(capability_key(&self.required_capabilities), self.priority)
    }

    /// Identifies the request's content, to tell a replay from a different body under one key;
    /// only a task with a key needs it.
    fn fingerprint(&self, state: &AppState) -> Option<String> {
        self.idempotency_key.as_ref()?;
        Some(self.content_hash(state))
    }

    fn content_hash(&self, state: &AppState) -> String {
        let mut canonical = json!({
            "type": self.task_type,
            "priority": self.priority,
            "required_capabilities": self.required_capabilities,
            "payload": self.payload,
            "run_at": self.run_at,
            "timeout_seconds": self.timeout_seconds,
            "max_attempts": self.max_attempts,
        });
        if self.sensitive_fields.is_empty() {
            // Unkeyed, as before sensitive fields existed, so stored fingerprints stay valid.
            crypto::sha256_hex(canonical.to_string().as_bytes())
        } else {
            canonical["sensitive_fields"] = json!(self.sensitive_fields);
            super::keyed_fingerprint(state, &canonical)
        }
    }
}

pub async fn create(state: &AppState, new: NewTask, created_by: &str) -> Result<Created, ApiError> {
    new.validate()?;
    let fingerprint = new.fingerprint(state);
    if let Some(key) = &new.idempotency_key
        && let Some(existing) = tasks::find_by_idempotency_key(&state.db.conn, key).await?
    {
        return replay(existing, fingerprint.as_deref(), created_by);
    }

    let now = Utc::now();
    let queue = new.queue();
    let scheduled = new.run_at.is_some_and(|at| at > now);
    let mut row = tasks::new_row(Uuid::now_v7(), now);
    fill_row(state, &mut row, &new, fingerprint.clone(), created_by, now)?;
    // Fast path: push now when the queue has room; otherwise the dispatcher pushes it later.
    let push_now = !scheduled && state.dispatcher.reserve(&queue.to_string()).await;
    row.enqueued_at = Set(push_now.then_some(now));

    let task = match tasks::insert(&state.db.conn, row).await {
        Ok(t) => t,
        Err(mcp_shared::Error::Database(e)) if db::users::is_unique_violation(&e) => {
            // Two requests with the same key raced; the other one won.
            let key = new.idempotency_key.as_deref().unwrap_or_default();
            let existing = tasks::find_by_idempotency_key(&state.db.conn, key)
                .await?
                .ok_or_else(|| ApiError::internal("unique violation without an existing task"))?;
            return replay(existing, fingerprint.as_deref(), created_by);
        }
        Err(e) => return Err(e.into()),
    };

    if push_now && let Err(e) = state.queue.push(&queue, vec![Job::now(task.id)]).await {
        // The task is stored; the dispatcher owes its push and retries until the queue is back.
        tracing::warn!(task_id = %task.id, error = %e, "queue push failed; the dispatcher will retry");
        tasks::dispatch::mark_enqueued(&state.db.conn, &[task.id], None).await?;
        state.dispatcher.wake();
    }

    state.lifecycle.created(&task).await;
    Ok(Created::New(task))
}

/// The task an idempotency key already names: the same task again when the same principal sends
/// the same body. Another principal's key is refused whatever the body (and without naming the
/// task), so a replay cannot be used to test guesses of someone else's sealed values.
fn replay(
    existing: Model,
    fingerprint: Option<&str>,
    created_by: &str,
) -> Result<Created, ApiError> {
    if existing.created_by.as_deref() != Some(created_by) {
        return Err(ApiError::new(
            ErrorCode::IdempotencyKeyReused,
            "this idempotency_key is already in use; choose another",
        ));
    }
    if existing.request_hash.as_deref() == fingerprint {
        Ok(Created::Existing(existing))
    } else {
        Err(ApiError::new(
            ErrorCode::IdempotencyKeyReused,
            "this idempotency_key was used with a different request body",
        )
        .with_details(json!({ "task_id": existing.id })))
    }
}

/// Most tasks one batch may carry.
pub const MAX_BATCH: usize = 10_000;

/// One rejected batch item.
pub struct Rejected {
    pub index: usize,
    pub error: ApiError,
}

/// Creates many tasks: invalid items are rejected by index, the rest are inserted in chunks. As
/// many as each queue has room for are pushed right after the commit; the dispatcher pushes the
/// rest as room frees up (it respects each queue's bound, so any batch size is safe).
pub async fn create_batch(
    state: &AppState,
    items: Vec<Result<NewTask, ApiError>>,
    created_by: &str,
) -> Result<(Vec<Uuid>, Vec<Rejected>), ApiError> {
    let now = Utc::now();
    let mut rejected = Vec::new();
    let mut accepted: Vec<(usize, NewTask, Option<String>)> = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match item.and_then(|t| t.validate().map(|()| t)) {
            Ok(t) => {
                let fp = t.fingerprint(state);
                accepted.push((index, t, fp));
            }
            Err(error) => rejected.push(Rejected { index, error }),
        }
    }
    // Idempotency keys: replays return the existing task; reuse with another body is rejected.
    let keys: Vec<String> = accepted
        .iter()
        .filter_map(|(_, t, _)| t.idempotency_key.clone())
        .collect();
    let mut existing = std::collections::HashMap::new();
    for chunk in keys.chunks(500) {
        for t in tasks::find_by_idempotency_keys(&state.db.conn, chunk).await? {
            if let Some(k) = t.idempotency_key.clone() {
                existing.insert(k, t);
            }
        }
    }
    let mut seen_keys = std::collections::HashSet::new();
    // Per queue, the tasks due now: (id, index of the row).
    let mut due: std::collections::HashMap<QueueName, Vec<(Uuid, usize)>> = Default::default();
    let mut ids = Vec::with_capacity(accepted.len());
    let mut rows = Vec::with_capacity(accepted.len());
    let mut created = Vec::new();
    for (index, t, fp) in accepted {
        if let Some(key) = &t.idempotency_key {
            if let Some(prev) = existing.get(key) {
                match replay(prev.clone(), fp.as_deref(), created_by) {
                    Ok(_) => ids.push(prev.id),
                    Err(error) => rejected.push(Rejected { index, error }),
                }
                continue;
            }
            if !seen_keys.insert(key.clone()) {
                rejected.push(Rejected {
                    index,
                    error: ApiError::invalid_field(
                        "idempotency_key",
                        "this idempotency_key appears twice in the batch",
                    ),
                });
                continue;
            }
        }
        let id = Uuid::now_v7();
        let mut row = tasks::new_row(id, now);
        fill_row(state, &mut row, &t, fp, created_by, now)?;
        if t.run_at.is_none_or(|at| at <= now) {
            due.entry(t.queue()).or_default().push((id, rows.len()));
        }
        ids.push(id);
        created.push((id, t.task_type, t.priority));
        rows.push(row);
    }
    rejected.sort_by_key(|r| r.index);
    // Pushed right after the commit, as far as each queue has room: marked so in the insert.
    let mut pushes = Vec::new();
    for (queue, tasks_due) in due {
        let room = state
            .dispatcher
            .reserve_up_to(&queue.to_string(), tasks_due.len() as i64)
            .await as usize;
        for (_, row) in &tasks_due[..room] {
            rows[*row].enqueued_at = Set(Some(now));
        }
        if room > 0 {
            pushes.push((queue, tasks_due[..room].iter().map(|(id, _)| *id).collect()));
        }
    }
    // All or nothing: a retry of a half-inserted batch would duplicate items without keys.
    let txn = sea_orm::TransactionTrait::begin(&state.db.conn)
        .await
        .map_err(mcp_shared::Error::from)?;
    tasks::insert_many(&txn, rows).await?;
    txn.commit().await.map_err(mcp_shared::Error::from)?;
    push_created(state, pushes).await?;
    // One event per task, queued for the bus off the request path.
    let bus = state.bus.clone();
    tokio::spawn(async move {
        for (id, task_type, priority) in created {
            emit(
                bus.as_ref(),
                Event::task_created_in_batch(id, task_type.as_str(), priority),
            )
            .await;
        }
    });
    Ok((ids, rejected))
}

/// Pushes the jobs of tasks just created; a push that fails leaves its tasks owed to the
/// dispatcher, which retries until the queue backend is back.
async fn push_created(
    state: &AppState,
    pushes: Vec<(QueueName, Vec<Uuid>)>,
) -> Result<(), ApiError> {
    for (queue, ids) in pushes {
        for chunk in ids.chunks(500) {
            let jobs = chunk.iter().map(|id| Job::now(*id)).collect();
            if let Err(e) = state.queue.push(&queue, jobs).await {
                tracing::warn!(queue = %queue, error = %e, "queue push failed; the dispatcher will retry");
                tasks::dispatch::mark_enqueued(&state.db.conn, chunk, None).await?;
            }
        }
    }
    state.dispatcher.wake();
    Ok(())
}

/// Sets the row's fields from a validated request.
fn fill_row(
    state: &AppState,
    row: &mut mcp_shared::entities::tasks::ActiveModel,
    new: &NewTask,
    fingerprint: Option<String>,
    created_by: &str,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    row.task_type = Set(new.task_type.as_str().into());
    row.priority = Set(new.priority.as_str().into());
    row.queue = Set(new.queue().to_string());
    row.required_capabilities = Set(json!(new.required_capabilities));
    let mut payload = new.payload.clone();
    if !new.sensitive_fields.is_empty() {
        // Pointers were validated, so sealing can only fail inside the cipher.
        if let Err(e) =
            mcp_shared::sealing::seal(&mut payload, &new.sensitive_fields, &state.cipher)
        {
            tracing::error!(error = %e, "sealing sensitive fields failed");
            payload = json!({});
        }
        row.sealed_key = Set(Some(state.cipher.active_key_id().to_string()));
    }
    row.payload = Set(payload);
    row.max_attempts = Set(new.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS) as i32);
    row.timeout_seconds = Set(new
        .timeout_seconds
        .unwrap_or(state.settings.task_execution_timeout.as_secs() as u32)
        as i32);
    row.idempotency_key = Set(new.idempotency_key.clone());
    row.request_hash = Set(fingerprint);
    row.run_at = Set(new.run_at);
    row.created_by = Set(Some(created_by.to_string()));
    if new.run_at.is_some_and(|at| at > now) {
        row.status = Set(TaskStatus::Scheduled.as_str().into());
    }
    Ok(())
}

/// 409 naming the current state.
pub fn illegal(task: &Model, action: &str) -> ApiError {
    ApiError::new(
        ErrorCode::IllegalTransition,
        format!("cannot {action} a task that is {}", task.status),
    )
    .with_details(json!({"current_status": task.status}))
}

pub async fn find(state: &AppState, id: Uuid) -> Result<Model, ApiError> {
    tasks::find(&state.db.conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found("task"))
}

/// A page of tasks, newest first.
pub async fn list(state: &AppState, filter: &ListFilter) -> Result<Vec<Model>, ApiError> {
    Ok(tasks::list(&state.db.conn, filter).await?)
}

/// Cancels: at once when not running; cooperatively (at the next progress report) when running.
pub async fn cancel(state: &AppState, id: Uuid) -> Result<Model, ApiError> {
    match state.lifecycle.cancel(id).await? {
        Cancel::Cancelled(t) | Cancel::Requested(t) => Ok(t),
        Cancel::AlreadyFinished(t) => Err(illegal(&t, "cancel")),
    }
}

/// Re-drives a dead or cancelled task.
pub async fn retry(state: &AppState, id: Uuid) -> Result<Model, ApiError> {
    let before = find(state, id).await?;
    if before.purged_at.is_some() {
        return Err(ApiError::new(
            ErrorCode::PayloadPurged,
            "retention has purged this task's payload; submit it again instead",
        )
        .with_details(json!({"current_status": before.status})));
    }
    let Some(retried) = state.lifecycle.retry(id).await? else {
        return Err(illegal(&before, "retry"));
    };
    state.dispatcher.wake();
    Ok(retried)
}

/// What an assignment asks for.
#[derive(Debug, Default)]
pub struct Criteria {
    pub capabilities: Option<Vec<String>>,
    pub agent_type: Option<mcp_shared::domain::agent::AgentType>,
    pub agent_id: Option<Uuid>,
    pub min_health: Option<f64>,
}

/// What a built-in worker process's agent record says in `metadata.kind`.
pub const BUILTIN_WORKER_KIND: &str = "builtin_worker";

/// Picks the healthiest, least-loaded agent that has every capability the task needs (and the
/// criteria ask for) and claims assigned work (an external agent, not a built-in worker), and
/// routes the task to it. An assignment not claimed within `AGENT_ASSIGNMENT_TIMEOUT` goes back
/// to the queue (see [`super::assignments`]).
pub async fn assign(
    state: &AppState,
    id: Uuid,
    criteria: Criteria,
) -> Result<(Model, Uuid), ApiError> {
    let task = find(state, id).await?;
    if !matches!(task.status.as_str(), "pending" | "failed" | "scheduled") {
        return Err(illegal(&task, "assign"));
    }
    let mut capabilities: Vec<String> =
        serde_json::from_value(task.required_capabilities.clone()).unwrap_or_default();
    if capabilities.is_empty() {
        capabilities.push(
            task.queue
                .split(':')
                .nth(1)
                .unwrap_or("generic")
                .to_string(),
        );
    }
    for c in criteria.capabilities.unwrap_or_default() {
        if !capabilities.contains(&c) {
            capabilities.push(c);
        }
    }
    let min_load_headroom = criteria.min_health.unwrap_or(0.0);
    let candidates = state
        .directory
        .discover(&crate::directory::Query {
            capabilities,
            agent_type: criteria.agent_type,
            status: None,
            healthy_only: true,
            limit: 50,
        })
        .await;
    // Built-in worker processes register as agents but take work only from their queues, never
    // by claim: an assignment to one would wait for nothing.
    let chosen = candidates.into_iter().find(|e| {
        e.model.metadata["kind"] != BUILTIN_WORKER_KIND
            && criteria.agent_id.is_none_or(|want| want == e.model.id)
            && e.load() < e.model.max_concurrency as i64
            && (1.0 - e.load_ratio()) >= min_load_headroom
    });
    let Some(agent) = chosen else {
        return Err(ApiError::new(
            ErrorCode::NoSuitableAgent,
            "no healthy agent with spare capacity matches the task and criteria",
        ));
    };
    if !state.lifecycle.assign(&task, agent.model.id).await? {
        let now = find(state, id).await?;
        return Err(illegal(&now, "assign"));
    }
    Ok((find(state, id).await?, agent.model.id))
}
