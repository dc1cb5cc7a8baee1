use sea_orm::entity::prelude::*;

/// One audited action. `hash` covers this record and `prev_hash`, chaining the trail; `mac`
/// authenticates `hash` under a secret key, so the chain cannot be rebuilt without it.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_records")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub occurred_at: DateTimeUtc,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub request_id: Option<String>,
    pub details: Option<Json>,
    pub prev_hash: String,
    pub hash: String,
    /// The key (of the ring) whose HMAC of `hash` is `mac`; `None` only on rows written before
    /// the chain was keyed, until the API keys them at its next start.
    pub key_id: Option<String>,
    pub mac: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
