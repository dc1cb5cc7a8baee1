use sea_orm::entity::prelude::*;

/// One shard of one stage of a pipeline execution.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "stage_runs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub execution_id: Uuid,
    pub stage: String,
    pub shard: i32,
    pub status: String,
    pub task_id: Option<Uuid>,
    pub agent_id: Option<Uuid>,
    pub records_in: i64,
    pub records_out: i64,
    pub progress: i32,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    /// What the shard found (PII by kind, rejects, histogram…), merged into the report.
    pub stats: Option<Json>,
    pub error: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
