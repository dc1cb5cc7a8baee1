//! Security and retention: anchors that keep the audit chain verifiable after old records are
//! purged, the key that sealed a task's sensitive payload fields (so a key rotation finds what
//! it must re-encrypt), and when a finished task's payload and result were purged.

#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditAnchors::Table)
                    .if_not_exists()
                    .col(big_integer(AuditAnchors::Id).primary_key().auto_increment())
                    .col(big_integer(AuditAnchors::PurgedThroughId))
                    .col(string(AuditAnchors::AnchorHash))
                    .col(big_integer(AuditAnchors::RecordsPurged))
                    .col(timestamp_with_time_zone(AuditAnchors::PurgedAt))
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("idx_audit_records_occurred_at", AuditRecords::OccurredAt),
            ("idx_audit_records_actor", AuditRecords::Actor),
            ("idx_audit_records_action", AuditRecords::Action),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(AuditRecords::Table)
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }
        crate::columns::add(
            manager,
            Tasks::Table,
            [
                string_null(Tasks::SealedKey),
                timestamp_with_time_zone_null(Tasks::PurgedAt),
            ],
        )
        .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_tasks_sealed_key")
                    .table(Tasks::Table)
                    .col(Tasks::SealedKey)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name("idx_tasks_sealed_key").to_owned())
            .await?;
        crate::columns::drop(manager, Tasks::Table, [Tasks::SealedKey, Tasks::PurgedAt]).await?;
        for name in [
            "idx_audit_records_occurred_at",
            "idx_audit_records_actor",
            "idx_audit_records_action",
        ] {
            manager
                .drop_index(Index::drop().name(name).to_owned())
                .await?;
        }
        manager
            .drop_table(Table::drop().table(AuditAnchors::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum AuditAnchors {
    Table,
    Id,
    PurgedThroughId,
    AnchorHash,
    RecordsPurged,
    PurgedAt,
}

#[derive(DeriveIden)]
enum AuditRecords {
    Table,
    OccurredAt,
    Actor,
    Action,
}

#[derive(DeriveIden)]
enum Tasks {
    Table,
    SealedKey,
    PurgedAt,
}
