use sea_orm::entity::prelude::*;

/// One occurrence of a schedule and what became of it; unique per (schedule, occurrence).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "schedule_runs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub schedule_id: Uuid,
    pub occurrence_at: DateTimeUtc,
    /// `firing` (claimed, its task or execution being created), `fired`, `skipped` (overlap),
    /// `missed` (catch-up), `failed` (`error` says why).
    pub outcome: String,
    pub task_id: Option<Uuid>,
    pub execution_id: Option<Uuid>,
    pub error: Option<String>,
    pub fired_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
