use sea_orm::entity::prelude::*;

/// An uploaded dataset: its bytes live in the artifact store under `artifact_key`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "datasets")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    /// `ndjson`, `json` or `csv`.
    pub format: String,
    pub records: i64,
    pub bytes: i64,
    pub sha256: String,
    pub artifact_key: String,
    pub created_by: Option<String>,
    pub created_at: DateTimeUtc,
    /// When retention removed the data (set once; the row stays).
    pub purged_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
