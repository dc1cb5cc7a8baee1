use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "pipeline_executions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub status: String,
    pub priority: String,
    pub dataset_id: Option<Uuid>,
    pub options: Json,
    pub results: Option<Json>,
    pub metrics: Option<Json>,
    pub error: Option<String>,
    pub created_by: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
    /// The stage whose shards are queued or running; advancing it is the conditional update
    /// that lets exactly one finishing shard enqueue the next stage.
    pub current_stage: Option<String>,
    /// How many shards ingestion split the dataset into.
    pub shards: i32,
    /// The client's key: the same key and request again find this execution instead of
    /// starting another.
    #[sea_orm(unique)]
    pub idempotency_key: Option<String>,
    /// Hash of the request that created the execution, to tell a replay from a different
    /// request under the same key.
    pub request_hash: Option<String>,
    /// When retention removed the data (set once; the row stays).
    pub purged_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
