use sea_orm::entity::prelude::*;

/// Where retention cut the audit chain: the first record kept must chain from `anchor_hash`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_anchors")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The id of the last purged record.
    pub purged_through_id: i64,
    /// That record's hash, which the next record's `prev_hash` carries.
    pub anchor_hash: String,
    pub records_purged: i64,
    pub purged_at: DateTimeUtc,
    /// The previous anchor's `hash` (or `genesis`): anchors form their own chain.
    pub prev_hash: Option<String>,
    /// SHA-256 over this anchor's fields and `prev_hash`.
    pub hash: Option<String>,
    /// The key whose HMAC of `hash` is `mac`, as on records.
    pub key_id: Option<String>,
    pub mac: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
