use sea_orm::entity::prelude::*;

/// A task row: the source of truth for the task's state. Queues only carry its id.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "tasks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub task_type: String,
    pub priority: String,
    pub status: String,
    /// The queue the task was pushed to, `mcp:{capability}:{tier}`.
    pub queue: String,
    pub required_capabilities: Json,
    pub payload: Json,
    pub result: Option<Json>,
    pub error: Option<String>,
    pub message: Option<String>,
    pub progress: i32,
    pub agent_id: Option<Uuid>,
    pub attempt: i32,
    pub max_attempts: i32,
    pub timeout_seconds: i32,
    #[sea_orm(unique)]
    pub idempotency_key: Option<String>,
    /// sha256 of the creating request, to tell a replay from a conflicting reuse of the key.
    pub request_hash: Option<String>,
    pub run_at: Option<DateTimeUtc>,
    pub execution_id: Option<Uuid>,
    pub stage: Option<String>,
    pub created_by: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    /// When the task's job was last pushed to its queue; `None` means the dispatcher owes a push.
    pub enqueued_at: Option<DateTimeUtc>,
    /// Until when the running attempt is held; past it, the attempt counts as lost.
    pub lease_expires_at: Option<DateTimeUtc>,
    /// Set by a cancel of a running task; the worker or agent stops at its next progress report.
    pub cancel_requested: bool,
    /// The key id that sealed the payload's sensitive fields; `None` when none are sealed.
    pub sealed_key: Option<String>,
    /// When retention cleared this finished task's payload and result.
    pub purged_at: Option<DateTimeUtc>,
    /// W3C trace context of the request that created the task (with trace export on), so the
    /// worker's job span joins that trace.
    pub traceparent: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
