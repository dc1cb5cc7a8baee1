//! Creating tasks: validation, idempotency, the row, the queue push and the event.

use chrono::{DateTime, Utc};
use mcp_shared::{
    bus::emit,
    crypto,
    db::{self, tasks},
    domain::{
        event::{Event, EventType},
        task::{Priority, TaskStatus, TaskType},
    },
    entities::tasks::Model,
    queue::{Job, QueueName},
};
use sea_orm::{EntityTrait, Set};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{error::ApiError, state::AppState};

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
}

/// Whether [`create`] made a new task or found the one a repeated request made.
pub enum Created {
    New(Model),
    Existing(Model),
}

pub const MAX_ATTEMPTS_LIMIT: u32 = 100;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
const MAX_TIMEOUT_SECONDS: u32 = 7 * 24 * 3600;
const MAX_IDEMPOTENCY_KEY: usize = 200;

/// A capability name: lowercase letters, digits and `_`, 1–64 characters.
pub fn valid_capability(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl NewTask {
    pub fn validate(&self) -> Result<(), ApiError> {
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
        Ok(())
    }

    /// The queue: the first required capability (or the type's default) at the task's tier.
    pub fn queue(&self) -> QueueName {
        let capability = self
            .required_capabilities
            .first()
            .map(String::as_str)
            .unwrap_or(self.task_type.default_capability());
        QueueName::new(capability, self.priority)
    }

    /// Identifies the request's content, to tell a replay from a different body under one key.
    fn fingerprint(&self) -> String {
        let canonical = json!({
            "type": self.task_type,
            "priority": self.priority,
            "required_capabilities": self.required_capabilities,
            "payload": self.payload,
            "run_at": self.run_at,
            "timeout_seconds": self.timeout_seconds,
            "max_attempts": self.max_attempts,
        });
        crypto::sha256_hex(canonical.to_string().as_bytes())
    }
}

pub async fn create(state: &AppState, new: NewTask, created_by: &str) -> Result<Created, ApiError> {
    new.validate()?;
    let fingerprint = new.fingerprint();
    if let Some(key) = &new.idempotency_key
        && let Some(existing) = tasks::find_by_idempotency_key(&state.db.conn, key).await?
    {
        return replay(existing, &fingerprint);
    }

    let now = Utc::now();
    let queue = new.queue();
    let scheduled = new.run_at.is_some_and(|at| at > now);
    let mut row = tasks::new_row(Uuid::now_v7(), now);
    row.task_type = Set(new.task_type.as_str().into());
    row.priority = Set(new.priority.as_str().into());
    row.queue = Set(queue.to_string());
    row.required_capabilities = Set(json!(new.required_capabilities));
    row.payload = Set(new.payload.clone());
    row.max_attempts = Set(new.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS) as i32);
    row.timeout_seconds = Set(new
        .timeout_seconds
        .unwrap_or(state.settings.task_execution_timeout.as_secs() as u32)
        as i32);
    row.idempotency_key = Set(new.idempotency_key.clone());
    row.request_hash = Set(Some(fingerprint.clone()));
    row.run_at = Set(new.run_at);
    row.created_by = Set(Some(created_by.to_string()));
    if scheduled {
        row.status = Set(TaskStatus::Scheduled.as_str().into());
    }

    let task = match tasks::insert(&state.db.conn, row).await {
        Ok(t) => t,
        Err(mcp_shared::Error::Database(e)) if db::users::is_unique_violation(&e) => {
            // Two requests with the same key raced; the other one won.
            let key = new.idempotency_key.as_deref().unwrap_or_default();
            let existing = tasks::find_by_idempotency_key(&state.db.conn, key)
                .await?
                .ok_or_else(|| ApiError::internal("unique violation without an existing task"))?;
            return replay(existing, &fingerprint);
        }
        Err(e) => return Err(e.into()),
    };

    if let Err(e) = state
        .queue
        .push(&queue, vec![Job::at(task.id, new.run_at)])
        .await
    {
        // Without its job the row would wait forever: remove it, and let the client retry.
        let _ = mcp_shared::entities::tasks::Entity::delete_by_id(task.id)
            .exec(&state.db.conn)
            .await;
        return Err(e.into());
    }

    emit(
        state.bus.as_ref(),
        Event::new(
            EventType::TaskCreated,
            json!({"task_id": task.id, "type": task.task_type, "priority": task.priority, "status": task.status}),
        )
        .for_task(task.id),
    )
    .await;
    Ok(Created::New(task))
}

fn replay(existing: Model, fingerprint: &str) -> Result<Created, ApiError> {
    if existing.request_hash.as_deref() == Some(fingerprint) {
        Ok(Created::Existing(existing))
    } else {
        Err(ApiError::conflict(
            "idempotency_key_reused",
            "this idempotency_key was used with a different request body",
        )
        .with_details(json!({ "task_id": existing.id })))
    }
}
