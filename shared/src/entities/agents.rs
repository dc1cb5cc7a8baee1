use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "agents")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub name: String,
    pub agent_type: String,
    pub capabilities: Json,
    pub status: String,
    pub max_concurrency: i32,
    pub current_load: i32,
    /// `{}` while [`Model::metadata_sealed`] holds it (`ENCRYPT_AGENT_DATA`).
    pub metadata: Json,
    /// Non-secret configuration; `None` while `ENCRYPT_AGENT_DATA` seals all of it.
    pub configuration: Option<Json>,
    /// Secret configuration fields (with `ENCRYPT_AGENT_DATA`, the whole configuration), sealed
    /// with AES-256-GCM; never returned.
    pub configuration_sealed: Option<String>,
    /// HMAC-SHA256 of the agent key; the key itself is never stored.
    #[sea_orm(unique)]
    pub key_hash: String,
    pub heartbeat_count: i64,
    pub registered_at: DateTimeUtc,
    pub last_seen: DateTimeUtc,
    /// Bumped on every change, so directories on other replicas can sync incrementally.
    pub updated_at: DateTimeUtc,
    pub deleted_at: Option<DateTimeUtc>,
    /// How often this agent beats, when it says (built-in workers); `None`: the deployment's
    /// `MCP_AGENT_HEARTBEAT_MS`. Silence is measured in these beats.
    pub heartbeat_ms: Option<i32>,
    /// The metadata, sealed with AES-256-GCM, when `ENCRYPT_AGENT_DATA` is on; the API opens it
    /// for readers.
    pub metadata_sealed: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
