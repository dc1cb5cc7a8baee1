//! A keyed audit chain: each record and each retention anchor carries the id of the key whose
//! HMAC authenticates its hash (`key_id`, `mac`), and anchors are chained to one another
//! (`prev_hash`, `hash`). Rows written before this migration get their MAC when the API next
//! starts, once their unkeyed chain has verified.

#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::columns::add(
            manager,
            AuditRecords::Table,
            [
                string_null(AuditRecords::KeyId),
                string_null(AuditRecords::Mac),
            ],
        )
        .await?;
        crate::columns::add(
            manager,
            AuditAnchors::Table,
            [
                string_null(AuditAnchors::PrevHash),
                string_null(AuditAnchors::Hash),
                string_null(AuditAnchors::KeyId),
                string_null(AuditAnchors::Mac),
            ],
        )
        .await?;
        // Key rotation and `keys status` look records up by key.
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_records_key_id")
                    .table(AuditRecords::Table)
                    .col(AuditRecords::KeyId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name("idx_audit_records_key_id").to_owned())
            .await?;
        crate::columns::drop(
            manager,
            AuditAnchors::Table,
            [
                AuditAnchors::PrevHash,
                AuditAnchors::Hash,
                AuditAnchors::KeyId,
                AuditAnchors::Mac,
            ],
        )
        .await?;
        crate::columns::drop(
            manager,
            AuditRecords::Table,
            [AuditRecords::KeyId, AuditRecords::Mac],
        )
        .await
    }
}

#[derive(DeriveIden)]
enum AuditRecords {
    Table,
    KeyId,
    Mac,
}

#[derive(DeriveIden)]
enum AuditAnchors {
    Table,
    PrevHash,
    Hash,
    KeyId,
    Mac,
}
