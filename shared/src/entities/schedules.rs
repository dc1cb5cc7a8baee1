use sea_orm::entity::prelude::*;

/// A recurring schedule: when (`cron` in `time_zone`, or every `interval_seconds` from
/// `start_at`) it starts what `template` describes, as the user who created it.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "schedules")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    /// Exactly one of `cron` and `interval_seconds` is set.
    pub cron: Option<String>,
    pub interval_seconds: Option<i32>,
    /// No occurrence before this; intervals count from it.
    pub start_at: DateTimeUtc,
    /// IANA name.
    pub time_zone: String,
    /// `task` or `pipeline`.
    pub template_kind: String,
    /// The request `POST /tasks` or `POST /pipeline/agent-execute` takes.
    pub template: Json,
    pub overlap_policy: String,
    pub catch_up_policy: String,
    pub paused: bool,
    /// The next occurrence to fire; `None` while paused or when the expression has no more.
    /// Replicas claim an occurrence by moving it on with a compare-and-set.
    pub next_run_at: Option<DateTimeUtc>,
    /// The user the schedule runs as: their role is checked again at every occurrence.
    pub creator_id: Uuid,
    pub created_by: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
