//! A worker you can step: jobs go into the embedded in-memory queue and come out one at a time
//! through the real executor, against whatever database the caller gives (an in-memory SQLite
//! in the unit tests). No processes, no timing: each [`Stepper::step`] runs exactly one delivery
//! and returns its [`Outcome`], so lifecycle cases (retry, dead, a cancel racing a failure, a
//! duplicate delivery, a lost lease) are tested deterministically.

use std::sync::Arc;

use chrono::Utc;
use mcp_shared::{
    Settings,
    bus::{EventBus, InProcessBus},
    db::{self, Database},
    domain::{event::Event, task::Priority},
    entities::tasks::Model as Task,
    lifecycle::Lifecycle,
    queue::{Job, JobQueue, MemoryQueue, QueueName},
};
use sea_orm::Set;
use serde_json::Value;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::{
    WorkerDeps,
    executor::{self, Outcome},
};

/// Steps jobs through the executor as one worker process (one agent id) would.
pub struct Stepper {
    pub deps: WorkerDeps,
    queue: MemoryQueue,
    /// The queues jobs were delivered to, in first-use order.
    delivered_to: std::sync::Mutex<Vec<QueueName>>,
    events: broadcast::Receiver<Arc<Event>>,
}

/// The queue the generic tasks of [`Stepper::submit`] go to.
pub fn generic_queue() -> QueueName {
    QueueName::new("generic", Priority::Medium)
}

impl Stepper {
    /// A stepper over `db` (already migrated), with settings from `lookup` (defaults for what it
    /// does not name) and artifacts under `artifacts`.
    pub fn new(
        db: Database,
        lookup: impl Fn(&str) -> Option<String>,
        artifacts: &std::path::Path,
    ) -> mcp_shared::Result<Self> {
        let settings = Settings::from_lookup(lookup)?;
        let bus: Arc<dyn EventBus> = InProcessBus::new();
        let events = bus.subscribe();
        let queue = MemoryQueue::new();
        let cipher = Arc::new(mcp_shared::crypto::KeyRing::from_settings(&settings)?);
        let deps = WorkerDeps {
            lifecycle: Lifecycle::new(&db, bus.clone()),
            db,
            bus,
            queue: Arc::new(queue.clone()),
            artifacts: mcp_shared::artifacts::open(&artifacts.to_string_lossy(), cipher.clone())?,
            cipher,
            settings: Arc::new(settings),
            agent_id: Some(Uuid::now_v7()),
            stats: Arc::default(),
        };
        Ok(Self {
            deps,
            queue,
            delivered_to: Default::default(),
            events,
        })
    }

    /// Stores a `generic` task with this payload and attempt budget and pushes its job.
    pub async fn submit(&self, payload: Value, max_attempts: i32) -> mcp_shared::Result<Uuid> {
        let id = Uuid::now_v7();
        let queue = generic_queue();
        let mut row = db::tasks::new_row(id, Utc::now());
        row.task_type = Set("generic".into());
        row.priority = Set(queue.tier.as_str().into());
        row.queue = Set(queue.to_string());
        row.required_capabilities = Set(serde_json::json!([]));
        row.payload = Set(payload);
        row.max_attempts = Set(max_attempts);
        row.timeout_seconds = Set(60);
        row.enqueued_at = Set(Some(Utc::now()));
        db::tasks::insert(&self.deps.db.conn, row).await?;
        self.deliver(id).await?;
        Ok(id)
    }

    /// Pushes a job for `id` onto its task's queue (again): what the dispatcher, a redelivery
    /// or a duplicate push does.
    pub async fn deliver(&self, id: Uuid) -> mcp_shared::Result<()> {
        let task = self.task(id).await;
        let queue = QueueName::parse(&task.queue).unwrap_or_else(generic_queue);
        {
            let mut seen = self.delivered_to.lock().expect("queue list lock");
            if !seen.contains(&queue) {
                seen.push(queue.clone());
            }
        }
        self.queue.push(&queue, vec![Job::now(id)]).await
    }

    /// Runs the next waiting job through the executor; `None` when no job waits.
    pub async fn step(&self) -> Option<Outcome> {
        let queues = self.delivered_to.lock().expect("queue list lock").clone();
        let job = queues.iter().find_map(|q| self.queue.backend(q).pop())?;
        Some(executor::execute(&self.deps, job).await)
    }

    /// The task's row as it is now.
    pub async fn task(&self, id: Uuid) -> Task {
        db::tasks::find(&self.deps.db.conn, id)
            .await
            .expect("the task can be read")
            .expect("the task exists")
    }

    /// The events published since the last call, oldest first, as `type` names.
    pub fn events(&mut self) -> Vec<String> {
        let mut seen = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            seen.push(e.kind.as_str().to_string());
        }
        seen
    }
}
